"""JetStream streams, KV buckets and consumers: their configuration, the provisioning step that
creates and updates them, and the start-up check every service makes.

Durability choices (see docs/reliability.md): file storage everywhere; a dedup window on
every stream so a republished id (``Nats-Msg-Id`` = ``event_id``) is dropped; alerts kept
for 400 days and the paging audit 6 years, both append-only (no message delete, no purge).

Who may change them (docs/security.md): only ``provision`` (``infusion-monitor provision``, run
with the admin credential; ``up`` runs it for its embedded server) creates and updates streams
and buckets. Services only check that what they need exists (``ensure_streams``,
``open_bucket``); their NATS users may not create, update, purge or delete a stream.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from .limits import (
    DEAD_LETTER_MAX_BYTES,
    GATEWAY_DEAD_LETTER_MAX_BYTES,
    INBOUND_MAX_BYTES,
    OUTPUT_MAX_BYTES,
)
from .names import Names

DAY = 24 * 3600.0


@dataclass(frozen=True)
class StreamPolicy:
    replicas: int = 1
    dedup_window_s: float = 3600.0
    inbound_max_age_s: float = 30 * DAY
    alerts_max_age_s: float = 400 * DAY
    out_max_age_s: float = 90 * DAY
    dlq_max_age_s: float = 30 * DAY
    audit_max_age_s: float = 6 * 366 * DAY  # paging audit trail: every lifecycle change and delivery attempt


def stream_configs(names: Names, policy: StreamPolicy = StreamPolicy()) -> list[StreamConfig]:
    """Every stream with a message size limit below the server's (runtime/limits.py): an
    inbound event larger than ``INBOUND_MAX_BYTES`` is refused to its producer at publish."""
    def make(name: str, subjects: list[str], max_age: float, max_bytes: int, append_only: bool = False) -> StreamConfig:
        return StreamConfig(
            name=name,
            subjects=subjects,
            storage=StorageType.FILE,
            retention=RetentionPolicy.LIMITS,
            max_age=max_age,
            max_msg_size=max_bytes,
            duplicate_window=policy.dedup_window_s,
            num_replicas=policy.replicas,
            # the audit trail (and the alerts in it) is append-only: no message deletes, no purge,
            # no roll-up headers, for anyone; only max_age expires it (docs/security.md)
            deny_delete=append_only or None,
            deny_purge=append_only or None,
            allow_rollup_hdrs=False if append_only else None,
        )

    ns = names.ns
    return [
        make(names.stream_in, [f"{ns}.in.>"], policy.inbound_max_age_s, INBOUND_MAX_BYTES),
        make(names.stream_alerts, [f"{ns}.alert.>"], policy.alerts_max_age_s, OUTPUT_MAX_BYTES, append_only=True),
        make(names.stream_out, [f"{ns}.out.>"], policy.out_max_age_s, OUTPUT_MAX_BYTES),
        make(names.stream_dlq, [f"{ns}.dlq.>"], policy.dlq_max_age_s, DEAD_LETTER_MAX_BYTES),
        make(names.stream_audit, [f"{ns}.audit.>"], policy.audit_max_age_s, OUTPUT_MAX_BYTES, append_only=True),
    ]


class NotProvisioned(RuntimeError):
    """A stream or bucket is missing and this connection may not create it."""


async def _declare(js: JetStreamContext, config: StreamConfig) -> None:
    """Create a missing stream (an open development server); a service user may not: then say
    what to run instead of failing obscurely."""
    try:
        await js.add_stream(config)
    except Exception as exc:  # a permissions violation times out (no reply) or is refused
        raise NotProvisioned(f"stream {config.name} does not exist and this NATS user may not create it: "
                             "run `infusion-monitor provision` with the admin credential") from exc


async def ensure_streams(js: JetStreamContext, names: Names, policy: StreamPolicy = StreamPolicy(),
                         needed: Iterable[str] | None = None) -> None:
    """What every service calls at start: the streams it uses (``needed``: their names; default:
    the five product streams) exist. It never changes an existing stream (only ``provision``,
    run by an administrator, creates and updates them; the services' NATS users may not), and
    creates a missing one only where the connection is allowed to (a server without accounts)."""
    configs = {c.name: c for c in stream_configs(names, policy) + gateway_stream_configs(names, policy)}
    for name in (needed if needed is not None else [c.name for c in stream_configs(names, policy)]):
        try:
            await js.stream_info(name)
        except NotFoundError:
            await _declare(js, configs[name])


async def ensure_gateway_streams(js: JetStreamContext, names: Names, policy: StreamPolicy = StreamPolicy()) -> None:
    """The gateway's streams: the inbound stream and its own dead letters."""
    await ensure_streams(js, names, policy, needed=(names.stream_in, names.stream_gateway_dlq))


async def provision_streams(js: JetStreamContext, names: Names, policy: StreamPolicy = StreamPolicy()) -> list[str]:
    """Create or update every stream to the configured limits (``infusion-monitor provision``,
    as admin); an existing stream keeps its replica count. Returns what changed."""
    changed: list[str] = []
    for config in stream_configs(names, policy) + gateway_stream_configs(names, policy):
        try:
            info = await js.stream_info(config.name)
        except NotFoundError:
            await js.add_stream(config)
            changed.append(f"created stream {config.name}")
            continue
        config.num_replicas = info.config.num_replicas
        if _differs(info.config, config):
            await js.update_stream(config)
            changed.append(f"updated stream {config.name}")
    return changed


_COMPARED = ("subjects", "storage", "retention", "max_age", "duplicate_window", "deny_delete", "deny_purge",
             "allow_rollup_hdrs", "max_msg_size")


def _differs(current: StreamConfig, wanted: StreamConfig) -> bool:
    def norm(value: object) -> object:
        return getattr(value, "value", value) if value is not None else None

    for name in _COMPARED:
        mine, theirs = norm(getattr(wanted, name, None)), norm(getattr(current, name, None))
        if mine is None:
            continue
        if name in ("max_age", "duplicate_window"):
            mine, theirs = float(mine or 0), float(theirs or 0)  # type: ignore[arg-type]
        if mine != theirs:
            return True
    return False


def policy_from_env(env: dict[str, str] | None = None) -> StreamPolicy:
    """``INFUSION_MONITOR_REPLICAS``: replicas of the streams and KV buckets a service creates
    (3 on the cluster of deploy/; 1 on a single server)."""
    import os

    env = dict(os.environ if env is None else env)
    return StreamPolicy(replicas=int(env.get("INFUSION_MONITOR_REPLICAS", "1")))


def gateway_stream_configs(names: Names, policy: StreamPolicy = StreamPolicy()) -> list[StreamConfig]:
    """The gateway's dead-letter stream: raw HL7/FHIR with identity in it, kept apart from the
    monitor's ``{NS}_DLQ`` so that it can be restricted to the gateway and operators."""
    return [StreamConfig(
        name=names.stream_gateway_dlq,
        subjects=[f"{names.ns}.gwdlq.>"],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        max_age=policy.dlq_max_age_s,
        max_msg_size=GATEWAY_DEAD_LETTER_MAX_BYTES,
        duplicate_window=policy.dedup_window_s,
        num_replicas=policy.replicas,
    )]


# -- KV buckets ----------------------------------------------------------------------------------

MESSAGE_LEDGER_DAYS = 30.0  # the gateway's default message_identity_days


@dataclass(frozen=True)
class Bucket:
    """A service's KV bucket: file storage, one revision kept; ``ttl_s``: entries expire."""

    name: str
    ttl_s: float | None = None

    def config(self, replicas: int = 1) -> KeyValueConfig:
        return KeyValueConfig(bucket=self.name, history=1, storage=StorageType.FILE, replicas=replicas,
                              ttl=self.ttl_s)


def monitor_suffixes(instances: int) -> list[str]:
    """Durable and bucket suffixes of N monitor instances (``""`` for one; ``-p<i>of<N>``)."""
    return [""] if instances <= 1 else [f"-p{i}of{instances}" for i in range(instances)]


def service_buckets(names: Names, monitor_instances: int = 1,
                    ledger_days: float = MESSAGE_LEDGER_DAYS) -> list[Bucket]:
    """Every bucket the services use: the monitor's (one per instance), the pager's, the
    gateway's state and its message ledger (entries expire after ``message_identity_days``)."""
    return ([Bucket(names.state_bucket("monitor" + s)) for s in monitor_suffixes(monitor_instances)]
            + [Bucket(names.state_bucket("pager")), Bucket(names.state_bucket("gateway")),
               Bucket(names.state_bucket("gateway-msgids"), ledger_days * 86400)])


async def open_bucket(js: JetStreamContext, bucket: Bucket | str, replicas: int = 1) -> KeyValue:
    """A service's bucket; created only when missing and the connection may (a development
    server without accounts), else ``NotProvisioned``."""
    bucket = Bucket(bucket) if isinstance(bucket, str) else bucket
    try:
        return await js.key_value(bucket.name)
    except (BucketNotFoundError, NotFoundError):
        pass
    try:
        return await js.create_key_value(bucket.config(replicas))
    except Exception as exc:
        raise NotProvisioned(f"KV bucket {bucket.name} does not exist and this NATS user may not create it: "
                             "run `infusion-monitor provision` with the admin credential") from exc


async def provision_buckets(js: JetStreamContext, buckets: list[Bucket], replicas: int = 1) -> list[str]:
    """Create the missing buckets (an existing one is kept: its data is the services' state)."""
    changed = []
    for bucket in buckets:
        try:
            await js.key_value(bucket.name)
        except (BucketNotFoundError, NotFoundError):
            await js.create_key_value(bucket.config(replicas))
            changed.append(f"created bucket {bucket.name}")
    return changed


def worker_consumer(durable: str, filter_subject: str, max_ack_pending: int) -> ConsumerConfig:
    """The monitor's durable pull consumer: explicit acks, unlimited redelivery (bad input is
    dead-lettered by the worker itself, so nothing is ever dropped by the server), and room for
    every message between two checkpoints to be in flight (the worker acks at checkpoints and
    keeps stream order itself)."""
    return ConsumerConfig(
        durable_name=durable,
        filter_subject=filter_subject,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=30.0,
        max_deliver=-1,
        max_ack_pending=max_ack_pending,
    )


async def ensure_consumer(js: JetStreamContext, stream: str, config: ConsumerConfig) -> None:
    """Create the durable, or update its mutable settings (nats-py would keep an old config)."""
    try:
        info = await js.consumer_info(stream, config.durable_name)
    except NotFoundError:
        await js.add_consumer(stream, config)
        return
    current = info.config
    current.ack_wait, current.max_deliver, current.max_ack_pending = (
        config.ack_wait, config.max_deliver, config.max_ack_pending)
    await js.add_consumer(stream, current)
