"""Settings from the environment and an optional TOML file.

| variable | meaning | default |
|---|---|---|
| ``NATS_URL`` | the NATS server; unset: an embedded server is started | unset |
| ``INFUSION_MONITOR_DATA_DIR`` | the embedded server's store and local files | ``./var`` |
| ``INFUSION_MONITOR_PROFILE`` | policy profile ``us`` or ``eu`` | ``us`` |
| ``INFUSION_MONITOR_SITE_TZ`` | the site's time zone for calendar dates | ``UTC`` |
| ``INFUSION_MONITOR_CONFIG`` | a TOML file whose ``[monitor]`` table overrides any threshold | unset |
| ``INFUSION_MONITOR_LOG_FORMAT`` | ``json`` or ``console`` (default: console on a terminal) | auto |
| ``INFUSION_MONITOR_TICK_SECONDS`` | how often the live services move their clock to the wall clock | ``1.0`` |
| ``INFUSION_MONITOR_PATIENT_KEY_PATTERN`` | the pattern every producer's ``patient_id`` must match (a regular expression, in full) | ``pk-[0-9a-z][0-9a-z_-]{0,63}`` |
| ``INFUSION_MONITOR_FUTURE_TOLERANCE_S`` | live, how far ahead of the wall clock an event may move a service's clock | ``300`` |
| ``INFUSION_MONITOR_MESSAGE_RETRIES`` | how often a message a service failed on is tried again before it is set aside | ``2`` |
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.config import MonitorConfig


@dataclass(frozen=True)
class Settings:
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    nats_url: str | None = None
    data_dir: Path = Path("var")
    log_format: str | None = None
    tick_seconds: float = 1.0
    patient_key_pattern: str | None = None  # None: schemas.base.DEFAULT_PATIENT_KEY_PATTERN
    future_tolerance_s: float = 300.0
    message_retries: int = 2

    @classmethod
    def load(cls, profile: str | None = None, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        overrides: dict[str, Any] = {}
        if path := env.get("INFUSION_MONITOR_CONFIG"):
            with open(path, "rb") as fh:
                overrides.update(tomllib.load(fh).get("monitor", {}))
        if value := env.get("INFUSION_MONITOR_PROFILE"):
            overrides["profile"] = value
        if value := env.get("INFUSION_MONITOR_SITE_TZ"):
            overrides["site_timezone"] = value
        if profile:
            overrides["profile"] = profile
        return cls(
            monitor=MonitorConfig(**overrides),
            nats_url=env.get("NATS_URL") or None,
            data_dir=Path(env.get("INFUSION_MONITOR_DATA_DIR", "var")),
            log_format=env.get("INFUSION_MONITOR_LOG_FORMAT"),
            tick_seconds=float(env.get("INFUSION_MONITOR_TICK_SECONDS", "1.0")),
            patient_key_pattern=checked_key_pattern(env.get("INFUSION_MONITOR_PATIENT_KEY_PATTERN") or None),
            future_tolerance_s=float(env.get("INFUSION_MONITOR_FUTURE_TOLERANCE_S", "300")),
            message_retries=int(env.get("INFUSION_MONITOR_MESSAGE_RETRIES", "2")),
        )


GATEWAY_KEY_EXAMPLE = "pk-0123456789abcdef0123456789abcdef"  # the gateway's keys: pk- and 32 hex digits


def checked_key_pattern(pattern: str | None) -> str | None:
    """A site's patient-key pattern: it must compile, accept the gateway's keys and refuse a bare
    record number (else nothing from the gateway would be monitored, or nothing be protected)."""
    if pattern is None:
        return None
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"INFUSION_MONITOR_PATIENT_KEY_PATTERN is not a regular expression: {exc}") from None
    if not compiled.fullmatch(GATEWAY_KEY_EXAMPLE):
        raise ValueError("INFUSION_MONITOR_PATIENT_KEY_PATTERN must accept the gateway's keys (pk- and 32 hex digits)")
    if compiled.fullmatch("12345678") or compiled.fullmatch("MRN12345"):
        raise ValueError("INFUSION_MONITOR_PATIENT_KEY_PATTERN accepts a bare record number")
    return pattern


def nats_servers(url: str) -> list[str]:
    """``NATS_URL`` may list several servers of a cluster, comma-separated."""
    return [part.strip() for part in url.split(",") if part.strip()]
