"""One run of every service and operator command, each under its own NATS user, against an
embedded server that traces every client's protocol lines: what each user really publishes and
subscribes to (``test_permissions.py`` holds the permissions table against it).

The scenario, all on loopback and in one event loop: provisioning as admin; the monitor (one
instance, and two partitioned instances), the pager (a webhook destination, the acknowledgement
endpoint), the board (sign-in, an acknowledgement), the gateway (an HL7 message stored, one
dead-lettered); a producer's events raising a critical alert whose session then closes, and a bad
event; the operator's ``alerts`` and ``deadletter list/show/redrive`` on both dead-letter streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from argparse import Namespace
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from infusion_monitor.runtime.embedded import EmbeddedAuth, EmbeddedNats
from infusion_monitor.runtime.names import Names
from infusion_monitor.runtime.permissions import Role
from infusion_monitor.runtime.provision import provision
from tests.integration.live import now_minus, wait_for

TRACE = "\ntrace: true\nmax_traced_msg_len: 32\n"
LINE = re.compile(r'"(?P<account>[A-Z$]+)/user:(?P<user>[a-z]+)" - <<- \[(?P<op>H?PUB|SUB) (?P<subject>\S+)')
VIOLATION = re.compile(r'(Publish|Subscription) Violation.*?User "(?P<user>[^"]+)".*?Subject "(?P<subject>[^"]+)"')
INSTANCES = (1, 2)  # a single monitor and two partitioned instances
PATIENT = "pk-perm"
PASSWORD = "scenario-password-1"


@dataclass
class Observed:
    """What the server saw: per user, the subjects published and subscribed, and violations."""

    published: dict[str, set[str]] = field(default_factory=dict)
    subscribed: dict[str, set[str]] = field(default_factory=dict)
    violations: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def parse(cls, log: str) -> Observed:
        out = cls()
        for line in log.splitlines():
            if (m := LINE.search(line)) is not None:
                target = out.subscribed if m["op"] == "SUB" else out.published
                target.setdefault(m["user"], set()).add(m["subject"])
            elif (v := VIOLATION.search(line)) is not None:
                out.violations.append((v["user"], v["subject"]))
        return out


def unrestricted(table: list[Role]) -> list[Role]:
    """The same users with no restriction: to see what the code uses before judging it."""
    return [replace(r, publish=None, deny=(), subscribe=()) for r in table]


def traced_server(tmp: Path, table: list[Role] | None = None) -> EmbeddedNats:
    auth = EmbeddedAuth(tmp / "credentials", monitor_instances=INSTANCES, extra_config=TRACE, table=table)
    return EmbeddedNats(tmp / "nats", auth=auth)


def _event(patient: str, type_: str, event_id: str, minutes_ago: float, **fields: Any) -> dict[str, Any]:
    return {"type": type_, "event_id": event_id, "occurred_at": now_minus(minutes_ago), "patient_id": patient, **fields}


def _session(patient: str, tag: str, t0: float, reaction: bool) -> list[dict[str, Any]]:
    """A session starting ``t0`` minutes ago that ended 70 minutes later (its window closes 60
    minutes after that); with a critical reading (R7) at t0 - 50 when ``reaction``."""
    low = {"systolic_mmhg": 82, "spo2_pct": 90, "symptoms": ["wheeze"]} if reaction else {"systolic_mmhg": 128, "spo2_pct": 97}
    return [_event(patient, "vitals.recorded", f"{tag}-v0", t0 + 5, systolic_mmhg=132, spo2_pct=98),
            _event(patient, "infusion.started", f"{tag}-s", t0, session_id=f"ses-{tag}", pump_id="pump-9", site_id="site-a"),
            _event(patient, "vitals.recorded", f"{tag}-v1", t0 - 1, systolic_mmhg=131, spo2_pct=98),
            _event(patient, "vitals.recorded", f"{tag}-v2", t0 - 50, **low),
            _event(patient, "infusion.ended", f"{tag}-e", t0 - 70, session_id=f"ses-{tag}", outcome="completed")]


ROUTES = """
[destinations.ward]
adapter = "webhook"
url = "{base}/ward"
max_attempts = 50
backoff_initial_s = 0.05
backoff_max_s = 0.2
[destinations.backup]
adapter = "webhook"
url = "{base}/backup"
max_attempts = 50
backoff_initial_s = 0.05
backoff_max_s = 0.2
[destinations.gone]
adapter = "webhook"
url = "http://127.0.0.1:{closed}/nobody"
max_attempts = 1
backoff_initial_s = 0.05
backoff_max_s = 0.2
[operator]
destinations = ["ward"]
[[routes]]
name = "emergency"
severities = ["critical", "high"]
  [[routes.tiers]]
  destinations = ["ward"]
  escalate_after = "5m"
  [[routes.tiers]]
  destinations = ["backup"]
