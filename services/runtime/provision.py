"""``infusion-monitor provision``: create and update every stream and KV bucket, as admin.

The only step that may change a stream: the services' NATS users can neither create, update,
purge nor delete one (``permissions.py``). ``up`` runs it for its embedded server at every
start; on a deployed server an operator runs it with the admin credential
(``INFUSION_MONITOR_NATS_CREDENTIALS=admin.creds infusion-monitor provision --nats URL``) after
an upgrade and before starting the services.
"""

from __future__ import annotations

import asyncio
import os
import tomllib
from argparse import Namespace

from .access import NatsAccess
from .names import Names
from .streams import (
    MESSAGE_LEDGER_DAYS,
    StreamPolicy,
    policy_from_env,
    provision_buckets,
    provision_streams,
    service_buckets,
)


def ledger_days(env: dict[str, str] | None = None) -> float:
    """The gateway's ``message_identity_days`` (its ledger's expiry) from the configuration file."""
    env = dict(os.environ if env is None else env)
    if path := env.get("INFUSION_MONITOR_CONFIG"):
        try:
            with open(path, "rb") as fh:
                value = tomllib.load(fh).get("gateway", {}).get("message_identity_days")
        except (OSError, tomllib.TOMLDecodeError):
            value = None
        if isinstance(value, int | float) and value > 0:
            return float(value)
    return MESSAGE_LEDGER_DAYS


def monitor_instances(env: dict[str, str] | None = None) -> int:
    env = dict(os.environ if env is None else env)
    return int(env.get("INFUSION_MONITOR_MONITOR_INSTANCES", "1"))


async def provision(access: NatsAccess, names: Names = Names(), policy: StreamPolicy | None = None,
                    instances: int = 1, ledger: float = MESSAGE_LEDGER_DAYS) -> list[str]:
    """Streams (created or brought to the configured limits) and buckets (created when missing)."""
    policy = policy or policy_from_env()
    nc = await access.connect("admin")
    try:
        js = nc.jetstream(timeout=10.0)
        changed = await provision_streams(js, names, policy)
        changed += await provision_buckets(js, service_buckets(names, instances, ledger), policy.replicas)
        return changed
    finally:
        await nc.close()


def run_provision(args: Namespace, access: NatsAccess) -> int:
    """The command (``cli/main.py`` has found the server): prints what changed; exit 0."""
    instances = args.monitor_instances or monitor_instances()
    changed = asyncio.run(provision(access, instances=instances, ledger=ledger_days()))
    for line in changed:
        print(line)
    print(f"provisioned: {len(changed)} change(s)")
    return 0
