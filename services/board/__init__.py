"""The live session board for nurses (issue #9): every chair's phase of the reaction window,
vitals due, open alerts, acknowledgement from the board, a session timeline and a day view.

A pure projection (``projection.py``) on event time, a pure view (``view.py``), and a shell
(``service.py``: NATS consumers + ``app.py``, a Starlette app served by uvicorn). See
``docs/board.md``.

For the CLI: ``run_board_service`` (``service board``), ``render_board_at`` (``replay --board-at``),
``start_board`` (``demo``), ``add_board_arguments`` / ``apply_board_arguments`` /
``add_board_at_argument`` (options)."""

from .config import BoardConfig, add_board_arguments, add_board_at_argument, apply_board_arguments
from .projection import BoardProjection, board_engine
from .replay import render_board_at

__all__ = [
    "BoardConfig", "BoardProjection", "add_board_arguments", "add_board_at_argument", "apply_board_arguments",
    "board_engine", "render_board_at", "run_board_service", "start_board",
]


def __getattr__(name: str):  # the service pulls in NATS and uvicorn: imported on first use
    if name in ("run_board_service", "start_board", "run_board"):
        from . import service

        return getattr(service, name)
    raise AttributeError(name)
