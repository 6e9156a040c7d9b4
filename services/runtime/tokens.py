"""Bearer tokens in a file only its owner may read: one table per holder, created with one
holder the first time (``DATA_DIR/...``, mode 0600). Tokens are compared as SHA-256 digests in
constant time; a holder is named in logs, never its token. Used by the pager's acknowledgement
endpoint (``services/pager/callers.py``) and the gateway's FHIR endpoint."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .private import read_private, write_private

MIN_TOKEN = 24


@dataclass(frozen=True)
class Holder:
    name: str
    digest: bytes = field(repr=False)
    fields: dict[str, Any] = field(default_factory=dict)


class TokenFile:
    def __init__(self, holders: list[Holder]) -> None:
        self.holders = holders

    def __bool__(self) -> bool:
        return bool(self.holders)

    def identify(self, authorization: str | None) -> Holder | None:
        """The holder whose token an ``Authorization: Bearer <token>`` header carries."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        digest = hashlib.sha256(authorization.removeprefix("Bearer ").strip().encode()).digest()
        found = None
        for holder in self.holders:  # every entry compared: no early exit to time
            if hmac.compare_digest(holder.digest, digest):
                found = holder
        return found

    @classmethod
    def parse(cls, text: str, table: str) -> TokenFile:
        holders = []
        for name, entry in (tomllib.loads(text).get(table) or {}).items():
            token = entry.get("token") if isinstance(entry, dict) else None
            if not isinstance(token, str) or len(token) < MIN_TOKEN:
                raise ValueError(f"{table}.{name}.token: at least {MIN_TOKEN} random characters")
            holders.append(Holder(name, hashlib.sha256(token.encode()).digest(),
                                  {k: v for k, v in entry.items() if k != "token"}))
        return cls(holders)

    @classmethod
    def load_or_create(cls, path: Path, table: str, first: str, comment: str, **fields: str) -> TokenFile:
        """The file; created with one holder ``first`` (``fields`` and a new token) when missing."""
        if not path.exists():
            lines = [f"# {comment}; mode 0600.", f"[{table}.{first}]", *(f'{k} = "{v}"' for k, v in fields.items()),
                     f'token = "{secrets.token_urlsafe(32)}"']
            write_private(path, "\n".join(lines) + "\n")
        return cls.parse(read_private(path), table)
