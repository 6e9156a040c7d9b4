"""A producer's first five minutes: publish one infusion session to a running `up` and see the alert.

Start the system in one terminal, then run this in another, both from the repository's folder:

    python3 run.py up
    .venv/bin/python examples/producer.py                 # the up of ./var
    .venv/bin/python examples/producer.py --data-dir DIR  # the up started with --data-dir DIR

What it does, with plain nats-py (nothing of infusion-monitor is imported):

1. connects as user `producer`, with the credentials file `up` wrote (DATA_DIR/credentials/producer.creds,
   mode 0600: read from the file, never put in a URL) to the URL `up` wrote (DATA_DIR/nats.url);
2. publishes with JetStream on `im.in.<patient>.<type>`, with `Nats-Msg-Id` = the `event_id` (a
   retransmission is then dropped by the server), three events dated now: a baseline reading
   (3 minutes ago), `infusion.started` (2 minutes ago) and a reaction (now: systolic 82 mmHg, SpO2 90 %,
   wheeze, hives);
3. prints the alert the monitor raises: R7, critical, `discontinue.hypersensitivity`.

A producer may only publish (services/runtime/permissions.py): it cannot read alerts. To show the alert,
step 3 reads the audit trail as user `operator`, like `python3 run.py alerts` does. In a deployment, paging
systems and dashboards read `im.alert.>` with users of their own. Each run uses a new patient key, so it
can be run again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy



def rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def session_events(patient: str, now: datetime) -> list[dict]:
    """A baseline reading, the start of the infusion and a severe reaction, dated around ``now``."""
    run = patient.removeprefix("pk-")
    session = f"ses-{run}"
    return [
        {"type": "vitals.recorded", "event_id": f"{run}-baseline", "occurred_at": rfc3339(now - timedelta(minutes=3)),
         "patient_id": patient, "systolic_mmhg": 124, "diastolic_mmhg": 78, "heart_rate_bpm": 72, "spo2_pct": 98},
        {"type": "infusion.started", "event_id": f"{run}-start", "occurred_at": rfc3339(now - timedelta(minutes=2)),
         "patient_id": patient, "session_id": session, "pump_id": "pump-EX1", "drug": "natalizumab", "dose_mg": 300},
        {"type": "vitals.recorded", "event_id": f"{run}-reaction", "occurred_at": rfc3339(now),
         "patient_id": patient, "session_id": session, "systolic_mmhg": 82, "heart_rate_bpm": 118, "spo2_pct": 90,
         "symptoms": ["wheeze", "urticaria"]},
    ]


def credentials(data_dir: Path, user: str) -> dict:
    """A credentials file of `up` (TOML: user, password)."""
    with open(data_dir / "credentials" / f"{user}.creds", "rb") as fh:
        return tomllib.load(fh)


async def connect(url: str, data_dir: Path, user: str):
    creds = credentials(data_dir, user)
    return await nats.connect(url, user=creds["user"], password=creds["password"], max_reconnect_attempts=3)


async def main(data_dir: Path, timeout: float) -> int:
    url_file = data_dir / "nats.url"
    if not url_file.exists():
        print(f"no running up in {data_dir} ({url_file} is missing): start one with `python3 run.py up`",
              file=sys.stderr)
        return 2
    url = url_file.read_text().strip()
    patient = f"pk-example-{secrets.token_hex(4)}"
    started = datetime.now(UTC)

    operator = await connect(url, data_dir, "operator")  # reads the audit trail (step 3)
    audit = await operator.jetstream().pull_subscribe("im.audit.>", durable=None, stream="IM_AUDIT", config=ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=rfc3339(started - timedelta(seconds=1)),
        ack_policy=AckPolicy.NONE, inactive_threshold=30.0))

    producer = await connect(url, data_dir, "producer")
    js = producer.jetstream()
    print(f"connected to {url} as producer; patient {patient}")
    for event in session_events(patient, started):
        subject = f"im.in.{event['patient_id']}.{event['type']}"
        ack = await js.publish(subject, json.dumps(event).encode(), headers={"Nats-Msg-Id": event["event_id"]})
        print(f"published {event['type']:<16} {event['occurred_at']}  stored as IM_IN #{ack.seq}")
    await producer.close()

    print("waiting for the monitor's alert ...")
    code, deadline = 1, time.monotonic() + timeout
    try:
        while code and time.monotonic() < deadline:
            try:
                msgs = await audit.fetch(50, timeout=1.0)
            except TimeoutError:
                continue
            for msg in msgs:
                record = json.loads(msg.data)
                if record.get("type") != "alert.raised" or record.get("patient_id") != patient:
                    continue
                print(f"ALERT {record['severity'].upper()} {record['rule']} {record['kind']}: {record['summary']}")
                if record.get("action"):
                    print(f"      action: {record['action']}")
                if record["severity"] == "critical":
                    code = 0
    finally:
        await audit.unsubscribe()
        await operator.close()
    if code:
        print(f"no critical alert within {timeout:.0f} s: is the monitor running? (python3 run.py status)",
              file=sys.stderr)
    return code


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="publish one infusion session to a running up and print its alert")
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("INFUSION_MONITOR_DATA_DIR") or "var"),
                        help="the data directory of the running up (default: $INFUSION_MONITOR_DATA_DIR, else "
                             "./var, as for up and the command-line verbs)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the alert (default: 60)")
    options = parser.parse_args()
    sys.exit(asyncio.run(main(options.data_dir, options.timeout)))