[[routes]]
name = "rest"
severities = ["medium", "low", "info"]
  [[routes.tiers]]
  destinations = ["gone"]
"""


async def _publish(js: Any, events: list[dict[str, Any]]) -> None:
    for event in events:
        await js.publish(f"im.in.{event['patient_id']}.{event['type']}", json.dumps(event).encode(),
                         headers={"Nats-Msg-Id": event["event_id"]})


async def _count(js: Any, stream: str, predicate: Any) -> int:
    from tests.integration.live import stream_messages

    return sum(1 for m in await stream_messages(js, stream) if _json(m.data) and predicate(_json(m.data)))


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


async def run(server: EmbeddedNats, tmp: Path) -> None:
    """Drive the scenario to its end (bounded: every wait has a timeout): a first start of every
    service, then a restart with a delivery of the monitor's and one of the pager's lost to
    another client (both read them from the stream: their gap reads)."""
    from infusion_monitor.pager.app import DURABLE_ALERTS
    from infusion_monitor.pager.routes import parse_routes
    from infusion_monitor.runtime.embedded import free_port
    from infusion_monitor.worker.app import DURABLE
    from tests.gateway.live import monitor_msg
    from tests.pager.receiver import Receiver

    names = Names()
    for count in INSTANCES:
        await provision(server.access("admin"), instances=count)
    admin = await server.access("admin").connect("admin")
    producer = await server.access("producer").connect("producer")
    receiver = await Receiver().start()
    routes = parse_routes(ROUTES.replace("{base}", receiver.base).replace("{closed}", str(free_port())))
    ajs, pjs = admin.jetstream(timeout=10.0), producer.jetstream(timeout=10.0)
    try:
        await _publish(pjs, _session("pk-perm-a", "perm-a", 300, reaction=False))  # closes early
        await _publish(pjs, _session(PATIENT, "perm-b", 190, reaction=True))  # R7, closes on the tick
        await pjs.publish(f"im.in.{PATIENT}.vitals.recorded", b'{"type": "vitals.recorded"',
                          headers={"Nats-Msg-Id": "perm-bad"})
        async with contextlib.AsyncExitStack() as stack:
            await _monitors(stack, server, names)
            await wait_for(lambda: _count(ajs, names.stream_out, lambda e: e["type"] == "session.closed"), 60)
            await wait_for(lambda: _count(ajs, names.stream_alerts, lambda e: e.get("rule") == "R7"), 60)
            pager = await _pager(stack, server, names, routes)  # new: it peeks where its durables start
            board = await _board(stack, server, names)
            gateway = await _gateway(stack, server, names)
            # the critical alert pages the ward, escalates to the backup (its 5 min passed long
            # ago); staff acknowledge it on the board, and another alert on the endpoint
            r7 = await _request(receiver, lambda r: r.body.get("severity") == "critical" and r.path == "/ward")
            await _request(receiver, lambda r: r.path == "/backup")
            await _board_ack(board, r7.body["alert_id"])
            await _request(receiver, lambda r: r.body.get("type") == "alert.acknowledged")
            await _endpoint_ack(pager, tmp)
            await _request(receiver, lambda r: r.body.get("rule") == "SYS")  # the unreachable one is down
            # the gateway stores a reading (the monitors' clock moves to now) and dead-letters what
            # it cannot read; time moves on (only admin may publish a clock.tick): the R7 session
            # closes, the bridge resolves its alerts
            await _hl7(gateway, monitor_msg("PERM1", 1, systolic=120, spo2=97))
            await _hl7(gateway, b"not an HL7 message")
            tick = {"type": "clock.tick", "event_id": "perm-tick", "occurred_at": now_minus(0)}
            await ajs.publish(f"{names.ns}.in._.clock.tick", json.dumps(tick).encode(),
                              headers={"Nats-Msg-Id": tick["event_id"]})
            await _request(receiver, lambda r: r.body.get("type") == "alert.resolved")
            await _operator_commands(server.access("operator"))
            assert not pager.failed.done()

        # the restart: durables and buckets exist, state is loaded, lost deliveries read back
        await _publish(pjs, _reaction_now("pk-perm-e", "perm-e"))
        await (await ajs.pull_subscribe_bind(DURABLE, names.stream_in)).fetch(1, timeout=5)
        async with contextlib.AsyncExitStack() as stack:
            await _monitors(stack, server, names)
            await wait_for(lambda: _count(ajs, names.stream_alerts, lambda e: e.get("patient_id") == "pk-perm-e"), 60)
            e_alerts = await _alert_ids(ajs, names, "pk-perm-e")
            await (await ajs.pull_subscribe_bind(DURABLE_ALERTS, names.stream_alerts)).fetch(1, timeout=5)
            await ajs.publish(f"{names.ns}.alert.{PATIENT}.alert.raised", b"{not an alert",  # the pager's dead letters
                              headers={"Nats-Msg-Id": "perm-bad-alert"})
            pager = await _pager(stack, server, names, routes)
            gateway = await _gateway(stack, server, names)  # its state is loaded
            await _hl7(gateway, monitor_msg("PERM2", 1, systolic=121, spo2=97))
            await _request(receiver, lambda r: r.body.get("alert_id") in e_alerts)
            assert not pager.failed.done()
    finally:
        await receiver.stop()
        await producer.close()
        await admin.close()


async def _alert_ids(js: Any, names: Names, patient: str) -> set[str]:
    from tests.integration.live import stream_messages

    return {e["alert_id"] for m in await stream_messages(js, names.stream_alerts)
            if (e := _json(m.data)) and e.get("type") == "alert.raised" and e.get("patient_id") == patient}


def _reaction_now(patient: str, tag: str) -> list[dict[str, Any]]:
    return [_event(patient, "vitals.recorded", f"{tag}-v0", 12, systolic_mmhg=132, spo2_pct=98),
            _event(patient, "infusion.started", f"{tag}-s", 10, session_id=f"ses-{tag}", pump_id="pump-3"),
            _event(patient, "vitals.recorded", f"{tag}-v1", 9, systolic_mmhg=131, spo2_pct=98),
            _event(patient, "vitals.recorded", f"{tag}-v2", 1, systolic_mmhg=80, spo2_pct=89, symptoms=["stridor"])]


async def _monitors(stack: Any, server: EmbeddedNats, names: Names) -> None:
    from infusion_monitor.runtime.settings import Settings
    from infusion_monitor.worker.app import run_worker
    from infusion_monitor.worker.partition import Partition

    for partition in (Partition(), Partition(0, 2), Partition(1, 2)):
        await stack.enter_async_context(run_worker(Settings(), server.access("monitor"), names, clock="event",
                                                   partition=partition))


async def _pager(stack: Any, server: EmbeddedNats, names: Names, routes: Any) -> Any:
    from infusion_monitor.pager.app import PagerSettings, run_pager
    from infusion_monitor.runtime.settings import Settings

    return await stack.enter_async_context(run_pager(
        Settings(), server.access("pager"), routes, names,
        pager=PagerSettings(ack_bind="127.0.0.1:0", env={}, **_pager_extra(server))))


async def _board(stack: Any, server: EmbeddedNats, names: Names) -> Any:
    from infusion_monitor.board.auth import users_from_pairs
    from infusion_monitor.board.config import BoardConfig
    from infusion_monitor.board.service import make_authenticator, run_board
    from infusion_monitor.runtime.settings import Settings

    config = BoardConfig(bind="127.0.0.1:0", secret="s" * 40, lookback_hours=1, cookie_secure=False)  # plain HTTP
    auth = replace(make_authenticator(config, _Quiet()), users=users_from_pairs([("anna", "Anna K., RN", PASSWORD)]))
    return await stack.enter_async_context(run_board(Settings(), server.access("board"), config, names, auth=auth))


async def _gateway(stack: Any, server: EmbeddedNats, names: Names) -> Any:
    from infusion_monitor.gateway.app import run_gateway
    from infusion_monitor.runtime.settings import Settings
    from tests.gateway.hl7msg import config as gateway_config

    return await stack.enter_async_context(
        run_gateway(Settings(), server.access("gateway"), gateway_config(mllp_port=0, http_port=0), names))


async def _hl7(gateway: Any, message: bytes) -> None:
    from infusion_monitor.gateway.mllp import MllpClient

    async with MllpClient("127.0.0.1", gateway.mllp_port, timeout=10) as client:
        await client.send(message)


async def _operator_commands(operator: Any) -> None:
    from infusion_monitor.cli.deadletter import _run as deadletter
    from infusion_monitor.cli.status import collect
    from infusion_monitor.pager.audit import print_alerts

    await print_alerts(operator)
    await collect(operator, 0.5)  # infusion-monitor status subscribes to the services' heartbeats
    for stream in ("monitor", "gateway"):
        for command in ("list", "show"):
            await deadletter(Namespace(deadletter_command=command, stream=stream, seq=1), operator)
    await deadletter(Namespace(deadletter_command="redrive", stream="monitor", seq=1, file=None), operator)


def _pager_extra(server: EmbeddedNats) -> dict[str, Any]:
    return {"callers_path": server.store_dir.parent / "pager" / "ack-callers.toml"}


async def _request(receiver: Any, predicate: Any, timeout: float = 60) -> Any:
    async def found() -> Any:
        return next((r for r in receiver.requests if isinstance(r.body, dict) and predicate(r)), None)

    try:
        return await wait_for(found, timeout=timeout)
    except TimeoutError:
        seen = [(r.path, r.body.get("type"), r.body.get("rule") or r.body.get("kind")) for r in receiver.requests]
        raise AssertionError(f"no such request; the receiver got {seen}") from None


async def _board_ack(board: Any, alert_id: str) -> None:
    async with httpx.AsyncClient(base_url=board.url, follow_redirects=False) as http:
        await http.post("/login", data={"username": "anna", "password": PASSWORD}, headers={"Origin": board.url})
        page = await http.get("/", headers={"Accept": "text/html"})
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
        await wait_for(lambda: _board_knows(board, alert_id), timeout=30)
        answer = await http.post(f"/alerts/{alert_id}/ack", headers={
            "Origin": board.url, "Accept": "application/json", "X-CSRF-Token": csrf[1] if csrf else ""})
        assert answer.status_code == 202, answer.text


async def _endpoint_ack(pager: Any, tmp: Path) -> None:
    import tomllib

    alert_id = next(aid for aid, _ in _open_alerts(pager))
    token = tomllib.loads((tmp / "pager" / "ack-callers.toml").read_text())["callers"]["api"]["token"]
    async with httpx.AsyncClient(base_url=pager.ack_url) as http:
        answer = await http.post("/pager/ack", json={"alert_id": alert_id}, headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 202, answer.text


def _open_alerts(pager: Any) -> list[tuple[str, str]]:
    from infusion_monitor.pager.state import PatientAlerts

    out = []
    for patient, record in pager.runner.engine.records.items():
        state = record.slices.get("pager")
        if isinstance(state, PatientAlerts):
            out += [(aid, patient) for aid, a in state.alerts.items()
                    if not a.acknowledged and not a.resolved and patient != "_operator"]
    return out


async def _board_knows(board: Any, alert_id: str) -> bool:
    return board.hub.locate(alert_id) is not None


class _Quiet:
    def warning(self, *args: Any, **kwargs: Any) -> None:
        pass


LISTED_BUCKETS = {"monitor": ["monitor", "monitor-p0of2", "monitor-p1of2"], "pager": ["pager"],
                  "gateway": ["gateway"]}
FLOW_CONTROL_KEYS = 12_000  # enough keys that listing them needs flow-control replies (measured)


async def list_large_buckets(server: EmbeddedNats) -> None:
    """State big enough (12,000 keys) that listing it at start needs the ordered consumer's
    flow-control replies (``$JS.FC``): each service user lists its own buckets, as
    ``StateStore.load`` does."""
    names = Names()
    admin = await server.access("admin").connect("admin")
    try:
        ajs = admin.jetstream(timeout=30.0)
        for buckets in LISTED_BUCKETS.values():
            for bucket in buckets:
                kv = await ajs.key_value(names.state_bucket(bucket))
                for first in range(0, FLOW_CONTROL_KEYS, 2000):  # bounded batches of publishes
                    await asyncio.gather(*(kv.put(f"fc.k{i}", b"{}") for i in range(first, first + 2000)))
    finally:
        await admin.close()
    for user, buckets in LISTED_BUCKETS.items():
        client = await server.access(user).connect(user)
        try:
            for bucket in buckets:
                kv = await client.jetstream(timeout=30.0).key_value(names.state_bucket(bucket))
                assert len(await kv.keys()) >= FLOW_CONTROL_KEYS
        finally:
            await client.close()


async def observe(tmp: Path, table: list[Role] | None = None) -> Observed:
    """Run the scenario (and the large-state listing) on a traced server; what each user did."""
    server = traced_server(tmp, table).start()
    try:
        await asyncio.wait_for(run(server, tmp), timeout=300)
        await asyncio.wait_for(list_large_buckets(server), timeout=120)
    finally:
        server.stop()
    return Observed.parse(server.log_path.read_text(errors="replace"))
