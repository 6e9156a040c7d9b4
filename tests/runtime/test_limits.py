"""Message sizes (architecture.md rule 9: any one message, whatever its size, is handled or
dead-lettered): every stream's limit below the server's, and a dead letter that can never exceed
it itself."""

from __future__ import annotations

import hashlib

from infusion_monitor.runtime.limits import (
    DEAD_LETTER_BODY_MAX, DEAD_LETTER_MAX_BYTES, GATEWAY_DEAD_LETTER_MAX_BYTES, INBOUND_MAX_BYTES,
    SERVER_MAX_PAYLOAD, DeadLetter, bounded_body,
)
from infusion_monitor.runtime.names import Names
from infusion_monitor.runtime.streams import gateway_stream_configs, stream_configs


def test_every_stream_has_a_limit_below_the_servers_with_room_for_headers():
    configs = [*stream_configs(Names()), *gateway_stream_configs(Names())]
    assert all(c.max_msg_size and c.max_msg_size <= SERVER_MAX_PAYLOAD - 16 * 1024 for c in configs)
    by_name = {c.name: c.max_msg_size for c in configs}
    assert by_name["IM_IN"] == INBOUND_MAX_BYTES and by_name["IM_DLQ"] == DEAD_LETTER_MAX_BYTES
    assert by_name["IM_GW_DLQ"] == GATEWAY_DEAD_LETTER_MAX_BYTES


def test_a_dead_letter_keeps_a_bounded_body_and_says_what_the_original_was():
    original = b"x" * (DEAD_LETTER_BODY_MAX + 5000)
    body, headers = bounded_body(original)
    assert len(body) == DEAD_LETTER_BODY_MAX and headers["Im-Truncated"] == "true"
    assert headers["Im-Size"] == str(len(original)) and headers["Im-Sha256"] == hashlib.sha256(original).hexdigest()
    small, small_headers = bounded_body(b"{}")
    assert small == b"{}" and "Im-Truncated" not in small_headers


def test_dead_letter_headers_are_printable_and_bounded_whatever_the_input():
    letter = DeadLetter(b"\xff" * 10, "im.in.p.vitals.recorded", 7, "r\u00e9ason\n" * 200, "f\x00", "rejected",
                        extra=(("Im-Digest-Earlier", "ab12"),))
    body, headers = letter.body_and_headers("monitor")
    assert body == b"\xff" * 10
    assert all(all(32 <= ord(ch) < 127 for ch in value) and len(value) <= 500 for value in headers.values())
    assert headers["Nats-Msg-Id"] == "dlq:monitor:7:0" and headers["Im-Digest-Earlier"] == "ab12"
    assert len(body) + sum(len(k) + len(v) + 4 for k, v in headers.items()) < DEAD_LETTER_MAX_BYTES
