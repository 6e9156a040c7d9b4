"""JetStream streams and consumers the services need, declared idempotently.

Durability choices (see docs/reliability.md): file storage everywhere; a dedup window on
every stream so a republished id (``Nats-Msg-Id`` = ``event_id``) is dropped; alerts kept
for 400 days as the audit trail.
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

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
    def make(name: str, subjects: list[str], max_age: float, max_bytes: int) -> StreamConfig:
        return StreamConfig(
            name=name,
            subjects=subjects,
            storage=StorageType.FILE,
            retention=RetentionPolicy.LIMITS,
            max_age=max_age,
            max_msg_size=max_bytes,
            duplicate_window=policy.dedup_window_s,
            num_replicas=policy.replicas,
        )

    ns = names.ns
    return [
        make(names.stream_in, [f"{ns}.in.>"], policy.inbound_max_age_s, INBOUND_MAX_BYTES),
        make(names.stream_alerts, [f"{ns}.alert.>"], policy.alerts_max_age_s, OUTPUT_MAX_BYTES),
        make(names.stream_out, [f"{ns}.out.>"], policy.out_max_age_s, OUTPUT_MAX_BYTES),
        make(names.stream_dlq, [f"{ns}.dlq.>"], policy.dlq_max_age_s, DEAD_LETTER_MAX_BYTES),
        make(names.stream_audit, [f"{ns}.audit.>"], policy.audit_max_age_s, OUTPUT_MAX_BYTES),
    ]


async def ensure_streams(js: JetStreamContext, names: Names, policy: StreamPolicy = StreamPolicy()) -> None:
    """Create missing streams; bring existing ones to the configured limits, keeping their
    replica count (set by whoever provisioned them: every service calls this on start)."""
    for config in stream_configs(names, policy):
        try:
            info = await js.stream_info(config.name)
        except NotFoundError:
            await js.add_stream(config)
            continue
        config.num_replicas = info.config.num_replicas
        await js.update_stream(config)


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


async def ensure_gateway_streams(js: JetStreamContext, names: Names, policy: StreamPolicy = StreamPolicy()) -> None:
    """The product's streams plus the gateway's dead letters."""
    await ensure_streams(js, names, policy)
    for config in gateway_stream_configs(names, policy):
        try:
            await js.stream_info(config.name)
            await js.update_stream(config)
        except NotFoundError:
            await js.add_stream(config)


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
