"""Clinical thresholds and policy, each a default a site can change (``clinical-rules.md``)."""

from __future__ import annotations

from datetime import tzinfo
from functools import cached_property
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from schemas.vocab import PolicyProfile

DEFAULT_IMMUNOMODULATORS = (
    "interferon", "glatiramer", "fingolimod", "siponimod", "ozanimod", "ponesimod",
    "teriflunomide", "fumarate", "cladribine", "mitoxantrone", "ocrelizumab", "ofatumumab",
    "ublituximab", "alemtuzumab", "rituximab", "azathioprine", "methotrexate", "mycophenolate",
    "cyclophosphamide", "ciclosporin", "tacrolimus", "infliximab", "adalimumab", "etanercept",
    "certolizumab", "golimumab",
)


class MonitorConfig(BaseModel):
    """Every number of the rules table; defaults as ``clinical-rules.md`` states them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    profile: PolicyProfile = PolicyProfile.US
    site_timezone: str = "UTC"
    # reaction window
    window_minutes: int = 120
    observation_minutes: int = 60
    observation_always_infusions: int = 12
    keep_observation: bool = True
    no_end_minutes: int = 180  # M2
    session_match_hours: int = 24
    # baseline and monitoring
    baseline_lookback_minutes: int = 30
    baseline_fix_minutes: int = 5  # R6 timer, baseline fixed
    gap_minutes: int = 30  # M1
    gap_minutes_enhanced: int = 15  # M1 with persistent antibodies
    # hypersensitivity
    systolic_low_mmhg: float = 90  # R7: below
    systolic_fall_pct: int = 30  # R7: more than
    spo2_low_pct: float = 92  # R8: at or below
    fever_c: float = 38.0  # R13: at or above
    # pre-infusion
    reexposure_gap_days: int = 84  # R17: more than
    pediatric_below_age: int = 18  # P1
    elderly_above_age: int = 65  # P2
    immunomodulators: tuple[str, ...] = Field(default=DEFAULT_IMMUNOMODULATORS)
    # bookkeeping (not clinical): how much history a patient keeps
    baseline_memory_minutes: int = 45
    closed_session_memory_hours: int = 48

    @cached_property
    def tz(self) -> tzinfo:
        return ZoneInfo(self.site_timezone)
