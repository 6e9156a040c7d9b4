"""Privacy by default (issue 14): a producer's ``patient_id`` must look like a pseudonymous key.
The gateway's keys always pass; a bare record number or a name is bad input with a reason (and
the reason never repeats the value); a site may set its own pattern, within limits."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infusion_monitor.schemas import Rejection, parse_inbound
from infusion_monitor.schemas.base import DEFAULT_PATIENT_KEY_PATTERN, set_patient_key_pattern
from infusion_monitor.gateway.identity import patient_key
from infusion_monitor.runtime.settings import Settings, checked_key_pattern


def _start(patient: str) -> bytes:
    return json.dumps({"type": "infusion.started", "event_id": "e1", "occurred_at": "2025-03-03T10:00:00Z",
                       "patient_id": patient, "session_id": "s1"}).encode()


@given(secret=st.binary(min_size=16, max_size=32), authority=st.text(max_size=20), mrn=st.text(min_size=1, max_size=20))
def test_the_gateways_keys_always_pass(secret, authority, mrn):
    assert not isinstance(parse_inbound(_start(patient_key(secret, authority, mrn))), Rejection)


@pytest.mark.parametrize("raw", ["MRN10004", "10004", "HOSP|MRN10004", "Jane Doe", "DOE^JANE", "pk-Jane",
                                 "pk-", "pk-" + "a" * 65, "pk-3f9a1c ", "PK-3F9A1C", "12-34-5678"])
def test_record_numbers_and_names_are_bad_input_without_echo(raw):
    result = parse_inbound(_start(raw))
    assert isinstance(result, Rejection) and result.field == "patient_id"
    assert "pseudonymous" in result.reason and raw.strip() not in result.reason


def test_a_site_pattern_is_applied_and_checked():
    try:
        set_patient_key_pattern(r"pk-[0-9a-f]{32}|site7-[0-9]{6}")
        assert not isinstance(parse_inbound(_start("site7-004711")), Rejection)
        assert isinstance(parse_inbound(_start("pk-7f3a91")), Rejection)  # stricter than the default
    finally:
        set_patient_key_pattern(None)
    assert not isinstance(parse_inbound(_start("pk-7f3a91")), Rejection)


@pytest.mark.parametrize(("pattern", "problem"), [
    ("pk-[0-9a-f]{6}", "accept the gateway's keys"),  # the gateway's 32-digit keys would be refused
    (".*", "bare record number"),
    (r"pk-\w+|\d+", "bare record number"),
    ("pk-[", "not a regular expression"),
])
def test_a_site_pattern_that_would_drop_the_gateway_or_let_record_numbers_through_is_refused(pattern, problem):
    with pytest.raises(ValueError, match=problem):
        Settings.load(env={"INFUSION_MONITOR_PATIENT_KEY_PATTERN": pattern})
    assert checked_key_pattern(DEFAULT_PATIENT_KEY_PATTERN) == DEFAULT_PATIENT_KEY_PATTERN
