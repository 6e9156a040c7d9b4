"""Message sizes (architecture.md rule 9: any one message, whatever its size, is handled or
dead-lettered, and no service stops because of it).

The server takes a message of up to ``max_payload`` (1 MiB by default), headers included. A
copy of an oversized message sent to the dead letters with its headers would exceed it, the
server would drop the connection, and the service would restart and meet it again. So every
stream has a ``max_msg_size`` set on purpose, below the server limit with room for headers, and a
dead letter carries at most ``DEAD_LETTER_BODY_MAX`` bytes of the original (its size and SHA-256
in headers).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

KIB = 1024
SERVER_MAX_PAYLOAD = 1024 * KIB  # nats-server's default max_payload
INBOUND_MAX_BYTES = 128 * KIB  # an inbound event (the largest valid one is ~20 KB); IM_IN's max_msg_size
OUTPUT_MAX_BYTES = 256 * KIB  # the product's own events (alerts, facts, audit)
DEAD_LETTER_BODY_MAX = 128 * KIB  # what a dead letter keeps of the original
DEAD_LETTER_MAX_BYTES = DEAD_LETTER_BODY_MAX + 16 * KIB  # with its headers; the DLQ streams' max_msg_size
GATEWAY_MESSAGE_MAX = 512 * KIB  # one HL7 message or FHIR body; kept whole in the gateway's dead letters
GATEWAY_DEAD_LETTER_MAX_BYTES = GATEWAY_MESSAGE_MAX + 16 * KIB
assert GATEWAY_DEAD_LETTER_MAX_BYTES < SERVER_MAX_PAYLOAD


def header_safe(text: str, limit: int = 500) -> str:
    """Printable ASCII only (header values), bounded."""
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)[:limit]


def bounded_body(raw: bytes, cap: int = DEAD_LETTER_BODY_MAX) -> tuple[bytes, dict[str, str]]:
    """The body a dead letter keeps, and headers that say what the original was."""
    headers = {"Im-Size": str(len(raw)), "Im-Sha256": hashlib.sha256(raw).hexdigest()}
    if len(raw) > cap:
        headers["Im-Truncated"] = "true"
        raw = raw[:cap]
    return raw, headers


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Input a service could not use, for ``{ns}.dlq.<service>``: the original bytes (bounded),
    where they came from and why."""

    raw: bytes
    subject: str
    seq: int
    reason: str
    field: str
    kind: str  # "rejected": the whole event; "dropped": a reading, the rest was processed; "duplicate",
    #            "unmatched" (a critical reading no session claimed), "quarantined" (a service failed on it)
    index: int = 0
    msg_id: str | None = None  # default: from the source sequence and index
    extra: tuple[tuple[str, str], ...] = ()  # more headers (e.g. both digests of a conflicting duplicate)

    def body_and_headers(self, service: str) -> tuple[bytes, dict[str, str]]:
        body, sizes = bounded_body(self.raw)
        return body, {
            "Nats-Msg-Id": self.msg_id or f"dlq:{service}:{self.seq}:{self.index}",
            "Im-Service": service,
            "Im-Kind": self.kind,
            "Im-Field": header_safe(self.field),
            "Im-Reason": header_safe(self.reason),
            "Im-Source-Subject": header_safe(self.subject),
            "Im-Source-Seq": str(self.seq),
            **sizes,
            **{key: header_safe(value) for key, value in self.extra},
        }
