"""The gateway shell: MLLP listener + FHIR HTTP endpoint -> pure core -> JetStream.

Per HL7 message (serialised: one message at a time across all connections, so the pump state
and the ACK order are simple):

1. ``translate`` (pure) on a fork of the state: events, refused rows, or a rejection;
2. ``check_identity`` (pure) against the message ledger: the same identity (MSH-3, MSH-4,
   MSH-10) stored before with other content is a conflicting control id (``AE``, dead letter
   with both digests, counted), never ``AA`` for nothing stored;
3. a rejection: the raw bytes go to the gateway's dead-letter stream (``{NS}_GW_DLQ``, reason
   in headers), then ``AE``/``AR``;
4. events: published on ``{ns}.in.<patient>.<type>`` with ``Nats-Msg-Id`` = ``event_id``, all
   publish acks awaited (a JetStream duplicate is logged and counted as one, never as stored);
   then the state changes and the identity are stored (KV); refused rows send the raw message
   to the dead letters too; then ``AA`` (or ``AE`` naming the refused rows).

A failure to store closes the connection without an ACK (the sender retransmits; the same ids
make the retransmission a no-op). A crash between storing and answering is the same case.
The pump grace timer also runs on the wall clock (``tick_seconds``, see ``mapping/pump.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nats.js import JetStreamContext

from ..runtime.access import NatsAccess, access_for
from ..runtime import listening
from ..runtime.health import Heartbeats, instance_name
from ..runtime.listening import announce
from ..runtime.logs import get_logger
from ..runtime.names import Names
from ..runtime.settings import Settings
from ..runtime.shells import start_http, stop_http
from ..runtime.tokens import TokenFile
from ..runtime.streams import ensure_gateway_streams
from .config import GatewayConfig
from .mapping import pump
from .mapping.ack import build_ack, msh_fields
from .mapping.book import Book
from .mapping.common import Translation, iso
from .mapping.fhir import FhirError, translate_fhir
from .mapping.router import check_identity, translate
from .mllp import Connection, MllpServer
from .store import GatewayStore, MessageLedger

SERVICE = "gateway"
LEDGER = "gateway-msgids"  # KV bucket {ns}-state-gateway-msgids: message identity -> content digest
FAULT_EXIT_CODE = 75


def _header_safe(text: str) -> str:
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)[:500]


class Gateway:
    def __init__(self, config: GatewayConfig, js: JetStreamContext, names: Names, store: GatewayStore,
                 book: Book, log: Any, ledger: MessageLedger) -> None:
        self.config, self.js, self.names, self.store, self.book, self.log = config, js, names, store, book, log
        self.ledger = ledger
        self.lock = asyncio.Lock()
        self.counts = {"AA": 0, "AE": 0, "AR": 0, "events": 0, "ignored": 0, "duplicate_events": 0,
                       "duplicate_messages": 0, "conflicts": 0, "rejected_rows": 0, "warnings": 0}

    # -- HL7 ---------------------------------------------------------------------------------

    async def handle_hl7(self, raw: bytes, connection: Connection | None = None) -> bytes | None:
        received = datetime.now(UTC)
        duplicates = 0
        async with self.lock:
            work = self.book.fork()
            result = translate(raw, self.config, work, received, connection.peer if connection else None)
            try:
                stored = await self.ledger.digest(result.identity) if result.identity else None
                result = check_identity(result, stored, work)
                if result.rejection is not None:
                    extra = {"Im-Digest-Stored": stored or "", "Im-Digest-Received": result.digest} \
                        if stored and stored != result.digest else {}
                    await self._dead_letter("hl7", raw, result.rejection.ack, result.rejection.where(),
                                            result.rejection.reason, result.control_id, result.sender, extra)
                else:
                    duplicates = await self._publish(result.events, result.control_id)
                    if work.changes:
                        await self.store.save(work.changes)
                    if result.events and result.identity:
                        await self.ledger.record(result.identity, result.digest)
                    if result.row_errors:
                        first = result.row_errors[0]
                        await self._dead_letter("hl7", raw, "AE", first.where(),
                                                f"{len(result.row_errors)} row(s) refused, the others stored: "
                                                f"{first.reason}", result.control_id, result.sender)
                    work.commit()
            except Exception as exc:
                self.log.error("message not stored; no ACK (the sender retransmits)", control_id=result.control_id,
                               sender=result.sender, error=type(exc).__name__)
                raise
        self._log(result, duplicates, stored_digest=stored, connection=connection)
        if self.config.fault_exit_before_ack and self.config.fault_exit_before_ack == result.control_id:
            self.log.warning("fault drill: exiting before the ACK", control_id=result.control_id)
            os._exit(FAULT_EXIT_CODE)
        return build_ack(result, msh_fields(raw), received.astimezone(self.config.tz))

    async def handle_hl7_safely(self, raw: bytes, connection: Connection | None = None) -> bytes | None:
        try:
            return await self.handle_hl7(raw, connection)
        except Exception:
            return None  # close the connection without an ACK

    def _log(self, result: Translation, duplicates: int, stored_digest: str | None,
             connection: Connection | None) -> None:
        """One line per message. A message all of whose events JetStream dropped as duplicates
        is logged as a duplicate (a retransmission), never as stored."""
        self.counts[result.ack_code] += 1
        self.counts["events"] += len(result.events) - duplicates
        self.counts["duplicate_events"] += duplicates
        self.counts["ignored"] += result.ignored
        self.counts["rejected_rows"] += len(result.row_errors)
        fields: dict[str, Any] = {
            "control_id": result.control_id, "sender": result.sender, "facility": result.facility,
            "message_type": result.message_type, "feed": result.feed, "ack": result.ack_code,
            "events": len(result.events) - duplicates,
            "duplicates": duplicates, "ignored": result.ignored,
            "patients": sorted({e["patient_id"] for e in result.events}),
            "event_ids": [e["event_id"] for e in result.events],
        }
        if result.sender_name:
            fields["sender_config"] = result.sender_name
        for warning in result.warnings:
            kind = warning.split(":", 1)[0]
            if kind == "zone-mismatch" and connection is not None and not connection.first(kind):
                continue  # once per connection
            self.counts["warnings"] += 1
            self.log.warning("hl7 message warning", warning=warning, **fields)
        if result.rejection is not None:
            conflict = bool(stored_digest) and stored_digest != result.digest
            if conflict:
                self.counts["conflicts"] += 1
            self.log.warning("hl7 message conflicting control id" if conflict else "hl7 message rejected",
                             where=result.rejection.where(), reason=result.rejection.reason, **fields,
                             **({"digest_stored": stored_digest, "digest_received": result.digest}
                                if conflict else {}))
        elif result.events and duplicates == len(result.events):
            self.counts["duplicate_messages"] += 1
            self.log.info("hl7 message duplicate (retransmission): nothing new stored", **fields)
        elif result.row_errors:
            self.log.warning("hl7 message stored with refused rows",
                             refused=[r.where() for r in result.row_errors],
                             reasons=[r.reason for r in result.row_errors], **fields)
        elif result.events:
            self.log.info("hl7 message stored", **fields)
        else:
            self.log.info("hl7 message acknowledged: nothing the product needs", **fields)

    # -- FHIR --------------------------------------------------------------------------------

    async def handle_fhir(self, body: bytes) -> tuple[int, dict[str, Any]]:
        received = datetime.now(UTC)
        digest = hashlib.sha256(body).hexdigest()[:16]
        async with self.lock:
            try:
                result = translate_fhir(body, self.config, received)
            except FhirError as exc:
                await self._dead_letter("fhir", body, str(exc.status), exc.path, exc.reason, digest, "fhir")
                self.log.warning("fhir body rejected", body_digest=digest, path=exc.path, reason=exc.reason,
                                 status=exc.status)
                return exc.status, outcome("error", exc.code, exc.reason, exc.path)
            duplicates = await self._publish(result.events, digest)
        fields = {"body_digest": digest, "resource_type": result.resource_type,
                  "events": len(result.events) - duplicates, "duplicates": duplicates, "ignored": result.ignored,
                  "patients": sorted({e["patient_id"] for e in result.events}),
                  "event_ids": [e["event_id"] for e in result.events]}
        self.counts["duplicate_events"] += duplicates
        for warning in result.warnings:
            self.counts["warnings"] += 1
            self.log.warning("fhir body warning", warning=warning, **fields)
        if result.events and duplicates == len(result.events):
            self.log.info("fhir body duplicate (retransmission): nothing new stored", **fields)
        else:
            self.log.info("fhir body stored", **fields)
        return 200, outcome("information", "informational",
                            f"stored {len(result.events)} event(s); {result.ignored} resource(s) not needed")

    # -- timers ------------------------------------------------------------------------------

    async def tick(self, now: datetime) -> int:
        async with self.lock:
            work = self.book.fork()
            events = pump.advance(work, self.config, now)
            await self._publish(events, "tick")
            if work.changes:
                await self.store.save(work.changes)
            work.commit()
        for event in events:
            self.log.info("pump stop decided on the wall clock", event_id=event["event_id"],
                          patient=event["patient_id"], session_id=event["session_id"], at=event["occurred_at"])
        return len(events)

    # -- NATS --------------------------------------------------------------------------------

    async def _publish(self, events: list[dict[str, Any]], control_id: str) -> int:
        """Publish and await every ack; returns how many JetStream dropped as duplicates."""
        publishes = [
            self.js.publish(self.names.inbound(e["type"], e["patient_id"]),
                            json.dumps(e, separators=(",", ":")).encode(),
                            headers={"Nats-Msg-Id": e["event_id"], "Im-Source": SERVICE,
                                     "Im-Control-Id": _header_safe(control_id)})
            for e in events
        ]
        acks = await asyncio.gather(*publishes)
        return sum(1 for ack in acks if getattr(ack, "duplicate", False))

    async def _dead_letter(self, feed: str, raw: bytes, kind: str, where: str, reason: str, control_id: str,
                           sender: str, extra: dict[str, str] | None = None) -> None:
        headers = {
            "Nats-Msg-Id": f"gwdlq:{feed}:{hashlib.sha256(raw).hexdigest()[:32]}",
            "Im-Service": SERVICE, "Im-Kind": kind, "Im-Field": _header_safe(where),
            "Im-Reason": _header_safe(reason), "Im-Control-Id": _header_safe(control_id),
            "Im-Sender": _header_safe(sender), "Im-Received": iso(datetime.now(UTC)), **(extra or {}),
        }
        await self.js.publish(self.names.gateway_dlq(feed), raw, headers=headers)


def outcome(severity: str, code: str, text: str, path: str = "") -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": text}
    if path:
        issue["expression"] = [path]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


@dataclass
class RunningGateway:
    gateway: Gateway
    mllp_port: int
    http_port: int
    failed: asyncio.Future[BaseException]


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def insecure_choices(config: GatewayConfig) -> list[str]:
    """The insecure settings in use (each one a choice someone made: none is a default)."""
    found = []
    if config.mllp_host not in LOOPBACK and config.mllp_tls is None:
        found.append("plain MLLP on a network interface")
    if config.http_host not in LOOPBACK and config.http_tls is None:
        found.append("plain HTTP on a network interface")
    if config.fhir_auth == "none":
        found.append("FHIR without authentication")
    if any(p in ("0.0.0.0/0", "::/0") for p in config.mllp_peers):
        found.append("MLLP from any address")
    return found


def fhir_clients(config: GatewayConfig, data_dir: Path) -> TokenFile | None:
    """The bearer tokens the FHIR endpoint requires; ``None`` when it needs none (client
    certificates required by TLS, or ``fhir_auth = "none"``)."""
    if config.fhir_auth == "none" or config.http_tls_client_ca:
        return None
    path = Path(config.fhir_clients_path) if config.fhir_clients_path else data_dir / "gateway" / "fhir-clients.toml"
    return TokenFile.load_or_create(path, "clients", "ehr", "FHIR clients of the gateway's POST /fhir "
                                    "(services/gateway/fhir_app.py)")


@asynccontextmanager
async def run_gateway(settings: Settings, nats_url: str | NatsAccess, gateway_config: GatewayConfig,
                      names: Names = Names()) -> AsyncIterator[RunningGateway]:
    """Connect, declare streams and the state bucket, load the state, then listen (MLLP and
    HTTP). Yields once both ports accept connections."""
    from .fhir_app import make_app

    log = get_logger(SERVICE)
    config = gateway_config
    broker = access_for(nats_url).broker(SERVICE, graceful_timeout=10.0)
    failed: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
    async with broker:
        js = broker.config.connection_state.stream
        await ensure_gateway_streams(js, names)
        store = await GatewayStore.open(js, names.state_bucket(SERVICE))
        ledger = await MessageLedger.open(js, names.state_bucket(LEDGER), config.message_identity_days * 86400)
        book = Book(await store.load())
        gateway = Gateway(config, js, names, store, book, log, ledger)
        mllp = MllpServer(gateway.handle_hl7_safely, config.max_message_bytes, config.idle_timeout_s, log,
                          peers=config.mllp_peers, max_per_source=config.max_connections_per_source,
                          max_connections=config.max_connections, tls=config.mllp_tls)
        mllp_port = await mllp.start(config.mllp_host, config.mllp_port)
        clients = fhir_clients(config, settings.data_dir)
        app = make_app(gateway, config.max_message_bytes, clients, config.fhir_max_in_flight_per_source)
        server, serving, http_url = await start_http(app, f"{config.http_host}:{config.http_port}", "FHIR endpoint",
                                                     config.http_tls, limit_concurrency=config.fhir_max_in_flight,
                                                     timeout_keep_alive=5)
        http_port = int(http_url.rsplit(":", 1)[1])
        if insecure := insecure_choices(config):
            log.warning("gateway transport not secured (docs/integrations.md, 'Who may send')", insecure=insecure)

        async def ticking() -> None:
            while not failed.done():
                await asyncio.sleep(config.tick_seconds)
                try:
                    await gateway.tick(datetime.now(UTC))
                except Exception as exc:  # crash-only: stop for a clean restart
                    log.critical("timer tick failed; stopping", error=type(exc).__name__)
                    if not failed.done():
                        failed.set_result(exc)

        ticker = asyncio.create_task(ticking())

        async def status() -> dict[str, Any]:
            return {"counters": dict(gateway.counts)}

        heartbeats = Heartbeats(broker.connection, names, SERVICE, instance_name(), status, log=log)
        if names.ns == Names().ns:
            heartbeats.start()
        log.info("gateway listening", mllp_port=mllp_port, http_port=http_port, state_keys=len(book.base),
                 site_timezone=config.site_timezone)
        host = f"[{config.mllp_host}]" if ":" in config.mllp_host else config.mllp_host  # for the up that started it
        announce(listening.GATEWAY_MLLP, f"{'mllps' if config.mllp_tls else 'mllp'}://{host}:{mllp_port}")
        announce(listening.GATEWAY_FHIR, f"{http_url}/fhir")
        try:
            yield RunningGateway(gateway, mllp_port, http_port, failed)
        finally:
            await heartbeats.stop()
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await ticker
            await mllp.stop()
            await stop_http(server, serving)
            log.info("gateway stopping", **gateway.counts, connections_refused=sum(mllp.refused.values()))
