"""The gateway's configuration (``docs/integrations.md``, "Configuration").

Loaded from the ``[gateway]`` table of the TOML file named by ``INFUSION_MONITOR_CONFIG`` and
from environment variables (the environment wins):

| variable | field | default |
|---|---|---|
| ``INFUSION_MONITOR_PATIENT_KEY_SECRET`` | ``patient_key_secret`` (required to start) | none |
| ``INFUSION_MONITOR_MLLP_HOST`` / ``_MLLP_PORT`` | ``mllp_host`` / ``mllp_port`` | ``127.0.0.1`` / ``2575`` |
| ``INFUSION_MONITOR_HTTP_HOST`` / ``_HTTP_PORT`` | ``http_host`` / ``http_port`` (FHIR) | ``127.0.0.1`` / ``8088`` |
| ``INFUSION_MONITOR_SITE_TZ`` | ``site_timezone`` (HL7 times without an offset) | ``UTC`` |
| ``INFUSION_MONITOR_GATEWAY_FAULT_EXIT_BEFORE_ACK`` | ``fault_exit_before_ack`` (fault drills only) | unset |
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from datetime import timedelta, tzinfo
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

SECRET_ENV = "INFUSION_MONITOR_PATIENT_KEY_SECRET"
MIN_SECRET_LENGTH = 16


class MissingSecret(ValueError):
    """The gateway refuses to start without a patient-key secret."""


class GatewayConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    mllp_host: str = "127.0.0.1"
    mllp_port: int = Field(default=2575, ge=0, le=65535)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8088, ge=0, le=65535)
    site_timezone: str = "UTC"
    patient_key_secret: SecretStr = Field(repr=False)
    #: pump id (EUI-64) -> point of care (PV1-3 as sent, e.g. ``INFUSION^CHAIR3^1``): used when a
    #: pump event carries neither a patient nor a location of its own
    pump_bindings: dict[str, str] = Field(default_factory=dict)
    #: a patient seen at a location (PV1-3) by the monitor or registration feed stays bound to it
    #: for pumps at that location this long (event time)
    location_binding_hours: float = Field(default=12.0, gt=0)
    #: a pump STOP not followed by a START of the same order within this many minutes ends it
    grace_minutes: float = Field(default=15.0, gt=0)
    #: lab results with status P (preliminary) are forwarded only when this is on
    accept_preliminary: bool = False
    #: local lab code -> LOINC, for results a lab sends without a LOINC triplet
    local_lab_codes: dict[str, str] = Field(default_factory=dict)
    #: FHIR identifier system -> HL7 assigning authority (PID-3.4), so both feeds give one key
    fhir_identifier_systems: dict[str, str] = Field(default_factory=dict)
    #: wall-clock tick of the pump grace timer (seconds)
    tick_seconds: float = Field(default=30.0, gt=0)
    max_message_bytes: int = Field(default=1_048_576, ge=1024)
    idle_timeout_s: float = Field(default=3600.0, gt=0)
    #: fault drills only: exit the process after storing this control id's events, before the ACK
    fault_exit_before_ack: str | None = None

    @field_validator("patient_key_secret")
    @classmethod
    def _secret_long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(f"the patient-key secret must have at least {MIN_SECRET_LENGTH} characters")
        return value

    @field_validator("site_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        ZoneInfo(value)
        return value

    @cached_property
    def tz(self) -> tzinfo:
        return ZoneInfo(self.site_timezone)

    @cached_property
    def grace(self) -> timedelta:
        return timedelta(minutes=self.grace_minutes)

    @cached_property
    def location_binding(self) -> timedelta:
        return timedelta(hours=self.location_binding_hours)

    @cached_property
    def secret(self) -> bytes:
        return self.patient_key_secret.get_secret_value().encode()

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> GatewayConfig:
        """TOML ``[gateway]`` table, then environment, then explicit overrides (CLI options)."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        if path := env.get("INFUSION_MONITOR_CONFIG"):
            with open(path, "rb") as fh:
                values.update(tomllib.load(fh).get("gateway", {}))
        for name, key, kind in (
            ("INFUSION_MONITOR_MLLP_HOST", "mllp_host", str), ("INFUSION_MONITOR_MLLP_PORT", "mllp_port", int),
            ("INFUSION_MONITOR_HTTP_HOST", "http_host", str), ("INFUSION_MONITOR_HTTP_PORT", "http_port", int),
            ("INFUSION_MONITOR_SITE_TZ", "site_timezone", str), (SECRET_ENV, "patient_key_secret", str),
            ("INFUSION_MONITOR_GATEWAY_FAULT_EXIT_BEFORE_ACK", "fault_exit_before_ack", str),
        ):
            if value := env.get(name):
                values[key] = kind(value)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if not values.get("patient_key_secret"):
            raise MissingSecret(f"the gateway needs a patient-key secret: set {SECRET_ENV}")
        return cls(**values)
