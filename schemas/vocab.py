"""The contract's vocabularies: symptoms and their organ systems, severities, alert kinds.

Every name here is written as ``clinical-rules.md`` and ``contract.md`` spell it.
"""

from __future__ import annotations

from enum import Enum, IntEnum


class OrganSystem(str, Enum):
    """How ``clinical-rules.md`` groups symptom codes for grading."""

    SKIN = "skin_mucosa"
    RESPIRATORY = "respiratory"
    HYPOXIA = "hypoxia"
    CARDIOVASCULAR = "cardiovascular"
    GASTROINTESTINAL = "gastrointestinal"
    NEUROLOGICAL = "neurological"
    NON_ALLERGIC = "non_allergic"


class Symptom(str, Enum):
    """Symptom codes charted on ``vitals.recorded`` (matched case-insensitively)."""

    URTICARIA = "urticaria"
    PRURITUS = "pruritus"
    FLUSHING = "flushing"
    ERYTHEMA = "erythema"
    RASH = "rash"
    ANGIOEDEMA = "angioedema"
    DYSPNEA = "dyspnea"
    WHEEZE = "wheeze"
    STRIDOR = "stridor"
    HOARSENESS = "hoarseness"
    THROAT_TIGHTNESS = "throat_tightness"
    CHEST_TIGHTNESS = "chest_tightness"
    CYANOSIS = "cyanosis"
    DIZZINESS = "dizziness"
    PRESYNCOPE = "presyncope"
    CHEST_PAIN = "chest_pain"
    DIAPHORESIS = "diaphoresis"
    NAUSEA = "nausea"
    VOMITING = "vomiting"
    ABDOMINAL_PAIN = "abdominal_pain"
    CONFUSION = "confusion"
    COLLAPSE = "collapse"
    SYNCOPE = "syncope"
    LOSS_OF_CONSCIOUSNESS = "loss_of_consciousness"
    INCONTINENCE = "incontinence"
    HEADACHE = "headache"
    FATIGUE = "fatigue"
    RIGORS = "rigors"
    MYALGIA = "myalgia"
    ARTHRALGIA = "arthralgia"
    TREMOR = "tremor"
    FEELING_COLD = "feeling_cold"
    FEVER = "fever"


_S = Symptom
ORGAN_SYSTEM: dict[Symptom, OrganSystem] = {
    **dict.fromkeys(
        [_S.URTICARIA, _S.PRURITUS, _S.FLUSHING, _S.ERYTHEMA, _S.RASH, _S.ANGIOEDEMA],
        OrganSystem.SKIN,
    ),
    **dict.fromkeys(
        [_S.DYSPNEA, _S.WHEEZE, _S.STRIDOR, _S.HOARSENESS, _S.THROAT_TIGHTNESS, _S.CHEST_TIGHTNESS],
        OrganSystem.RESPIRATORY,
    ),
    _S.CYANOSIS: OrganSystem.HYPOXIA,
    **dict.fromkeys(
        [_S.DIZZINESS, _S.PRESYNCOPE, _S.CHEST_PAIN, _S.DIAPHORESIS], OrganSystem.CARDIOVASCULAR
    ),
    **dict.fromkeys([_S.NAUSEA, _S.VOMITING, _S.ABDOMINAL_PAIN], OrganSystem.GASTROINTESTINAL),
    **dict.fromkeys(
        [_S.CONFUSION, _S.COLLAPSE, _S.SYNCOPE, _S.LOSS_OF_CONSCIOUSNESS, _S.INCONTINENCE],
        OrganSystem.NEUROLOGICAL,
    ),
    **dict.fromkeys(
        [_S.HEADACHE, _S.FATIGUE, _S.RIGORS, _S.MYALGIA, _S.ARTHRALGIA, _S.TREMOR,
         _S.FEELING_COLD, _S.FEVER],
        OrganSystem.NON_ALLERGIC,
    ),
}
assert set(ORGAN_SYSTEM) == set(Symptom), "every symptom code has an organ system"


_SYSTEM_BY_CODE: dict[str, OrganSystem] = {s.value: system for s, system in ORGAN_SYSTEM.items()}


def organ_system(code: str) -> OrganSystem:
    """The organ system of a charted code; an unknown code counts as non-allergic (R13)."""
    return _SYSTEM_BY_CODE.get(code.lower(), OrganSystem.NON_ALLERGIC)


def is_known_symptom(code: str) -> bool:
    return code.lower() in Symptom._value2member_map_


