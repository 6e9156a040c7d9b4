"""Clinical thresholds and policy, each a default a site can change (``clinical-rules.md``)."""

from __future__ import annotations

from datetime import tzinfo
from functools import cached_property
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from infusion_monitor.schemas.vocab import PolicyProfile

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
    # laboratory (L1-L6)
    on_treatment_days: int = 112  # L1/L2: an infusion within this many days before the specimen
    neutrophils_low: float = 1.5  # L3, 10^9/L: below -> low
    neutrophils_medium: float = 1.0  # below -> medium
    neutrophils_high: float = 0.5  # below -> high
    platelets_medium: float = 75  # L4, 10^9/L: below -> medium (CTCAE grade 2)
    platelets_high: float = 50  # below -> high (grade 3+)
    liver_medium_x_uln: float = 3  # L5: more than
    liver_high_x_uln: float = 5
    hys_law_transaminase_x_uln: float = 3  # L6: at or above
    hys_law_bilirubin_x_uln: float = 2  # L6: more than
    hys_law_window_hours: int = 168
    default_uln: dict[str, float] = Field(default_factory=lambda: {"1742-6": 40.0, "1920-8": 40.0, "1975-2": 21.0})
    # anti-drug antibodies and the scheduler (R14-R16, S1-S3)
    antibody_interval_days: int = 84  # S1
    confirm_after_days_us: int = 84  # R15
    confirm_after_days_eu: int = 42
    persistence_min_days: int = 42  # R16: at least
    routine_pause_after_days: int = 84  # routine testing pauses: last infusion more than this
    overdue_after_days: int = 14  # S3
    # pending readings (no started session claims them) are kept this long, in stream time;
    # every reading stays a baseline candidate as long
    pending_reading_hours: int = 24
    reading_log_limit: int = 1440  # readings kept per patient at most (one a minute for 24 h)
    pending_bytes_limit: int = 131_072  # the text kept for pending readings per patient (ids, symptoms)
    # bookkeeping bounds, so that no producer can grow one patient's stored state past the
    # server's payload limit (a checkpoint that cannot be written would stop the monitor)
    open_sessions_limit: int = 8  # open sessions per patient; a further start is bad input
    sessions_limit: int = 32  # sessions kept per patient (closed ones are forgotten first)
    # bookkeeping (not clinical): how much history a patient keeps
    closed_session_memory_hours: int = 48

    @cached_property
    def tz(self) -> tzinfo:
        return ZoneInfo(self.site_timezone)

    @property
    def confirm_after_days(self) -> int:
        return self.confirm_after_days_eu if self.profile is PolicyProfile.EU else self.confirm_after_days_us
