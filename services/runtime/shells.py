"""Pieces every service shell repeats: opening its KV bucket, and an orderly stop of its
consuming tasks, subscriptions and HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue


async def open_bucket(js: JetStreamContext, bucket: str, replicas: int = 1) -> KeyValue:
    """The service's KV bucket (file storage, one revision kept), created on first use."""
    try:
        return await js.key_value(bucket)
    except (BucketNotFoundError, NotFoundError):
        return await js.create_key_value(KeyValueConfig(bucket=bucket, history=1, storage=StorageType.FILE,
                                                        replicas=replicas))


async def stop_consuming(tasks: Iterable[asyncio.Task[Any]], subs: Iterable[Any]) -> None:
    """Cancel the consuming tasks, wait for them, then unsubscribe (errors at shutdown ignored)."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    for sub in subs:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


async def stop_http(server: Any | None, server_task: asyncio.Task[Any] | None, timeout: float = 10) -> None:
    """Ask a uvicorn server to exit and wait for it (bounded)."""
    if server is None or server_task is None:
        return
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await asyncio.wait_for(server_task, timeout)
