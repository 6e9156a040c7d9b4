"""The cores the product runs, in the order they see each event: composed here, above both the
engine (which runs any cores it is given) and the clinical packages (which know no engine
beyond its ``Context``)."""

from __future__ import annotations

from .adverse_events.core import AdverseEvents
from .antibody_scheduler.core import AntibodyScheduler
from .engine.core import Core
from .lab_monitor.core import LabMonitor
from .session_monitor.core import SessionMonitor


def all_cores() -> list[Core]:
    """Session monitor, adverse events, lab monitor, antibody scheduler: each sees every event
    it handles in this order; facts they emit are delivered before the next event."""
    return [SessionMonitor(), AdverseEvents(), LabMonitor(), AntibodyScheduler()]
