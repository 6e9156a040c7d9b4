"""MLLP framing (``0x0B`` message ``0x1C 0x0D``) over asyncio: a server for many concurrent,
long-lived sender connections, and a client that sends one message and waits for its ACK.

Bounds: a frame longer than ``max_bytes`` closes the connection (nothing is acknowledged); a
connection idle for ``idle_timeout`` seconds is closed (senders reconnect). The server takes
connections only from ``peers`` (addresses or networks), at most ``max_per_source`` at a time
from one address and ``max_connections`` in all (more are closed at once, logged and counted),
optionally over TLS (client certificates required when the TLS settings name a CA); each
connection knows its ``Peer`` (address and verified certificate names)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..runtime.addresses import address_in
from ..runtime.tls import ServerTls, peer_names
from .transport import Peer

START, END = b"\x0b", b"\x1c\x0d"
READ_CHUNK = 65536


class FrameTooLarge(Exception):
    pass


def frame(message: bytes) -> bytes:
    return START + message + END


async def read_frames(reader: asyncio.StreamReader, max_bytes: int, idle_timeout: float) -> AsyncIterator[bytes]:
    """Yield each framed message's bytes; stop at end of stream or idle timeout. Bytes outside a
    frame (line noise, keep-alive newlines) are skipped."""
    buffer = bytearray()
    while True:
        start = buffer.find(START)
        if start < 0:
            buffer.clear()
        else:
            del buffer[:start]
            end = buffer.find(END, 1)
            if end >= 0:
                message = bytes(buffer[1:end])
                del buffer[:end + len(END)]
                yield message
                continue
        if len(buffer) > max_bytes:
            raise FrameTooLarge(f"frame longer than {max_bytes} bytes")
        try:
            chunk = await asyncio.wait_for(reader.read(READ_CHUNK), idle_timeout)
        except TimeoutError:
            return
        if not chunk:
            return
        buffer.extend(chunk)


@dataclass
class Connection:
    """One sender connection: what the handler remembers per connection (warnings given once)."""

    number: int
    peer: Peer = field(default_factory=lambda: Peer("-"))
    warned: set[str] = field(default_factory=set)

    def first(self, warning: str) -> bool:
        """True the first time ``warning`` is raised on this connection."""
        if warning in self.warned:
            return False
        self.warned.add(warning)
        return True


Handler = Callable[[bytes, Connection], Awaitable[bytes | None]]
_numbers = itertools.count(1)


class MllpServer:
    """Calls ``handler(message, connection)`` for each frame of each connection, in order per
    connection; writes back what it returns, or closes the connection when it returns ``None``."""

    def __init__(self, handler: Handler, max_bytes: int, idle_timeout: float, log, *, peers: Iterable[str],
                 max_per_source: int = 8, max_connections: int = 256, tls: ServerTls | None = None,
                 name: str = "mllp") -> None:
        self.handler, self.max_bytes, self.idle_timeout, self.log = handler, max_bytes, idle_timeout, log
        self.peers, self.max_per_source, self.max_connections = tuple(peers), max_per_source, max_connections
        self.tls, self.name = tls, name
        self.server: asyncio.Server | None = None
        self.connections: set[asyncio.Task] = set()
        self.per_source: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()  # why connections were closed at once

    async def start(self, host: str, port: int) -> int:
        ssl = self.tls.context() if self.tls is not None else None
        self.server = await asyncio.start_server(self._connection, host, port, reuse_address=True, ssl=ssl)
        return self.server.sockets[0].getsockname()[1]

    def _admit(self, address: str) -> str | None:
        """Why a new connection from ``address`` is closed at once, or None."""
        if not address_in(address, self.peers):
            return "address not allowed"
        if self.per_source[address] >= self.max_per_source:
            return "too many connections from this address"
        if len(self.connections) > self.max_connections:
            return "too many connections"
        return None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        address = str((writer.get_extra_info("peername") or ("-",))[0])
        why = self._admit(address)
        if why is not None:
            self.connections.discard(task)
            self.refused[why] += 1
            self.log.warning(f"{self.name} connection refused", peer=address, reason=why,
                             refused=sum(self.refused.values()))
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return
        self.per_source[address] += 1
        peer = Peer(address, frozenset(peer_names(writer.get_extra_info("ssl_object"))))
        connection = Connection(next(_numbers), peer)
        try:
            async for message in read_frames(reader, self.max_bytes, self.idle_timeout):
                reply = await self.handler(message, connection)
                if reply is None:
                    break
                writer.write(frame(reply))
                await writer.drain()
        except FrameTooLarge:
            self.log.warning(f"{self.name} frame too large; connection closed", max_bytes=self.max_bytes)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.connections.discard(task)
            self.per_source[address] -= 1
            if self.per_source[address] <= 0:
                del self.per_source[address]
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.connections):
            task.cancel()
        for task in list(self.connections):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 5)


class MllpClient:
    """One connection; ``send`` frames a message and returns the ACK's bytes. ``ssl``: a client TLS
    context (MLLP over TLS)."""

    def __init__(self, host: str, port: int, timeout: float = 30.0, max_bytes: int = 1_048_576,
                 ssl: Any = None) -> None:
        self.host, self.port, self.timeout, self.max_bytes, self.ssl = host, port, timeout, max_bytes, ssl
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.frames: AsyncIterator[bytes] | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, ssl=self.ssl), self.timeout)
        self.frames = read_frames(self.reader, self.max_bytes, self.timeout)

    async def send(self, message: bytes) -> bytes:
        if self.writer is None:
            await self.connect()
        assert self.writer is not None and self.frames is not None
        self.writer.write(frame(message))
        await self.writer.drain()
        try:
            return await asyncio.wait_for(anext(self.frames), self.timeout)
        except StopAsyncIteration:
            raise ConnectionError("connection closed before the ACK") from None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = self.frames = None

    async def __aenter__(self) -> MllpClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
