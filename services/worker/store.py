"""Engine state in a JetStream KV bucket: one key per patient plus ``meta``.

Writes use revision checks (optimistic concurrency): a second instance writing the same keys
is detected and stops instead of silently overwriting.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import NoKeysError
from nats.js.kv import KeyValue

from ..runtime.streams import open_bucket

from ..engine.bus import PatientRecord
from .names_kv import META_KEY, patient_key

LOAD_CONCURRENCY = 64


@dataclass
class StoredState:
    records: list[PatientRecord] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


class StateStore:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv
        self.revisions: dict[str, int] = {}

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str, replicas: int = 1) -> StateStore:
        return cls(await open_bucket(js, bucket, replicas))

    async def load(self) -> StoredState:
        try:
            keys = await self.kv.keys()
        except NoKeysError:
            return StoredState()
        state = StoredState()
        semaphore = asyncio.Semaphore(LOAD_CONCURRENCY)

        async def fetch(key: str) -> None:
            async with semaphore:
                entry = await self.kv.get(key)
            self.revisions[key] = entry.revision
            if key == META_KEY:
                state.meta = json.loads(entry.value)
            else:
                state.records.append(PatientRecord.from_json(entry.value))

        await asyncio.gather(*(fetch(k) for k in keys))
        state.records.sort(key=lambda r: r.patient_id)
        return state

    async def save(self, records: list[tuple[str, bytes]], meta: dict[str, Any]) -> None:
        """Patients (id, stored JSON) first, meta last (meta moves the clock; patients carry
        ``last_seq``)."""
        await asyncio.gather(*(self._put(patient_key(pid), data) for pid, data in records))
        await self._put(META_KEY, json.dumps(meta, sort_keys=True).encode())

    async def _put(self, key: str, value: bytes) -> None:
        revision = self.revisions.get(key)
        if revision is None:
            self.revisions[key] = await self.kv.create(key, value)
        else:
            self.revisions[key] = await self.kv.update(key, value, last=revision)
