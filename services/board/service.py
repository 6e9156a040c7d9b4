"""The board service: the streams -> the projection in memory -> the web app (uvicorn).

Consumers, on the connection of a FastStream broker like the other services (plain nats-py pull
loops, ``services/worker/app.py`` says why), one **ephemeral** consumer per stream, no acks:

- ``{NS}_IN`` filter ``{ns}.in.>`` (sessions, vitals, profiles; other types are skipped unread),
- ``{NS}_ALERTS`` filter ``{ns}.alert.>`` (raised, acknowledged, resolved, escalated),
- ``{NS}_OUT`` filter ``{ns}.out.>`` (session.closed and the facts the tiles show).

The streams are the source: at start every consumer begins at the wall clock minus
``lookback_hours`` and the history is read up to each stream's last sequence at that moment,
merged across the three streams by the time the server stored each message (so an alert comes
after the reading that raised it) and applied; then the pages are served and the consumers keep
following. Nothing is stored: a restart rebuilds the same board. A consumer error stops the
service (crash-only; ``up`` restarts it).

Every board action (sign-in, acknowledgement, timeline, day view) is written to the audit stream
``{NS}_AUDIT`` as ``{ns}.audit.<patient>.board.<action>`` (``_`` when no patient) and logged:
the user's name and the pseudonymous patient key, nothing else about the patient.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import TypeAdapter, ValidationError

from infusion_monitor.schemas import Rejection, parse_inbound
from infusion_monitor.schemas.base import format_time
from infusion_monitor.schemas.outbound import AlertAcknowledged, AlertEscalated, OutboundUnion

from ..engine.bus import content_digest
from ..engine.ids import stable_id
from ..pager.wire import parse_wire, subject_type
from ..runtime.access import NatsAccess, access_for
from ..runtime import listening
from ..runtime.health import Heartbeats, instance_name
from ..runtime.listening import announce
from ..runtime.shells import deliver_prefix, fail, pull_batches, start_http, stop_consuming, stop_http
from ..runtime.logs import get_logger
from ..runtime.names import Names
from ..runtime.settings import Settings
from ..runtime.streams import ensure_streams
from .app import board_app
from .auth import Authenticator, Sessions, load_or_create_secret, load_users
from .config import BoardConfig, allowed_hosts
from .hub import BoardHub
from .users import UsersFile
from .projection import BoardProjection

SERVICE = "board"
FETCH = 256
IDLE_WAIT_S = 1.0
TOP_UP_WAIT_S = 0.002
INBOUND_TYPES = frozenset(t for t in BoardProjection.handles if t in (
    "patient.profile", "infusion.started", "infusion.ended", "vitals.recorded")) | {"clock.tick"}
OUT_TYPES = frozenset({"session.closed", "patient.contraindicated", "patient.contraindication_lifted",
                       "antibody.persistence", "reexposure.recorded"})
_OUTBOUND = TypeAdapter(OutboundUnion)


@dataclass
class RunningBoard:
    hub: BoardHub
    url: str | None
    failed: asyncio.Future[BaseException]


def parse_message(subject: str, data: bytes, names: Names) -> Any | Rejection | None:
    """The event a message carries, a rejection, or None for a type the board does not show."""
    kind = subject.split(".", 2)[1] if subject.count(".") >= 2 else ""
    event_type = subject_type(subject)
    if kind == "in":
        return parse_inbound(data) if event_type in INBOUND_TYPES else None
    if kind == "alert":
        if event_type == "alert.escalated":
            try:
                return AlertEscalated.model_validate_json(data)
            except ValidationError as exc:
                return Rejection("", str(exc.errors(include_url=False)[0]["msg"]))
        return parse_wire(data, subject)
    if kind == "out" and event_type in OUT_TYPES:
        try:
            return _OUTBOUND.validate_json(data)
        except ValidationError as exc:
            return Rejection("", str(exc.errors(include_url=False)[0]["msg"]))
    return None


class BoardFeeder:
    """Applies stream messages to the hub and wakes the pages once per batch."""

    def __init__(self, hub: BoardHub, names: Names, log: Any) -> None:
        self.hub, self.names, self.log = hub, names, log
        self.applied = 0
        self.skipped = 0

    def apply(self, subject: str, data: bytes) -> bool:
        event = parse_message(subject, data, self.names)
        if event is None:
            return False
        if isinstance(event, Rejection):
            self.skipped += 1  # the monitor dead-letters bad input; the board just skips it
            return False
        try:
            applied = self.hub.apply(event, content_digest(data))
        except Exception as exc:  # a projection bug must not take the board down for one event
            self.log.error("event not applied", subject_type=subject_type(subject), error=repr(exc))
            return False
        self.applied += int(applied)
        return applied

    def apply_batch(self, msgs: list[Any]) -> None:
        changed = False
        for msg in msgs:
            changed = self.apply(msg.subject, msg.data) or changed
        if changed:
            self.hub.publish_change()


def _consumer(filter_subject: str, start: datetime) -> ConsumerConfig:
    return ConsumerConfig(
        filter_subject=filter_subject,
        deliver_policy=DeliverPolicy.BY_START_TIME,
        opt_start_time=start.isoformat().replace("+00:00", "Z"),
        ack_policy=AckPolicy.NONE,
        inactive_threshold=300.0,
    )


async def _read_history(sub: Any, last_seq: int) -> list[Any]:
    """Everything the consumer delivers up to ``last_seq`` (the stream's end when we started)."""
    out: list[Any] = []
    if not last_seq:
        return out
    if not (await sub.consumer_info()).num_pending:
        return out
    while True:
        try:
            msgs = await sub.fetch(FETCH, timeout=2.0)
        except TimeoutError:
            return out  # nothing more within the look-back
        out.extend(msgs)
        if msgs and msgs[-1].metadata.sequence.stream >= last_seq:
            return out


def _status(feeder: BoardFeeder) -> Any:
    async def status() -> dict[str, Any]:
        return {"counters": {"applied": feeder.applied, "skipped": feeder.skipped}}
    return status


async def _follow(sub: Any, feeder: BoardFeeder, failed: asyncio.Future[BaseException], log: Any,
                  connection: Any = None) -> None:
    try:
        async for msgs in pull_batches(sub, FETCH, failed, log, idle_wait=IDLE_WAIT_S, top_up_wait=TOP_UP_WAIT_S,
                                       connection=connection):
            feeder.apply_batch(msgs)
    except Exception as exc:
        fail(failed, exc, log, "consumer")


def make_auditor(js: Any, names: Names, log: Any, hub: BoardHub) -> Any:
    async def audit(action: str, user: str, details: dict[str, Any]) -> None:
        at = datetime.now(UTC)
        patient = details.get("patient_id")
        record = {
            "type": f"board.{action}",
            "event_id": stable_id("bd", action, user, format_time(at), json.dumps(details, sort_keys=True)),
            "occurred_at": format_time(at),
            "user": user,
            "via": "board",
            "target": {k: v for k, v in details.items() if v is not None},
        }
        if hub.clock_mode == "event" and hub.engine.clock is not None:
            record["event_time"] = format_time(hub.engine.clock)
        log.info("board action", action=action, user=user, **{k: v for k, v in record["target"].items()})
        try:
            await js.publish(names.audit(f"board.{action}", patient), json.dumps(record).encode(),
                             headers={"Nats-Msg-Id": record["event_id"]})
        except Exception as exc:  # the action already happened; the log line above keeps it
            log.error("audit record not stored", action=action, error=repr(exc))
    return audit


def make_authenticator(config: BoardConfig, log: Any) -> Authenticator:
    """The users, sessions (kept beside the secret, mode 0600) and the SSO settings; refuses a
    proxy mode without configured proxy addresses (ValueError)."""
    users_file = UsersFile(config.users_path, log) if config.users_path else None
    users = load_users(config.users_path) if users_file and users_file.path.exists() else {}  # bad at start: refused
    if config.trusted_header and not config.trusted_proxies:
        raise ValueError("SSO proxy mode needs INFUSION_MONITOR_BOARD_TRUSTED_PROXIES (the proxy's addresses)")
    if not users:
        log.warning("no board users yet: nobody can sign in until one is added (infusion-monitor board add-user "
                    "NAME; the board re-reads its users file)", path=config.users_path)
    if not config.cookie_secure:
        log.warning("session cookies without Secure (INFUSION_MONITOR_BOARD_COOKIE_SECURE=false): plain HTTP only")
    secret = config.secret.encode() if config.secret else load_or_create_secret(config.secret_path)
    sessions = Sessions(config.session_hours, config.secret_path.parent / "sessions.json")
    return Authenticator(users=users, secret=secret, session_hours=config.session_hours,
                         cookie_secure=config.cookie_secure, trusted_header=config.trusted_header,
                         trusted_proxies=config.trusted_proxies, proxy_secret=config.proxy_secret,
                         sessions=sessions, reload=users_file.current if users_file else None)


@asynccontextmanager
async def run_board(settings: Settings, nats_url: str | NatsAccess, board_config: BoardConfig, names: Names = Names(),
                    *, auth: Authenticator | None = None) -> AsyncIterator[RunningBoard]:
    """The board, running until the context exits: history read, consumers following, the web app
    served on ``board_config.bind`` (``url`` in the result; ``None`` when the bind is off)."""
    log = get_logger(SERVICE)
    auth = auth or make_authenticator(board_config, log)
    broker = access_for(nats_url).broker(SERVICE, graceful_timeout=5.0)
    failed: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
    hub = BoardHub(settings.monitor, board_config.view, clock=board_config.clock)
    feeder = BoardFeeder(hub, names, log)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(broker)
        js = broker.config.connection_state.stream
        await ensure_streams(js, names, needed=(names.stream_in, names.stream_alerts, names.stream_out,
                                                names.stream_audit))
        start = datetime.now(UTC) - timedelta(hours=board_config.lookback_hours)
        ns = names.ns
        streams = [(names.stream_in, f"{ns}.in.>"), (names.stream_alerts, f"{ns}.alert.>"),
                   (names.stream_out, f"{ns}.out.>")]
        subs = []
        history: list[Any] = []
        for stream, subject in streams:
            last_seq = (await js.stream_info(stream)).state.last_seq
            sub = await js.pull_subscribe(subject, durable=None, stream=stream, config=_consumer(subject, start),
                                          inbox_prefix=deliver_prefix("board"))
            subs.append(sub)
            history.extend(await _read_history(sub, last_seq))
        # the three streams in the order the server stored their messages (stable: per stream order kept)
        history.sort(key=lambda m: m.metadata.timestamp)
        feeder.apply_batch(history)
        hub.ready = True
        hub.publish_change()
        log.info("board starting", history=len(history), applied=feeder.applied, skipped=feeder.skipped,
                 lookback_hours=board_config.lookback_hours, clock=board_config.clock)

        async def publish_ack(event: AlertAcknowledged) -> None:
            await js.publish(names.outbound(event.type, event.patient_id),
                             event.model_dump_json(exclude_none=True).encode(),
                             headers={"Nats-Msg-Id": event.event_id})

        server = server_task = None
        url = None
        if board_config.bind:
            app = board_app(hub, auth, publish_ack, make_auditor(js, names, log, hub),
                            refresh_s=board_config.sse_refresh_s, keepalive_s=board_config.sse_keepalive_s,
                            allowed_hosts=allowed_hosts(board_config))
            server, server_task, url = await start_http(app, board_config.bind, "board", board_config.tls,
                                                        timeout_graceful_shutdown=3)
            log.info("board listening", url=url)
            announce(listening.BOARD, url)  # for the up that started it
        tasks = [asyncio.create_task(_follow(sub, feeder, failed, log, broker.connection)) for sub in subs]
        heartbeats = Heartbeats(broker.connection, names, "board", instance_name(), _status(feeder), log=log)
        if names.ns == Names().ns:
            heartbeats.start()
        try:
            yield RunningBoard(hub, url, failed)
        finally:
            await heartbeats.stop()
            hub.close()
            await stop_consuming(tasks, subs)
            await stop_http(server, server_task)
            log.info("board stopping", applied=feeder.applied)


def run_board_service(nats_url: str | NatsAccess, settings: Settings, board_config: BoardConfig | None = None) -> int:
    """``infusion-monitor service board``: the board in the foreground until SIGINT/SIGTERM.
    Exit codes: 0 stopped, 70 failed (``up`` restarts it), 2 bad users file."""
    import signal

    board_config = board_config or BoardConfig.load(data_dir=settings.data_dir)
    log = get_logger(SERVICE)
    try:
        auth = make_authenticator(board_config, log)
    except (OSError, ValueError) as exc:
        log.critical("board configuration not usable (users file, SSO proxy)", path=board_config.users_path,
                     error=str(exc))
        return 2

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with run_board(settings, nats_url, board_config, auth=auth) as running:
            stopped = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({stopped, running.failed}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            return 70 if running.failed in done else 0

    return asyncio.run(main())


@asynccontextmanager
async def start_board(nats_url: str | NatsAccess, settings: Settings, board_config: BoardConfig | None = None,
                      names: Names = Names(), auth: Authenticator | None = None) -> AsyncIterator[str]:
    """For ``infusion-monitor demo``: the board against ``nats_url`` (e.g. the online replay's
    namespace, with ``clock="event"``), yielding its URL while it runs. ``auth``: e.g. a one-off
    demo user (``users_from_pairs``); default: the configured users file."""
    board_config = board_config or BoardConfig.load(data_dir=settings.data_dir)
    async with run_board(settings, nats_url, board_config, names, auth=auth) as running:
        if running.url is None:
            raise RuntimeError("the board's bind is off")
        yield running.url
