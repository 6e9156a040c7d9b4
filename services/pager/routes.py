"""The paging bridge's routing configuration: destinations, routes by severity and site, tiers.

Loaded from TOML (``deploy/pager-routes.toml`` is the documented example; ``docs/paging.md``
explains every key). Durations are **event-time** spans: ``"90s"``, ``"5m"``, ``"1h"``,
``"1h30m"`` or ISO 8601 (``"PT5M"``). Secrets (PagerDuty routing keys, webhook tokens) are never
written in the file: a destination names the environment variable that holds them.

Adapters: ``pagerduty`` and ``webhook`` (HTTP POST), ``acm`` (IHE PCD ACM: PCD-04 over MLLP to
an alarm manager, PCD-05 back), ``fhir`` (a FHIR R4 ``CommunicationRequest`` per alert; only as
a route's ``fhir`` copy, never paged). Operator alerts (``system.*`` kinds) follow the
``[operator]`` table, by default to every route's failsafe.
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from infusion_monitor.schemas.vocab import Severity

from ..runtime.addresses import check_entries

_SPAN = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def _duration(value: Any) -> Any:
    """``"5m"``, ``"90s"``, ``"1h30m"``; anything else goes to pydantic (ISO 8601, seconds)."""
    if isinstance(value, str) and value and (match := _SPAN.fullmatch(value.strip())) and any(match.groups()):
        h, m, s = (int(g or 0) for g in match.groups())
        return timedelta(hours=h, minutes=m, seconds=s)
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]

# PagerDuty Events API v2 severities (critical, error, warning, info) by the contract's severity
PAGERDUTY_SEVERITY: dict[Severity, str] = {
    Severity.CRITICAL: "critical",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "info",
    Severity.INFO: "info",
}


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


_MLLP_URL = re.compile(r"^mllp://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$")


def split_host_port(text: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) -> (host, port); ``ValueError`` naming the problem."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port, got {text!r}")
    return host.strip("[]"), int(port)


class AcmSettings(_Strict):
    """IHE PCD ACM details of an ``acm`` destination (``docs/paging.md``, "IHE ACM")."""

    sending_application: Annotated[str, Field(min_length=1, max_length=180)] = "INFUSION_MONITOR"
    sending_facility: Annotated[str, Field(max_length=180)] = ""
    receiving_application: Annotated[str, Field(max_length=180)] = ""
    receiving_facility: Annotated[str, Field(max_length=180)] = ""
    assigning_authority: Annotated[str, Field(min_length=1, max_length=180)] = Field(
        default="INFUSION_MONITOR", description="PID-3.4 of the pseudonymous patient key")
    facility: Annotated[str, Field(max_length=180)] = Field(default="", description="PV1-3.4")
    status_listen: str | None = Field(
        default=None, description="host:port of the PCD-05 listener for this alarm manager (none: no status back)")
    status_peers: list[str] = Field(
        default_factory=lambda: ["127.0.0.1", "::1"], description="addresses allowed to connect to the listener")
    status_application: str | None = Field(
        default=None, description="the MSH-3.1 a PCD-05 must carry (none: any)")

    @field_validator("status_peers")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return check_entries(value, "status_peers")

    @model_validator(mode="after")
    def _listen(self) -> AcmSettings:
        if self.status_listen is not None:
            split_host_port(self.status_listen)
        return self


class Destination(_Strict):
    """Where requests go and how they are sent. ``max_attempts`` and ``give_up_after`` are its
    cap: a request not accepted within either marks the destination **down** (its triggers
    escalate at once, an operator alert is raised) while the bridge keeps retrying it."""

    adapter: Literal["pagerduty", "webhook", "acm", "fhir"]
    url: Annotated[str, Field(pattern=r"^(https?|mllp)://")]
    routing_key_env: str | None = Field(
        default=None, description="pagerduty: the environment variable holding the integration's routing key")
    headers_env: dict[str, str] = Field(
        default_factory=dict, description="extra request headers: header name -> environment variable with its value")
    timeout_s: Annotated[float, Field(gt=0, le=120)] = 5.0
    max_attempts: Annotated[int, Field(ge=1, le=1000)] = 8
    give_up_after: Duration = Field(default=timedelta(seconds=30), description="wall-clock cap of one request")
    backoff_initial_s: Annotated[float, Field(gt=0, le=60)] = 0.25
    backoff_max_s: Annotated[float, Field(gt=0, le=600)] = 15.0
    acm: AcmSettings | None = None
    include_patient_key: bool = Field(
        default=False, description="pagerduty/webhook: also send the pseudonymous patient key (opt-in)")

    @model_validator(mode="after")
    def _adapter_fits(self) -> Destination:
        mllp = self.url.startswith("mllp://")
        if (self.adapter == "acm") != mllp:
            raise ValueError("an acm destination needs url = \"mllp://host:port\"; the others need http(s)://")
        if mllp and not _MLLP_URL.match(self.url):
            raise ValueError(f"url {self.url!r}: expected mllp://host:port")
        if self.acm is not None and self.adapter != "acm":
            raise ValueError("[acm] settings belong to an acm destination")
        if self.give_up_after <= timedelta(0):
            raise ValueError("give_up_after must be positive")
        return self

    @property
    def acm_settings(self) -> AcmSettings:
        return self.acm or AcmSettings()

    def mllp_address(self) -> tuple[str, int]:
        match = _MLLP_URL.match(self.url)
        assert match is not None  # validated
        return match.group("host").strip("[]"), int(match.group("port"))

    def routing_key(self, env: dict[str, str] | None = None) -> str:
        env = os.environ if env is None else env
        return env.get(self.routing_key_env, "") if self.routing_key_env else ""

    def extra_headers(self, env: dict[str, str] | None = None) -> dict[str, str]:
        env = os.environ if env is None else env
        return {name: env[var] for name, var in self.headers_env.items() if env.get(var)}


class Tier(_Strict):
    """One tier of a route: who is paged, how often, and when the next tier takes over.

    A tier is entered at time *t* (tier 1: the alert's ``occurred_at``). Its destinations get a
    ``trigger`` at *t*; then ``repeats`` re-pages every ``repage_after`` (only those strictly before
    ``escalate_after``); at *t* + ``escalate_after`` the next tier is entered (after the last tier:
    the route's failsafe). Without ``escalate_after`` the tier is final."""

    destinations: Annotated[list[str], Field(min_length=1)]
    repage_after: Duration | None = None
    repeats: Annotated[int, Field(ge=0, le=20)] = 0
    escalate_after: Duration | None = None

    @model_validator(mode="after")
    def _spans(self) -> Tier:
        for name in ("repage_after", "escalate_after"):
            span = getattr(self, name)
            if span is not None and span <= timedelta(0):
                raise ValueError(f"{name} must be positive")
        if self.repeats and self.repage_after is None:
            raise ValueError("repeats needs repage_after")
        return self


class Route(_Strict):
    """Alerts of these severities (and, if given, these sites) follow these tiers. No tiers:
    recorded in the audit trail only."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    severities: Annotated[list[Severity], Field(min_length=1)]
    sites: list[str] = Field(default_factory=list, description="empty: any site")
    tiers: list[Tier] = Field(default_factory=list)
    failsafe: str | None = Field(default=None, description="destination for anything no tier acknowledged")
    fhir: str | None = Field(default=None, description="a fhir destination that gets every alert of the route")

    def matches(self, severity: Severity, site: str | None) -> bool:
        return severity in self.severities and (not self.sites or site in self.sites)


OPERATOR_ROUTE = "operator"
OPERATOR_KIND_PREFIX = "system."


class OperatorRoute(_Strict):
    """Where operator alerts (``system.*``: a destination down, later a silent service) go.
    ``destinations`` default: every route's failsafe. An operator alert about a destination is
    never sent to that destination."""

    destinations: list[str] | None = None
    repage_after: Duration | None = None
    repeats: Annotated[int, Field(ge=0, le=20)] = 0


class PagerRoutes(_Strict):
    source: str = Field(default="infusion-monitor", description="PagerDuty payload.source when the alert has no site")
    session_url: str | None = Field(
        default=None, description="link back to the session, e.g. https://board.example/sessions/{session_id}")
    alert_url: str | None = Field(default=None, description="link to the alert, e.g. https://board.example/alerts/{alert_id}")
    memory_hours: Annotated[int, Field(ge=1, le=24 * 90)] = 72  # a resolved alert is forgotten after this
    acknowledged_memory_days: Annotated[int, Field(ge=1, le=365)] = 30  # an acknowledged, unresolved one
    failsafe_on_unacknowledged_close: bool = Field(
        default=True, description="a paged alert still unacknowledged when its session closes goes to the failsafe")
    destinations: dict[str, Destination] = Field(default_factory=dict)
    routes: list[Route] = Field(default_factory=list)
    operator: OperatorRoute = Field(default_factory=OperatorRoute)

    @model_validator(mode="after")
    def _consistent(self) -> PagerRoutes:
        names = {OPERATOR_ROUTE}
        for route in self.routes:
            if route.name in names:
                raise ValueError(f"route {route.name!r} is defined twice" if route.name != OPERATOR_ROUTE
                                 else f"route name {OPERATOR_ROUTE!r} is reserved for operator alerts")
            names.add(route.name)
            wanted = [d for tier in route.tiers for d in tier.destinations]
            if route.failsafe:
                wanted.append(route.failsafe)
                if not route.tiers or route.tiers[-1].escalate_after is None:
                    raise ValueError(f"route {route.name!r}: a failsafe needs escalate_after on the last tier")
            for dest in wanted:
                if dest not in self.destinations:
                    raise ValueError(f"route {route.name!r}: unknown destination {dest!r}")
                if self.destinations[dest].adapter == "fhir":
                    raise ValueError(f"route {route.name!r}: fhir destination {dest!r} is not a pager (use fhir = ...)")
            if route.fhir is not None and (route.fhir not in self.destinations
                                           or self.destinations[route.fhir].adapter != "fhir"):
                raise ValueError(f"route {route.name!r}: fhir = {route.fhir!r} is not a fhir destination")
        for dest in self.operator.destinations or []:
            if dest not in self.destinations or self.destinations[dest].adapter == "fhir":
                raise ValueError(f"operator: {dest!r} is not a paging destination")
        listens = [d.acm_settings.status_listen for d in self.destinations.values()
                   if d.adapter == "acm" and d.acm_settings.status_listen and not d.acm_settings.status_listen.endswith(":0")]
        if len(listens) != len(set(listens)):
            raise ValueError("two acm destinations listen on the same status_listen address")
        for severity in Severity:  # no alert may go unrouted by accident
            if not any(severity in r.severities and not r.sites for r in self.routes):
                raise ValueError(f"no catch-all route (without sites) for severity {severity.value!r}")
        for name, dest in self.destinations.items():
            if dest.adapter == "pagerduty" and not dest.routing_key_env:
                raise ValueError(f"destination {name!r}: a pagerduty destination needs routing_key_env")
        return self

    def route_for(self, severity: Severity, site: str | None, kind: str = "") -> Route:
        """Operator alerts (``system.*``) take the operator route; others the first route that
        matches (the validator guarantees a catch-all per severity)."""
        if kind.startswith(OPERATOR_KIND_PREFIX):
            return self.operator_route()
        return next(r for r in self.routes if r.matches(severity, site))

    def route_named(self, name: str) -> Route | None:
        if name == OPERATOR_ROUTE:
            return self.operator_route()
        return next((r for r in self.routes if r.name == name), None)

    def operator_route(self) -> Route:
        """The operator route as a one-tier route (no tier: recorded only)."""
        destinations = self.operator.destinations
        if destinations is None:
            destinations = list(dict.fromkeys(r.failsafe for r in self.routes if r.failsafe))
        tiers = [Tier(destinations=destinations, repage_after=self.operator.repage_after,
                      repeats=self.operator.repeats)] if destinations else []
        return Route(name=OPERATOR_ROUTE, severities=list(Severity), tiers=tiers)


def parse_routes(text: str) -> PagerRoutes:
    return PagerRoutes.model_validate(tomllib.loads(text))


def load_routes(path: str | Path) -> PagerRoutes:
    """Read and validate a routes file (raises ``ValueError``/``ValidationError`` naming the key)."""
    return parse_routes(Path(path).read_text(encoding="utf-8"))


def record_only() -> PagerRoutes:
    """Every severity recorded, nothing paged (the default when no routes file is given)."""
    return PagerRoutes(routes=[Route(name="record-only", severities=list(Severity))])
