"""Gateway configuration (the secret is required) and the sender's message splitting."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from infusion_monitor.gateway.config import GatewayConfig, MissingSecret
from infusion_monitor.gateway.identity import patient_key
from infusion_monitor.gateway.sender import ack_code, split_messages


def test_the_gateway_refuses_to_start_without_a_secret():
    with pytest.raises(MissingSecret):
        GatewayConfig.load(env={})
    with pytest.raises(ValidationError):
        GatewayConfig.load(env={"INFUSION_MONITOR_PATIENT_KEY_SECRET": "short"})


def test_environment_and_overrides():
    config = GatewayConfig.load(env={"INFUSION_MONITOR_PATIENT_KEY_SECRET": "x" * 16, "INFUSION_MONITOR_MLLP_PORT": "3000",
                                     "INFUSION_MONITOR_SITE_TZ": "Europe/Berlin"}, http_port=9000)
    assert (config.mllp_port, config.http_port, config.site_timezone) == (3000, 9000, "Europe/Berlin")
    assert "x" * 16 not in repr(config)  # the secret never prints


def test_patient_key_is_keyed_and_authority_case_insensitive():
    a = patient_key(b"k" * 16, "hosp", "MRN1")
    assert a == patient_key(b"k" * 16, "HOSP", "MRN1") != patient_key(b"j" * 16, "HOSP", "MRN1")
    assert a.startswith("pk-") and "MRN1" not in a


def test_a_file_with_several_messages_and_lf_line_ends():
    data = b"MSH|^~\\&|A|B|C|D|20250301||ADT^A04|1|P|2.5\nPID|||1^^^H^MR\n\nMSH|^~\\&|A|B|C|D|20250301||ADT^A08|2|P|2.5\r\n"
    assert split_messages(data) == [b"MSH|^~\\&|A|B|C|D|20250301||ADT^A04|1|P|2.5\rPID|||1^^^H^MR\r",
                                    b"MSH|^~\\&|A|B|C|D|20250301||ADT^A08|2|P|2.5\r"]
    assert ack_code(b"MSH|^~\\&|X\rMSA|AE|1|why\r") == "AE"
