"""Every NATS name the product uses, derived from one namespace (default ``im``).

| what | subject / name | stream |
|---|---|---|
| inbound events | ``{ns}.in.<patient>.<type>`` (``clock.tick``: ``{ns}.in._.clock.tick``) | ``{NS}_IN`` |
| alerts and their lifecycle | ``{ns}.alert.<patient>.<type>`` | ``{NS}_ALERTS`` |
| other outbound events and internal facts | ``{ns}.out.<patient>.<type>`` | ``{NS}_OUT`` |
| dead letters | ``{ns}.dlq.<service>`` | ``{NS}_DLQ`` |
| audit trail of the paging bridge (lifecycle, page requests, delivery attempts) | ``{ns}.audit.<patient>.<type>`` | ``{NS}_AUDIT`` |
| service state | KV bucket ``{ns}-state-<service>`` | |
| heartbeats of every service (the watchdog) | ``{ns}.health.<service>.<instance>`` | none (core NATS) |
| the gateway's dead letters (raw HL7/FHIR: identifying, operators only) | ``{ns}.gwdlq.<feed>`` | ``{NS}_GW_DLQ`` |

``<patient>`` is the event's ``patient_id`` when it is a valid subject token, else a hash of it
(``patient_token``). A replay through a shared server uses its own namespace, so it never
touches the live streams.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_TOKEN = re.compile(r"[A-Za-z0-9_\-=]{1,64}")
ALERT_TYPES = frozenset({"alert.raised", "alert.acknowledged", "alert.resolved", "alert.escalated", "alert.delivery"})


def patient_token(patient_id: str | None) -> str:
    """A subject token (and KV key part) for a patient key; stable, never the raw id if unsafe."""
    if patient_id is None:
        return "_"
    if _TOKEN.fullmatch(patient_id) and patient_id != "_":
        return patient_id
    return "h-" + hashlib.sha256(patient_id.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Names:
    ns: str = "im"

    @property
    def stream_in(self) -> str:
        return f"{self.ns.upper()}_IN"

    @property
    def stream_alerts(self) -> str:
        return f"{self.ns.upper()}_ALERTS"

    @property
    def stream_out(self) -> str:
        return f"{self.ns.upper()}_OUT"

    @property
    def stream_dlq(self) -> str:
        return f"{self.ns.upper()}_DLQ"

    @property
    def stream_audit(self) -> str:
        return f"{self.ns.upper()}_AUDIT"

    def audit(self, event_type: str, patient_id: str | None) -> str:
        return f"{self.ns}.audit.{patient_token(patient_id)}.{event_type}"

    def inbound(self, event_type: str, patient_id: str | None) -> str:
        return f"{self.ns}.in.{patient_token(patient_id)}.{event_type}"

    @property
    def inbound_unparsed(self) -> str:
        """Where a replay or gateway sends bytes it could not read, so the monitor rejects them."""
        return f"{self.ns}.in._.unparsed"

    def outbound(self, event_type: str, patient_id: str | None) -> str:
        kind = "alert" if event_type in ALERT_TYPES else "out"
        return f"{self.ns}.{kind}.{patient_token(patient_id)}.{event_type}"

    def dlq(self, service: str) -> str:
        return f"{self.ns}.dlq.{service}"

    def health(self, service: str, instance: str) -> str:
        """A service's heartbeats (core NATS, not stored; the pager's watchdog listens)."""
        return f"{self.ns}.health.{service}.{patient_token(instance)}"

    @property
    def health_all(self) -> str:
        return f"{self.ns}.health.>"

    def state_bucket(self, service: str) -> str:
        return f"{self.ns}-state-{service}"

    @property
    def stream_gateway_dlq(self) -> str:
        """The gateway's own dead letters: raw messages that hold names and MRNs."""
        return f"{self.ns.upper()}_GW_DLQ"

    def gateway_dlq(self, feed: str) -> str:
        """``hl7`` or ``fhir``."""
        return f"{self.ns}.gwdlq.{feed}"
