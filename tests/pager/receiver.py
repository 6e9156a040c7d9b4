"""A real HTTP receiver on 127.0.0.1 for the tests: records every request it answers, answers
with scripted status codes, can hold a request, and can be stopped (connections refused) and
started again on the same port."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    status: int
    method: str = "POST"
    query: str = ""


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Receiver:
    port: int = field(default_factory=free_port)
    script: list[int] = field(default_factory=list)  # status codes for the next requests, then 202
    requests: list[Received] = field(default_factory=list)  # every request answered
    hold: asyncio.Event | None = None  # when set: requests wait for this event before answering
    held: asyncio.Event = field(default_factory=asyncio.Event)  # a request is being held
    arrivals: list[str] = field(default_factory=list)  # Idempotency-Key of every request that arrived (held too)
    _server: _Server | None = None
    _task: asyncio.Task | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def accepted(self) -> list[Received]:
        return [r for r in self.requests if 200 <= r.status < 300]

    def unique(self) -> list[Received]:
        """Accepted requests, deduplicated by Idempotency-Key (what a receiver keeps)."""
        seen: dict[str, Received] = {}
        for r in self.accepted():
            seen.setdefault(r.headers["idempotency-key"], r)
        return list(seen.values())

    async def _handle(self, request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        self.arrivals.append(request.headers.get("idempotency-key", ""))
        if self.hold is not None:
            self.held.set()
            await self.hold.wait()
        status = self.script.pop(0) if self.script else 202
        self.requests.append(Received(request.url.path, dict(request.headers), body, status, request.method,
                                      request.url.query))
        return JSONResponse({"status": "success" if status < 300 else "error"}, status_code=status)

    async def start(self) -> Receiver:
        app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST", "PUT"])])
        self._server = _Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error",
                                              lifespan="off", access_log=False))
        self._task = asyncio.create_task(self._server.serve())
        for _ in range(200):  # bounded: 10 s
            if self._server.started:
                return self
            if self._task.done():
                raise RuntimeError("receiver did not start")
            await asyncio.sleep(0.05)
        raise TimeoutError("receiver did not start in time")

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 10)
        self._server = self._task = None

    async def wait_for(self, count: int, timeout: float = 20.0, unique: bool = True) -> list[Received]:
        """Until ``count`` accepted (unique) requests arrived; bounded in time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            got = self.unique() if unique else self.accepted()
            if len(got) >= count:
                return got
            if loop.time() > deadline:
                raise TimeoutError(f"{len(got)} of {count} requests arrived in time")
            await asyncio.sleep(0.02)
