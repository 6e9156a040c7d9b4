"""Who may call the acknowledgement endpoint: one bearer token per caller, in a file only the
bridge's owner may read (``DATA_DIR/pager/ack-callers.toml``, mode 0600), created with one
caller (``api``) the first time the bridge starts.

    [callers.nurse-call]              # the caller's name (logged, never the token)
    principal = "nurse-call-system"   # recorded as `by` of its acknowledgements
    via = "api"                       # `api` (default) or `board`
    token = "<random, 43 characters>" # Authorization: Bearer <token>

Add a caller by adding a table with a long random token (``python -c 'import secrets;
print(secrets.token_urlsafe(32))'``) and restart the bridge; remove one to revoke it. A file
with no caller turns ``POST /pager/ack`` off.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path

from schemas.vocab import AckVia

from ..runtime.private import read_private, write_private

MIN_TOKEN = 24


@dataclass(frozen=True)
class Caller:
    name: str
    principal: str
    via: AckVia
    digest: bytes  # SHA-256 of the token (compared in constant time)


class Callers:
    def __init__(self, callers: list[Caller]) -> None:
        self.callers = callers

    def __bool__(self) -> bool:
        return bool(self.callers)

    def identify(self, authorization: str | None) -> Caller | None:
        """The caller whose token the ``Authorization: Bearer`` header carries."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        digest = hashlib.sha256(authorization.removeprefix("Bearer ").strip().encode()).digest()
        found = None
        for caller in self.callers:  # every entry compared: no early exit to time
            if hmac.compare_digest(caller.digest, digest):
                found = caller
        return found

    @classmethod
    def parse(cls, text: str) -> Callers:
        data = tomllib.loads(text)
        out = []
        for name, entry in (data.get("callers") or {}).items():
            token = entry.get("token") if isinstance(entry, dict) else None
            if not isinstance(token, str) or len(token) < MIN_TOKEN:
                raise ValueError(f"callers.{name}.token: at least {MIN_TOKEN} random characters")
            via = entry.get("via", "api")
            if via not in ("api", "board"):
                raise ValueError(f"callers.{name}.via: api or board")
            out.append(Caller(name, str(entry.get("principal") or name)[:256], AckVia(via),
                              hashlib.sha256(token.encode()).digest()))
        return cls(out)

    @classmethod
    def load_or_create(cls, path: Path) -> Callers:
        """The callers file; created with one caller ``api`` and a new token when missing."""
        if not path.exists():
            write_private(path, "# Callers of the pager's POST /pager/ack (services/pager/callers.py); mode 0600.\n"
                                "[callers.api]\nprincipal = \"api\"\nvia = \"api\"\n"
                                f"token = \"{secrets.token_urlsafe(32)}\"\n")
        return cls.parse(read_private(path))
