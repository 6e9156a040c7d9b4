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

from dataclasses import dataclass
from pathlib import Path

from infusion_monitor.schemas.vocab import AckVia

from ..runtime.tokens import TokenFile


@dataclass(frozen=True)
class Caller:
    name: str
    principal: str
    via: AckVia


class Callers:
    def __init__(self, tokens: TokenFile) -> None:
        self.tokens = tokens
        self.callers = [self._caller(h.name, h.fields) for h in tokens.holders]

    @staticmethod
    def _caller(name: str, fields: dict) -> Caller:
        via = fields.get("via", "api")
        if via not in ("api", "board"):
            raise ValueError(f"callers.{name}.via: api or board")
        return Caller(name, str(fields.get("principal") or name)[:256], AckVia(via))

    def __bool__(self) -> bool:
        return bool(self.callers)

    def identify(self, authorization: str | None) -> Caller | None:
        holder = self.tokens.identify(authorization)
        return None if holder is None else self._caller(holder.name, holder.fields)

    @classmethod
    def parse(cls, text: str) -> Callers:
        return cls(TokenFile.parse(text, "callers"))

    @classmethod
    def load_or_create(cls, path: Path) -> Callers:
        """The callers file; created with one caller ``api`` and a new token when missing."""
        return cls(TokenFile.load_or_create(path, "callers", "api", "Callers of the pager's POST /pager/ack "
                                            "(services/pager/callers.py)", principal="api", via="api"))
