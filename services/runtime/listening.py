"""Where a service listens, told to the ``up`` that started it.

``up`` gives its children ``INFUSION_MONITOR_LISTENING_DIR`` (a directory of its data dir); a
service that starts listening (the board, the pager's acknowledgement endpoint, the gateway's MLLP
and FHIR ports) writes its address there, one file per listener, and ``up`` prints what is really
served (a port of 0 in the settings, a port that was taken) instead of what was configured. Without
the variable (a service run on its own, the tests) nothing is written. Addresses only: never a
credential.
"""

from __future__ import annotations

import os
from pathlib import Path

LISTENING_DIR_ENV = "INFUSION_MONITOR_LISTENING_DIR"

BOARD = "board"
PAGER_ACK = "pager-ack"
GATEWAY_MLLP = "gateway-mllp"
GATEWAY_FHIR = "gateway-fhir"


def announce(listener: str, address: str, env: dict[str, str] | None = None) -> None:
    """Record that ``listener`` serves on ``address`` (a URL, or ``host:port`` for MLLP). Never
    raises: a service keeps serving whether or not ``up`` hears of it."""
    directory = (os.environ if env is None else env).get(LISTENING_DIR_ENV)
    if not directory:
        return
    try:
        path = Path(directory) / listener
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{listener}.{os.getpid()}")
        tmp.write_text(address + "\n")
        os.replace(tmp, path)
    except OSError:
        pass


def announced(directory: Path) -> dict[str, str]:
    """Every listener's address written so far (listener -> address)."""
    out: dict[str, str] = {}
    if not directory.is_dir():
        return out
    for path in directory.iterdir():
        if path.name.startswith("."):
            continue
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text:
            out[path.name] = text
    return out


def clear(directory: Path) -> None:
    """Forget what an earlier run announced (``up`` does this before starting its services)."""
    if directory.is_dir():
        for path in directory.iterdir():
            path.unlink(missing_ok=True)
