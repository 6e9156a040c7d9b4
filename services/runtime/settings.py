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
| ``INFUSION_MONITOR_FUTURE_TOLERANCE_S`` | live, how far ahead of the wall clock an event may move a service's clock | ``300`` |
| ``INFUSION_MONITOR_MESSAGE_RETRIES`` | how often a message a service failed on is tried again before it is set aside | ``2`` |
"""

from __future__ import annotations

import os
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
            future_tolerance_s=float(env.get("INFUSION_MONITOR_FUTURE_TOLERANCE_S", "300")),
            message_retries=int(env.get("INFUSION_MONITOR_MESSAGE_RETRIES", "2")),
        )


def nats_servers(url: str) -> list[str]:
    """``NATS_URL`` may list several servers of a cluster, comma-separated."""
    return [part.strip() for part in url.split(",") if part.strip()]
