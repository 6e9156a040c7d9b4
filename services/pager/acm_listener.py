"""The PCD-05 listener of one ``acm`` destination: what the alarm manager reports back.

An MLLP server on the destination's ``status_listen`` (the gateway's ``MllpServer``): a connection
from an address not in ``status_peers`` is closed unread, at most 4 connections per address and
32 in all, idle ones closed after 5 minutes; a message whose MSH-3 is not ``status_application`` (when
set) is refused (``AR``). Each PCD-05 (``ORA^R41`` or ``ORU^R41``, ``acm.parse_pcd05``) about an
alert the bridge knows becomes, on the alert stream:

- ``alert.delivery`` with the state (received, delivered, read, accepted, rejected,
  undeliverable, cancelled) and the recipient PRT names: kept in the audit trail, shown by the
  board and ``alerts``; ``rejected`` / ``undeliverable`` escalate the alert at once;
- for ``accepted`` by a named recipient, also ``alert.acknowledged`` ``via: pager`` with that
  recipient as ``by`` and this destination as ``destination`` (the same lifecycle as the board's
  and the endpoint's; never relayed back to this alarm manager). ``accepted`` without a named
  recipient acknowledges nothing (no principal: a warning).

The ACK (``AA``) is sent only after the stream stored the events; an unknown alert or status
gets ``AE``, an unreadable message ``AR``; nothing is acknowledged while nothing was stored, so
the alarm manager retransmits, and a retransmission (same MSH-10) publishes the same event ids.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from infusion_monitor.schemas.outbound import AlertAcknowledged, AlertDelivery
from infusion_monitor.schemas.vocab import AckVia, DeliveryState

from ..engine.ids import stable_id
from ..gateway.mapping.ack import build_ack, msh_fields
from ..gateway.mapping.common import Rejection, Translation
from ..gateway.mllp import Connection, MllpServer
from .acm import AlertStatus, StatusRejection, parse_pcd05
from .routes import Destination, split_host_port

Locate = Callable[[str | None, str | None], tuple[str, str] | None]
Publish = Callable[[list[Any]], Awaitable[None]]
MAX_BYTES = 1_048_576
IDLE_TIMEOUT_S = 300.0
MAX_PER_SOURCE = 4  # an alarm manager keeps one or two connections open
MAX_CONNECTIONS = 32
FUTURE_TOLERANCE = timedelta(minutes=5)


def status_events(status: AlertStatus, patient_id: str, destination: str, now: datetime) -> list[Any]:
    """The events one PCD-05 becomes (pure; ids from the sender and its control id)."""
    at = status.at if status.at is not None and status.at <= now + FUTURE_TOLERANCE else now
    at = min(at, now)
    identity = (destination, status.sender, status.control_id)
    events: list[Any] = [AlertDelivery(
        type="alert.delivery", event_id=stable_id("ev", "alert.delivery", "pcd05", *identity, status.state.value),
        occurred_at=at, patient_id=patient_id, alert_id=status.alert_id, destination=destination,
        state=status.state, reason=status.status_text or None, by=status.by,
    )]
    if status.state is DeliveryState.ACCEPTED and status.by:
        events.append(AlertAcknowledged(
            type="alert.acknowledged", event_id=stable_id("ev", "alert.acknowledged", status.alert_id, "pager", *identity),
            occurred_at=at, patient_id=patient_id, alert_id=status.alert_id, by=status.by, via=AckVia.PAGER,
            note=f"accepted at the alarm manager ({destination})", destination=destination,
        ))
    return events


class AcmStatusListener:
    def __init__(self, name: str, destination: Destination, locate: Locate, publish: Publish, log: Any,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.name, self.destination, self.locate, self.publish, self.log, self.now = (
            name, destination, locate, publish, log, now)
        self.settings = destination.acm_settings
        self.server = MllpServer(self._message, MAX_BYTES, IDLE_TIMEOUT_S, log, peers=self.settings.status_peers,
                                 max_per_source=MAX_PER_SOURCE, max_connections=MAX_CONNECTIONS,
                                 name=f"ACM status ({name})")
        self.address: tuple[str, int] | None = None
        self.counts: dict[str, int] = {}

    async def start(self) -> tuple[str, int]:
        assert self.settings.status_listen is not None
        host, port = split_host_port(self.settings.status_listen)
        bound = await self.server.start(host, port)
        assert self.server.server is not None
        self.address = self.server.server.sockets[0].getsockname()[:2]
        self.log.info("ACM status listener", destination=self.name, address=f"{self.address[0]}:{bound}")
        return self.address

    async def stop(self) -> None:
        await self.server.stop()

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    async def _message(self, raw: bytes, connection: Connection) -> bytes | None:
        return await self.handle(raw)

    async def handle(self, raw: bytes) -> bytes | None:
        """The ACK for one message, or None when its events could not be stored."""
        now = self.now()
        status = parse_pcd05(raw)
        fields = msh_fields(raw)
        if isinstance(status, StatusRejection):
            self._count("rejected")
            self.log.warning("ACM status refused", destination=self.name, ack=status.ack,
                             where=f"{status.segment}-{status.field}", reason=status.reason)
            return self._ack(fields, status.ack, status.segment, status.field, status.reason, now)
        expected = self.settings.status_application
        if expected is not None and status.sender != expected:
            self._count("rejected")
            self.log.warning("ACM status from another application refused", destination=self.name)
            return self._ack(fields, "AR", "MSH", "3", "sending application not allowed", now)
        found = self.locate(status.alert_id, None)
        if found is None:
            self._count("unknown_alert")
            self.log.warning("ACM status for an alert the bridge does not know", destination=self.name,
                             alert_id=status.alert_id, state=status.state.value)
            return self._ack(fields, "AE", "OBR", "3", "unknown alert", now)
        patient_id, alert_id = found
        status = AlertStatus(status.control_id, status.sender, alert_id, status.state, status.status_text,
                             status.by, status.at)
        events = status_events(status, patient_id, self.name, now)
        if status.state is DeliveryState.ACCEPTED and not status.by:
            self.log.warning("ACM 'accepted' without a named recipient: recorded, not an acknowledgement",
                             destination=self.name, alert_id=alert_id)
        try:
            await self.publish(events)
        except Exception as exc:
            self._count("not_stored")
            self.log.error("ACM status not stored; no ACK (the alarm manager retransmits)", destination=self.name,
                           alert_id=alert_id, error=repr(exc))
            return None
        self._count(status.state.value)
        self.log.info("ACM status", destination=self.name, alert_id=alert_id, state=status.state.value,
                      acknowledged=len(events) > 1)
        return self._ack(fields, "AA", "", "", "", now, status.control_id)

    def _ack(self, fields: list[str], code: str, segment: str, field: str, reason: str, now: datetime,
             control: str | None = None) -> bytes:
        control = control if control is not None else (fields[9] if len(fields) > 9 else "")
        rejection = None if code == "AA" else Rejection(code, segment, field, reason)  # type: ignore[arg-type]
        translation = Translation(control_id=control, sender="", message_type="", rejection=rejection)
        return build_ack(translation, fields, now)
