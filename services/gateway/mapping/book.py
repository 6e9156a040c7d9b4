"""The gateway's small state, as plain JSON documents by key, read by the pure core.

| key | document |
|---|---|
| ``order.<hash>`` | one pump order: patient key, session id, pump id, started/ended, START times, a pending STOP |
| ``pump.<hash>`` | one pump's event clock (the latest event time it reported) |
| ``loc.<hash>`` | who was last seen at a point of care (PV1-3), for pumps that send no patient |

The core never mutates the base: it records changes (a new document, or ``None`` to delete), which
the shell stores (with revision checks) after the events are published, and only then applies.
"""

from __future__ import annotations

import copy
from typing import Any

Doc = dict[str, Any]


class Book:
    def __init__(self, base: dict[str, Doc] | None = None) -> None:
        self.base: dict[str, Doc] = base if base is not None else {}
        self.changes: dict[str, Doc | None] = {}

    def get(self, key: str) -> Doc | None:
        if key in self.changes:
            found = self.changes[key]
        else:
            found = self.base.get(key)
        return copy.deepcopy(found) if found is not None else None

    def put(self, key: str, doc: Doc) -> None:
        self.changes[key] = copy.deepcopy(doc)

    def delete(self, key: str) -> None:
        if key in self.base or self.changes.get(key) is not None:
            self.changes[key] = None

    def keys(self, prefix: str) -> list[str]:
        found = {k for k in self.base if k.startswith(prefix)}
        for key, doc in self.changes.items():
            if key.startswith(prefix):
                (found.add if doc is not None else found.discard)(key)
        return sorted(found)

    def fork(self) -> Book:
        """A view for the next message: the same base, no changes."""
        return Book(self.base)

    def commit(self) -> None:
        """Apply the changes to the base (after they were stored)."""
        for key, doc in self.changes.items():
            if doc is None:
                self.base.pop(key, None)
            else:
                self.base[key] = doc
        self.changes = {}
