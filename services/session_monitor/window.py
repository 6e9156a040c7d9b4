"""The reaction window of ``clinical-rules.md``: observation time and window end."""

from __future__ import annotations

from datetime import datetime, timedelta

from infusion_monitor.schemas.vocab import PolicyProfile

from ..engine.config import MonitorConfig
from .state import Session


def observation_minutes(
    infusion_number: int, had_reaction: bool, reexposure: bool, config: MonitorConfig
) -> int:
    """*obs* under ``us``: 60 min for infusions 1-12, after any earlier R7-R13 alert and after
    re-exposure (R17); from infusion 13 on, 60 min if ``keep_observation`` else 0."""
    if config.profile is PolicyProfile.EU:
        return config.observation_minutes
    if infusion_number <= config.observation_always_infusions or had_reaction or reexposure:
        return config.observation_minutes
    return config.observation_minutes if config.keep_observation else 0


def window_end(session: Session, config: MonitorConfig) -> datetime | None:
    """The window's end as far as it is known (``None`` while the infusion end is unknown)."""
    if session.ended_at is None:
        return None
    if config.profile is PolicyProfile.EU:
        return session.ended_at + timedelta(minutes=config.observation_minutes)
    return max(
        session.started_at + timedelta(minutes=config.window_minutes),
        session.ended_at + timedelta(minutes=session.observation_minutes),
    )


def is_inside(session: Session, at: datetime) -> bool:
    """t0 <= t <= window end, as far as the end is known now."""
    return session.started_at <= at and (session.window_end is None or at <= session.window_end)
