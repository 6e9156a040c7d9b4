"""Scale-out: N monitor instances, each owning the patients whose key hashes to its index.

Every instance reads the whole inbound stream through its own durable consumer, hands its own
patients' events to the engine and only moves the clock for the others. So each patient's events
are handled in order by exactly one instance, and every instance keeps the exact stream time a
single engine would have: N instances give the same outputs as one (a test checks it). The cost
is that each instance reads every message (NATS fan-out); the engine work, state and outputs are
split N ways.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Partition:
    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str | None) -> Partition:
        """``"i/N"`` (0-based index of N instances); empty: a single instance."""
        if not text:
            return cls()
        index, count = (int(part) for part in text.split("/"))
        if not 0 <= index < count:
            raise ValueError(f"partition index must be in 0..{count - 1}: {text!r}")
        return cls(index, count)

    @property
    def single(self) -> bool:
        return self.count == 1

    def owns(self, patient_key: str) -> bool:
        digest = hashlib.blake2b(patient_key.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") % self.count == self.index

    @property
    def suffix(self) -> str:
        return "" if self.single else f"-p{self.index}of{self.count}"
