"""``infusion-monitor deadletter list|show SEQ|redrive SEQ [--file F]``: inspect and re-drive
rejected input. Redrive republishes the original bytes (or a corrected file) on the subject
they first arrived on; the monitor then handles them like any new event."""

from __future__ import annotations

import asyncio
import hashlib
import sys
from argparse import Namespace
from datetime import UTC

from nats.js.errors import NotFoundError

from ..runtime.access import NatsAccess
from ..runtime.names import Names
from ..runtime.settings import Settings
from .up import running_up


async def _run(args: Namespace, access: NatsAccess) -> int:
    names = Names()
    gateway = getattr(args, "stream", "monitor") == "gateway"
    stream = names.stream_gateway_dlq if gateway else names.stream_dlq
    nc = await access.connect_once("operator")
    js = nc.jetstream()
    try:
        if args.deadletter_command == "redrive" and gateway:
            print("gateway dead letters are raw HL7/FHIR: fix the message and send it again through the "
                  "gateway (infusion-monitor hl7 send FILE, or POST it to /fhir)", file=sys.stderr)
            return 2
        if args.deadletter_command == "list":
            info = await js.stream_info(stream)
            print(f"{'seq':>6}  {'stored (UTC)':<19}  {'kind':<8}  {'field':<22}  reason  [source]")
            first = max(1, info.state.first_seq) if info.state.messages else info.state.last_seq + 1
            for seq in range(first, info.state.last_seq + 1):
                try:
                    msg = await js.get_msg(stream, seq)
                except NotFoundError:
                    continue
                h = msg.headers or {}
                stored = msg.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if getattr(msg, "time", None) else ""
                print(f"{seq:>6}  {stored:<19}  {h.get('Im-Kind', ''):<8}  {h.get('Im-Field', '') or '-':<22}  "
                      f"{h.get('Im-Reason', '')}  [{_source(h)}]")
            return 0
        msg = await js.get_msg(stream, args.seq)
        headers = msg.headers or {}
        if args.deadletter_command == "show":
            for key in sorted(headers):
                print(f"{key}: {headers[key]}")
            print()
            print(msg.data.decode("utf-8", errors="backslashreplace"))
            return 0
        payload = msg.data
        if getattr(args, "file", None):
            payload = open(args.file, "rb").read()
        subject = headers.get("Im-Source-Subject") or names.inbound_unparsed
        ack = await js.publish(subject, payload, headers={"Nats-Msg-Id": f"redrive:{args.seq}:{hashlib.sha256(payload).hexdigest()[:16]}"})
        print(f"re-driven dead letter {args.seq} to {subject} (inbound seq {ack.seq}{', duplicate' if ack.duplicate else ''})")
        return 0
    finally:
        await nc.close()


def _source(headers: dict[str, str]) -> str:
    if "Im-Control-Id" in headers:  # the gateway's: sender and message control id
        return f"{headers.get('Im-Sender', '')} {headers.get('Im-Control-Id', '')}".strip()
    return f"{headers.get('Im-Source-Subject', '')}#{headers.get('Im-Source-Seq', '')}"


def run_deadletter(args: Namespace, settings: Settings) -> int:
    url = running_up("deadletter", args, settings, "operator")
    if not url:
        return 2
    try:
        return asyncio.run(_run(args, url))
    except NotFoundError:
        print(f"infusion-monitor deadletter: no dead letter {getattr(args, 'seq', '')}", file=sys.stderr)
        return 1