class Severity(str, Enum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {
    Severity.CRITICAL: 4,
    Severity.HIGH: 3,
    Severity.MEDIUM: 2,
    Severity.LOW: 1,
    Severity.INFO: 0,
}


class BrownGrade(IntEnum):
    """Brown 2004 grade of a hypersensitivity reaction (higher is worse)."""

    NONE = 0
    MILD = 1
    MODERATE = 2
    SEVERE = 3

    @property
    def label(self) -> str | None:
        return None if self is BrownGrade.NONE else self.name.lower()


class AlertKind(str, Enum):
    DISCONTINUE_HYPERSENSITIVITY = "discontinue.hypersensitivity"
    INFUSION_REACTION = "infusion.reaction"
    INFUSION_CONTRAINDICATED = "infusion.contraindicated"
    MONITORING_NO_BASELINE = "monitoring.no_baseline"
    MONITORING_GAP = "monitoring.gap"
    MONITORING_NO_END = "monitoring.no_end"
    REEXPOSURE_AFTER_GAP = "reexposure.after_gap"
    POPULATION_PEDIATRIC = "population.pediatric"
    POPULATION_ELDERLY = "population.elderly"
    POPULATION_PREGNANCY = "population.pregnancy"
    POPULATION_LACTATION = "population.lactation"
    ANTIBODY_PERSISTENT = "antibody.persistent"
    ANTIBODY_POSITIVE = "antibody.positive"
    ANTIBODY_TEST_OVERDUE = "antibody.test_overdue"
    THERAPY_COMBINATION = "therapy.combination"
    LAB_EXPECTED_EFFECT = "lab.expected_effect"
    LAB_CBC_NOT_NORMALISED = "lab.cbc_not_normalised"
    LAB_NEUTROPENIA = "lab.neutropenia"
    LAB_THROMBOCYTOPENIA = "lab.thrombocytopenia"
    LAB_LIVER = "lab.liver"
    DISCONTINUE_LIVER_INJURY = "discontinue.liver_injury"
    ADVERSE_SUICIDAL_IDEATION = "adverse_event.suicidal_ideation"
    ADVERSE_INFECTION = "adverse_event.infection"
    ADVERSE_NEUROLOGICAL = "adverse_event.neurological"
    ADVERSE_DEPRESSION = "adverse_event.depression"
    ADVERSE_CHOLELITHIASIS = "adverse_event.cholelithiasis"
    ADVERSE_OTHER = "adverse_event.other"
    # operator alerts (``system.*``): about the product itself, raised by the paging bridge and
    # routed to the operator destinations (``docs/paging.md``, "Operator alerts"), never clinical
    SYSTEM_DESTINATION_DOWN = "system.destination_down"
    SYSTEM_ACK_ENDPOINT_DOWN = "system.ack_endpoint_down"
    SYSTEM_SERVICE_SILENT = "system.service_silent"  # no heartbeat from a service (down, stuck, cut off)
    SYSTEM_SERVICE_LAGGING = "system.service_lagging"  # a service far behind its input stream
    SYSTEM_RESTART_LOOP = "system.restart_loop"  # a service restarted again and again
    SYSTEM_MESSAGE_SET_ASIDE = "system.message_set_aside"  # a service failed on a message and set it aside
    SYSTEM_SERVICE_ERROR = "system.service_error"  # a service met a defect (a timer failed, state too large)
    SYSTEM_BROKER_UNREACHABLE = "system.broker_unreachable"  # the pager lost the NATS server


class Rule(str, Enum):
    """Rule ids of ``clinical-rules.md``; every alert names the one that raised it."""

    R5 = "R5"
    R6 = "R6"
    R7 = "R7"
    R8 = "R8"
    R9 = "R9"
    R10 = "R10"
    R11 = "R11"
    R12 = "R12"
    R12B = "R12b"
    R13 = "R13"
    R14 = "R14"
    R15 = "R15"
    R16 = "R16"
    R17 = "R17"
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"
    P5 = "P5"
    P6 = "P6"
    M1 = "M1"
    M2 = "M2"
    S1 = "S1"
    S2 = "S2"
    S3 = "S3"
    L1 = "L1"
    L2 = "L2"
    L3 = "L3"
    L4 = "L4"
    L5 = "L5"
    L6 = "L6"
    A1 = "A1"
    A2 = "A2"
    A3 = "A3"
    A4 = "A4"
    A5 = "A5"
    A6 = "A6"
    A7 = "A7"
    SYS = "SYS"  # an operator alert (``system.*`` kinds): the product's own health, not a clinical rule


class ContraindicationReason(str, Enum):
    HYPERSENSITIVITY = "hypersensitivity"
    LIVER_INJURY = "liver_injury"
    PML_SUSPECTED = "pml_suspected"
    PERSISTENT_ANTIBODIES = "persistent_antibodies"


class InfusionOutcome(str, Enum):
    COMPLETED = "completed"
    STOPPED = "stopped"


class DueReason(str, Enum):
    """Reasons of ``antibody_test.due``, most specific first (merge order of the rules)."""

    CONFIRM_POSITIVE = "confirm_positive"
    BEFORE_RESTART = "before_restart"
    AFTER_REACTION = "after_reaction"
    ROUTINE = "routine"


class PolicyProfile(str, Enum):
    US = "us"
    EU = "eu"


class AckVia(str, Enum):
    PAGER = "pager"
    BOARD = "board"
    API = "api"


class ResolveReason(str, Enum):
    SESSION_CLOSED = "session_closed"
    CLEARED = "cleared"
    SUPERSEDED = "superseded"


class DeliveryState(str, Enum):
    """Where one destination's copy of an alert got (``alert.delivery``, ``docs/paging.md``).

    The first three come from the bridge's own delivery; the rest are what an alarm manager
    reports back over IHE PCD-05 (received by it, delivered to a clinician's device, read,
    accepted or rejected by the clinician, undeliverable, cancelled)."""

    SENT = "sent"  # the destination accepted the request (HTTP 2xx, HL7 ACK AA)
    RETRYING = "retrying"  # a request failed and is being retried with the same key
    FAILED = "failed"  # not delivered: refused for good, or the destination is down past its cap
    RECEIVED = "received"
    DELIVERED = "delivered"
    READ = "read"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    UNDELIVERABLE = "undeliverable"
    CANCELLED = "cancelled"


#: a trigger in one of these states reached nobody at that destination: the alert escalates at once
ESCALATING_STATES = frozenset({DeliveryState.FAILED, DeliveryState.REJECTED, DeliveryState.UNDELIVERABLE})
