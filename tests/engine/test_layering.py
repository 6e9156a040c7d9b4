"""The engine runs whatever cores it is given: it imports none of them (they are composed above it,
in ``services/cores.py``), and no clinical core imports another one or a shell."""

from __future__ import annotations

import ast
from pathlib import Path

SERVICES = Path(__file__).resolve().parents[2] / "services"
CORES = ("session_monitor", "lab_monitor", "antibody_scheduler", "adverse_events")
SHELLS = ("worker", "pager", "board", "gateway", "cli", "runtime", "replay")


def _imports(package: str) -> set[str]:
    found = set()
    for path in (SERVICES / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(("." * node.level) + node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
    return found


def test_the_engine_imports_no_core_and_no_shell():
    bad = [m for m in _imports("engine") if any(part in m.split(".") for part in (*CORES, *SHELLS))]
    assert bad == []


def test_a_core_imports_no_other_core_and_no_shell():
    for core in CORES:
        others = tuple(c for c in CORES if c != core)
        bad = [m for m in _imports(core) if any(part in m.split(".") for part in (*others, *SHELLS))]
        assert bad == [], core
