"""The board at a moment of a recorded log (``infusion-monitor replay LOG --board-at T``).

The log goes through the monitor's cores and the board projection in one offline engine
(``board_engine``), with the clock stopped at ``T`` exactly like ``replay --until T``; the board
is then built for ``now = T``. The same log and ``T`` always give the same text."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from ..engine.bus import Engine
from ..engine.config import MonitorConfig
from ..replay.offline import replay_lines
from .projection import BoardProjection, board_engine
from .state import BoardPatient
from .view import BoardView, ViewOptions, build_board, render_text


def board_patients(engine: Engine) -> dict[str, BoardPatient]:
    """The projection's state of every patient the engine knows (patient key -> state)."""
    out: dict[str, BoardPatient] = {}
    for patient_id, record in engine.records.items():
        if BoardProjection.name in record.slices:
            out[patient_id] = engine.state_of(BoardProjection.name, patient_id)
    return out


def board_at(lines: Iterable[bytes], config: MonitorConfig, at: datetime,
             options: ViewOptions = ViewOptions()) -> tuple[BoardView, Mapping[str, BoardPatient]]:
    engine = board_engine(config)
    replay_lines(lines, config, until=at, engine=engine)
    patients = board_patients(engine)
    return build_board(patients, at, config, options), patients


def render_board_at(lines: Iterable[bytes], config: MonitorConfig, at: datetime,
                    options: ViewOptions = ViewOptions()) -> str:
    """The board at ``at`` as plain text (for ``replay --board-at``)."""
    view, _ = board_at(lines, config, at, options)
    return render_text(view, config)
