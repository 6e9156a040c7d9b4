"""``infusion-monitor hl7 send FILE... [--host --port] [--now]``: send HL7 files over MLLP and
print each ACK. A file may hold several messages (each starts with ``MSH``; ``\\n`` line ends are
fine).

``--now``: the messages of all the files, in order, are moved in time so that the first one's
MSH-7 is now and the rest keep their spacing, with fresh identities (``timeshift.py``), and each
is sent when its moved MSH-7 comes (one in the past at once): recorded messages replayed as a
live feed.

A message without an ACK (timeout, connection closed or refused) is retransmitted on a new
connection, up to ``retries`` times with a growing pause: the gateway makes a retransmission a
no-op, so retrying is always safe. Exit code: 0 every message ``AA``; 1 some ``AE``/``AR``;
2 some message never acknowledged, or a file unreadable."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import TextIO

from .mllp import END, START, MllpClient
from .timeshift import message_time, shift_to

BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)


def split_messages(data: bytes) -> list[bytes]:
    data = data.replace(START, b"").replace(END, b"\r").removeprefix(b"\xef\xbb\xbf")
    lines = [line for line in re.split(rb"\r\n|\r|\n", data) if line.strip()]
    messages: list[list[bytes]] = []
    for line in lines:
        if line.startswith(b"MSH") or not messages:
            messages.append([])
        messages[-1].append(line)
    return [b"\r".join(m) + b"\r" for m in messages]


def ack_code(ack: bytes) -> str:
    for segment in re.split(rb"\r\n|\r|\n", ack):
        if segment.startswith(b"MSA"):
            parts = segment.split(b"|")
            return parts[1].decode("ascii", "replace") if len(parts) > 1 else ""
    return ""


async def send_files(files: list[Path], host: str, port: int, timeout: float = 30.0, retries: int = 8,
                     out: TextIO = sys.stdout, err: TextIO = sys.stderr, *, now: datetime | None = None,
                     zone: tzinfo = UTC, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                     sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> int:
    """Exit code as the module says. ``now``: move the set to start then and send each message
    at its moved time (``clock``/``sleep`` make that testable); ``zone``: the zone of times
    without an offset."""
    worst = 0
    batch: list[tuple[Path, int, bytes]] = []
    for path in files:
        try:
            batch += [(path, n, m) for n, m in enumerate(split_messages(path.read_bytes()), start=1)]
        except OSError as exc:
            print(f"{path}: cannot read ({exc.strerror})", file=err)
            worst = 2
    if now is not None:
        try:
            moved, delta = shift_to([m for _, _, m in batch], now, zone)
        except ValueError as exc:
            print(f"--now: {exc}", file=err)
            return 2
        batch = [(path, n, m) for (path, n, _), m in zip(batch, moved, strict=True)]
        print(f"--now: {len(batch)} message(s) moved by {delta} so that the first is {now:%Y-%m-%d %H:%M:%S %Z}; "
              "each is sent at its moved time", file=err, flush=True)
    client = MllpClient(host, port, timeout)
    try:
        for path, n, message in batch:
            if now is not None and (due := message_time(message, zone)) is not None:
                wait = (due - clock()).total_seconds()
                if wait > 0:
                    print(f"{path} #{n}: due at {due.astimezone(UTC):%H:%M:%S} UTC, waiting {wait:.0f} s",
                          file=err, flush=True)
                    await sleep(wait)
            ack = None
            for attempt in range(retries + 1):
                try:
                    ack = await client.send(message)
                    break
                except (OSError, ConnectionError, TimeoutError) as exc:
                    await client.close()
                    if attempt == retries:
                        break
                    pause = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
                    print(f"{path} #{n}: no ACK ({type(exc).__name__}); retransmitting in {pause}s",
                          file=err, flush=True)
                    await asyncio.sleep(pause)
            if ack is None:
                print(f"{path} #{n}: no ACK after {retries + 1} attempts", file=err, flush=True)
                worst = 2
                continue
            code = ack_code(ack)
            print(f"{path} #{n}: {code or '?'}", file=out)
            print(ack.decode("utf-8", "replace").replace("\r", "\n").rstrip("\n"), file=out, flush=True)
            if code != "AA" and code not in ("CA",):
                worst = max(worst, 1)
    finally:
        await client.close()
    return worst


def run_hl7_send(files: list[Path], host: str = "127.0.0.1", port: int = 2575, now: bool = False,
                 site_tz: str | None = None) -> int:
    """The ``hl7 send`` command: returns the exit code."""
    import os
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(site_tz or os.environ.get("INFUSION_MONITOR_SITE_TZ") or "UTC")
    start = datetime.now(UTC).replace(microsecond=0) if now else None
    return asyncio.run(send_files([Path(f) for f in files], host, port, now=start, zone=zone))
