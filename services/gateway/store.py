"""The gateway's state (pump orders, pump clocks, locations) in a JetStream KV bucket, one key
per document, written with revision checks: a second gateway writing the same keys is detected
(the write fails and the gateway stops for a clean restart) instead of silently overwriting."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, NoKeysError
from nats.js.kv import KeyValue

from ..runtime.streams import Bucket, open_bucket

LOAD_CONCURRENCY = 32


class GatewayStore:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv
        self.revisions: dict[str, int] = {}

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str, replicas: int = 1) -> GatewayStore:
        return cls(await open_bucket(js, bucket, replicas))

    async def load(self) -> dict[str, dict[str, Any]]:
        try:
            keys = await self.kv.keys()
        except NoKeysError:
            return {}
        docs: dict[str, dict[str, Any]] = {}
        semaphore = asyncio.Semaphore(LOAD_CONCURRENCY)

        async def fetch(key: str) -> None:
            async with semaphore:
                try:
                    entry = await self.kv.get(key)
                except KeyNotFoundError:
                    return
            self.revisions[key] = entry.revision
            docs[key] = json.loads(entry.value)

        await asyncio.gather(*(fetch(k) for k in keys))
        return docs

    async def save(self, changes: dict[str, dict[str, Any] | None]) -> None:
        await asyncio.gather(*(self._write(key, doc) for key, doc in changes.items()))

    async def _write(self, key: str, doc: dict[str, Any] | None) -> None:
        revision = self.revisions.get(key)
        if doc is None:
            if revision is not None:
                await self.kv.delete(key, last=revision)
                self.revisions.pop(key, None)
            return
        data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        if revision is None:
            self.revisions[key] = await self.kv.create(key, data)
        else:
            self.revisions[key] = await self.kv.update(key, data, last=revision)


class MessageLedger:
    """Message identities (hash of MSH-3, MSH-4, MSH-10) -> the content digest of the message
    whose events were stored under it, in their own KV bucket whose entries expire after
    ``message_identity_days``. Looked up per message (never loaded whole): a repeat with the
    same digest is a retransmission, one with another digest a conflicting control id."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str, ttl_s: float, replicas: int = 1) -> MessageLedger:
        return cls(await open_bucket(js, Bucket(bucket, ttl_s), replicas))

    async def digest(self, identity: str) -> str | None:
        try:
            entry = await self.kv.get(identity)
        except KeyNotFoundError:
            return None
        return entry.value.decode() if entry.value else None

    async def record(self, identity: str, digest: str) -> None:
        await self.kv.put(identity, digest.encode())
