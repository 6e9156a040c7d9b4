"""``infusion-monitor hl7 send FILE... [--host --port]``: send HL7 files over MLLP and print each
ACK. A file may hold several messages (each starts with ``MSH``; ``\\n`` line ends are fine).

A message without an ACK (timeout, connection closed or refused) is retransmitted on a new
connection, up to ``retries`` times with a growing pause: the gateway makes a retransmission a
no-op, so retrying is always safe. Exit code: 0 every message ``AA``; 1 some ``AE``/``AR``;
2 some message never acknowledged, or a file unreadable."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import TextIO

from .mllp import END, START, MllpClient

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
                     out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    worst = 0
    client = MllpClient(host, port, timeout)
    try:
        for path in files:
            try:
                messages = split_messages(path.read_bytes())
            except OSError as exc:
                print(f"{path}: cannot read ({exc.strerror})", file=err)
                worst = 2
                continue
            for n, message in enumerate(messages, start=1):
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


def run_hl7_send(files: list[Path], host: str = "127.0.0.1", port: int = 2575) -> int:
    """The ``hl7 send`` command: returns the exit code."""
    return asyncio.run(send_files([Path(f) for f in files], host, port))
