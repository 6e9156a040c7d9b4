"""The gateway's configuration (``docs/integrations.md``, "Configuration").

Loaded from the ``[gateway]`` table of the TOML file named by ``INFUSION_MONITOR_CONFIG`` and
from environment variables (the environment wins):

| variable | field | default |
|---|---|---|
| ``INFUSION_MONITOR_PATIENT_KEY_SECRET`` | ``patient_key_secret`` (required to start) | none |
| ``INFUSION_MONITOR_MLLP_HOST`` / ``_MLLP_PORT`` | ``mllp_host`` / ``mllp_port`` | ``127.0.0.1`` / ``2575`` |
| ``INFUSION_MONITOR_HTTP_HOST`` / ``_HTTP_PORT`` | ``http_host`` / ``http_port`` (FHIR) | ``127.0.0.1`` / ``8088`` |
| ``INFUSION_MONITOR_SITE_TZ`` | ``site_timezone`` (HL7 times without an offset) | ``UTC`` |
| ``INFUSION_MONITOR_MLLP_TLS_CERT`` / ``_KEY`` / ``_CLIENT_CA`` | ``mllp_tls_cert`` / ``mllp_tls_key`` / ``mllp_tls_client_ca`` | unset (plain MLLP) |
| ``INFUSION_MONITOR_FHIR_TLS_CERT`` / ``_KEY`` / ``_CLIENT_CA`` | ``http_tls_cert`` / ``http_tls_key`` / ``http_tls_client_ca`` | unset (plain HTTP) |
| ``INFUSION_MONITOR_FHIR_CLIENTS`` | ``fhir_clients_path`` (bearer tokens of FHIR clients) | ``DATA_DIR/gateway/fhir-clients.toml`` |
| ``INFUSION_MONITOR_GATEWAY_FAULT_EXIT_BEFORE_ACK`` | ``fault_exit_before_ack`` (fault drills only) | unset |

Transport security (``docs/integrations.md``, "Who may send"): MLLP connections only from
``mllp_peers`` (default loopback), at most ``max_connections_per_source`` per address, closed
after ``idle_timeout_s``; optional TLS with client certificates; per sender ``peers`` and
``client_names``; ``require_known_sender``. FHIR needs a bearer token (or a client certificate
with ``http_tls_client_ca``); ``fhir_auth = "none"`` turns that off (insecure, never default).

Per-sender settings (``[[gateway.senders]]``, matched on MSH-3 and MSH-4) live in the TOML file only;
``SenderProfile`` is what one message's sender resolves to (``GatewayConfig.profile``).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from datetime import timedelta, tzinfo
from functools import cached_property
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from ..runtime.addresses import check_entries
from ..runtime.limits import GATEWAY_MESSAGE_MAX
from ..runtime.tls import ServerTls

SECRET_ENV = "INFUSION_MONITOR_PATIENT_KEY_SECRET"
MIN_SECRET_LENGTH = 16


class MissingSecret(ValueError):
    """The gateway refuses to start without a patient-key secret."""


#: PID-3.5 identifier types accepted as the patient's record number when nothing is configured
DEFAULT_IDENTIFIER_TYPES = ("MR",)
ANY_AUTHORITY = "*"
Feed = Literal["vitals", "pump", "lab", "adt"]


def known_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc
    return name


def _upper_keys(table: dict[str, Any]) -> dict[str, Any]:
    return {k.strip().upper(): v for k, v in table.items()}


def _types(table: dict[str, list[str]]) -> dict[str, tuple[str, ...]]:
    return {k.strip().upper(): tuple(t.strip().upper() for t in v) for k, v in table.items()}


class SenderConfig(BaseModel):
    """One sending system's conventions (``docs/integrations.md``, "Per-sender configuration").

    A sender matches a message when ``application`` equals MSH-3 (the whole field, or any one
    of its components: the model in MSH-3.1, the device's EUI-64 in MSH-3.2, ...) and
    ``facility`` equals MSH-4 likewise, each when given (at least one is); case-insensitive.
    An entry naming both beats one naming one of them; among equals the first listed wins."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = ""  # a label for the operator (logs, ``hl7 lint``)
    application: str | None = None
    facility: str | None = None
    #: zone of this sender's timestamps without an offset (when MSH-7 has none either)
    time_zone: str | None = None
    #: assigning authority (PID-3.4) -> accepted identifier types (PID-3.5), over the site's table
    identifier_types: dict[str, list[str]] = Field(default_factory=dict)
    #: the assigning authority of a PID-3 that names none (monitors often send a bare number)
    assigning_authority: str | None = None
    #: local OBX-3 code -> MDC reference id (vitals) or LOINC (labs), over the site's ``local_lab_codes``
    local_codes: dict[str, str] = Field(default_factory=dict)
    #: local OBX-6 unit -> UCUM or MDC unit (``"rpm" = "/min"``)
    local_units: dict[str, str] = Field(default_factory=dict)
    #: treat this sender's ORU messages as this feed whatever their codes look like
    feed: Feed | None = None
    #: transport allow-lists (empty: any connection the listener accepts): its messages are taken
    #: only from these addresses or networks, and/or over TLS with a client certificate whose
    #: common name or subject alternative name is listed
    peers: list[str] = Field(default_factory=list)
    client_names: list[str] = Field(default_factory=list)

    @field_validator("peers")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return check_entries(value, "peers")

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        return None if value is None else known_zone(value)

    @model_validator(mode="after")
    def _names_the_sender(self) -> SenderConfig:
        if not (self.application or "").strip() and not (self.facility or "").strip():
            raise ValueError("a sender entry needs an application (MSH-3) or a facility (MSH-4)")
        return self

    @property
    def specificity(self) -> int:
        return bool(self.application) + bool(self.facility)

    def matches(self, application: tuple[str, ...], facility: tuple[str, ...]) -> bool:
        if self.application and self.application.strip().upper() not in application:
            return False
        return not self.facility or self.facility.strip().upper() in facility


@dataclass(frozen=True)
class SenderProfile:
    """The settings one message is mapped with: the matching sender's over the site's."""

    name: str
    tz: tzinfo
    zone_configured: bool  # the sender has its own time zone
    identifier_types: dict[str, tuple[str, ...]]  # authority (upper) -> types (upper), "*" = any
    assigning_authority: str
    local_codes: dict[str, str]  # upper-case local code -> standard code
    local_units: dict[str, str]  # upper-case local unit -> standard unit
    feed: Feed | None

    def accepted_types(self, authority: str) -> tuple[str, ...]:
        key = authority.strip().upper()
        return self.identifier_types.get(key) or self.identifier_types.get(ANY_AUTHORITY) or DEFAULT_IDENTIFIER_TYPES


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
    #: assigning authority -> PID-3.5 identifier types accepted as the patient's number ("*": any
    #: authority); the first listed type present wins. Default: ``MR`` only
    patient_identifier_types: dict[str, list[str]] = Field(default_factory=lambda: {ANY_AUTHORITY: ["MR"]})
    #: per-sender conventions, matched on MSH-3 / MSH-4
    senders: list[SenderConfig] = Field(default_factory=list)
    #: how long a message identity (MSH-3, MSH-4, MSH-10) and its content digest are remembered
    #: to tell a retransmission from a conflicting reuse of the control id
    message_identity_days: float = Field(default=30.0, gt=0)
    #: wall-clock tick of the pump grace timer (seconds)
    tick_seconds: float = Field(default=30.0, gt=0)
    # one HL7 message or FHIR body at most (kept whole in the gateway's dead letters, which must
    # stay below the server's payload limit: runtime/limits.py)
    max_message_bytes: int = Field(default=GATEWAY_MESSAGE_MAX, ge=1024, le=GATEWAY_MESSAGE_MAX)
    #: an MLLP connection idle this long is closed (senders reconnect)
    idle_timeout_s: float = Field(default=120.0, gt=0, le=3600)
    #: who may open an MLLP connection at all (addresses or networks; ``0.0.0.0/0``: anyone)
    mllp_peers: list[str] = Field(default_factory=lambda: ["127.0.0.1", "::1"])
    #: open MLLP connections per source address, and in all; more are closed at once
    max_connections_per_source: int = Field(default=8, ge=1, le=1000)
    max_connections: int = Field(default=256, ge=1, le=100_000)
    #: refuse (AR) messages from a sender no ``[[gateway.senders]]`` entry names
    require_known_sender: bool = False
    mllp_tls_cert: str | None = None
    mllp_tls_key: str | None = None
    mllp_tls_client_ca: str | None = None  # set: every MLLP client presents a certificate it signed
    http_tls_cert: str | None = None
    http_tls_key: str | None = None
    http_tls_client_ca: str | None = None
    #: FHIR clients' bearer tokens (default ``DATA_DIR/gateway/fhir-clients.toml``, created at first start)
    fhir_clients_path: str | None = None
    #: ``token`` (or a client certificate when ``http_tls_client_ca`` is set); ``none``: anyone (insecure)
    fhir_auth: Literal["token", "none"] = "token"
    #: FHIR requests in flight per source address (more get 429), and in all (uvicorn's limit)
    fhir_max_in_flight_per_source: int = Field(default=8, ge=1, le=1000)
    fhir_max_in_flight: int = Field(default=64, ge=1, le=10_000)
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
        return known_zone(value)

    @field_validator("mllp_peers")
    @classmethod
    def _peer_networks(cls, value: list[str]) -> list[str]:
        return check_entries(value, "mllp_peers")

    @cached_property
    def mllp_tls(self) -> ServerTls | None:
        return ServerTls(self.mllp_tls_cert, self.mllp_tls_key, self.mllp_tls_client_ca) \
            if self.mllp_tls_cert and self.mllp_tls_key else None

    @cached_property
    def http_tls(self) -> ServerTls | None:
        return ServerTls(self.http_tls_cert, self.http_tls_key, self.http_tls_client_ca) \
            if self.http_tls_cert and self.http_tls_key else None

    @field_validator("pump_bindings")
    @classmethod
    def _pump_ids_upper(cls, value: dict[str, str]) -> dict[str, str]:
        return _upper_keys(value)  # EUI-64s are hex: compared case-insensitively

    @cached_property
    def tz(self) -> tzinfo:
        return ZoneInfo(self.site_timezone)

    @cached_property
    def site_profile(self) -> SenderProfile:
        return SenderProfile(
            name="", tz=self.tz, zone_configured=False, identifier_types=_types(self.patient_identifier_types),
            assigning_authority="", local_codes=_upper_keys(self.local_lab_codes), local_units={}, feed=None)

    def sender(self, application: tuple[str, ...], facility: tuple[str, ...]) -> SenderConfig | None:
        """The sender entry for MSH-3 / MSH-4 (each given as the whole field and its components)."""
        app = tuple(p.strip().upper() for p in application if p.strip())
        fac = tuple(p.strip().upper() for p in facility if p.strip())
        found = [s for s in self.senders if s.matches(app, fac)]
        return max(found, key=lambda s: s.specificity, default=None)

    def profile(self, application: tuple[str, ...], facility: tuple[str, ...]) -> SenderProfile:
        site = self.site_profile
        sender = self.sender(application, facility)
        if sender is None:
            return site
        return SenderProfile(
            name=sender.name or sender.application or sender.facility or "",
            tz=ZoneInfo(sender.time_zone) if sender.time_zone else site.tz,
            zone_configured=sender.time_zone is not None,
            identifier_types={**site.identifier_types, **_types(sender.identifier_types)},
            assigning_authority=(sender.assigning_authority or "").strip(),
            local_codes={**site.local_codes, **_upper_keys(sender.local_codes)},
            local_units=_upper_keys(sender.local_units), feed=sender.feed)

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
            ("INFUSION_MONITOR_MLLP_TLS_CERT", "mllp_tls_cert", str), ("INFUSION_MONITOR_MLLP_TLS_KEY", "mllp_tls_key", str),
            ("INFUSION_MONITOR_MLLP_TLS_CLIENT_CA", "mllp_tls_client_ca", str),
            ("INFUSION_MONITOR_FHIR_TLS_CERT", "http_tls_cert", str), ("INFUSION_MONITOR_FHIR_TLS_KEY", "http_tls_key", str),
            ("INFUSION_MONITOR_FHIR_TLS_CLIENT_CA", "http_tls_client_ca", str),
            ("INFUSION_MONITOR_FHIR_CLIENTS", "fhir_clients_path", str),
        ):
            if value := env.get(name):
                values[key] = kind(value)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if not values.get("patient_key_secret"):
            raise MissingSecret(f"the gateway needs a patient-key secret: set {SECRET_ENV}")
        return cls(**values)
