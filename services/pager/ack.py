"""The acknowledgement endpoint (Starlette; served inside the bridge, 127.0.0.1 by default).

Nobody unauthenticated changes alert state (architecture rule 9):

- ``POST /pager/ack`` with JSON ``{"alert_id" | "dedup_key", "note"?}`` and ``Authorization:
  Bearer <token>``: each caller has its own token in the callers file (``callers.py``,
  generated at first start, mode 0600). ``by`` and ``via`` come from the caller's entry, never
  from the body (a body naming them is refused). Served only when the callers file has a caller.
- ``POST /pager/pagerduty/{destination}`` (and ``/pager/pagerduty``): a PagerDuty v3 webhook,
  served only when a signing secret is configured; ``X-PagerDuty-Signature`` must verify.
  ``incident.acknowledged`` becomes an acknowledgement ``via: pager`` naming the destination (so
  it is relayed to the other destinations, never back to that one), ``by`` = the agent
  PagerDuty authenticated. Other event types are accepted and ignored.
- Every POST: ``Content-Type: application/json`` only (415), no foreign ``Origin`` (403: a
  browser page cannot post here), 256 kB at most (413).
- Times in bodies are clamped to the wall clock (a time in the future, or more than a day old,
  is taken as now): no request moves the bridge's clock. An acknowledgement for an alert the
  bridge does not know changes nothing (404).
- ``GET /healthz``.

Each acknowledgement is published as ``alert.acknowledged`` on ``{ns}.alert.<patient>.alert.acknowledged``
with a deterministic ``event_id`` (the same acknowledgement twice is one event); the bridge's
consumer then handles it like one from the board. 202: published.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from infusion_monitor.schemas.outbound import AlertAcknowledged
from infusion_monitor.schemas.vocab import AckVia

from ..engine.ids import stable_id
from .callers import Caller, Callers

Locate = Callable[[str | None, str | None], tuple[str, str] | None]
Publish = Callable[[AlertAcknowledged], Awaitable[None]]
MAX_BODY = 256 * 1024
OLDEST = timedelta(days=1)  # a body time older than this is taken as now


def _problem(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


def verify_pagerduty_signature(secret: str, body: bytes, header: str | None) -> bool:
    """``X-PagerDuty-Signature: v1=<hex HMAC-SHA256 of the body>[,v1=...]`` (key rotation)."""
    if not header:
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(part.strip().removeprefix("v1="), expected)
               for part in header.split(",") if part.strip().startswith("v1="))


def clamp(when: datetime | None, now: datetime) -> datetime:
    """A time from a request body, as the bridge may use it: never after now, never long before."""
    if when is None or when > now or when < now - OLDEST:
        return now
    return when


def ack_app(locate: Locate, publish: Publish, *, callers: Callers | None = None, pagerduty_secret: str | None = None,
            destinations: frozenset[str] = frozenset(), allowed_origins: frozenset[str] = frozenset(),
            log: Any = None, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Starlette:
    """The app; ``locate(alert_id, dedup_key)`` finds (patient_id, alert_id), ``publish`` sends."""

    async def _read(request: Request) -> bytes | JSONResponse:
        """The body of an acceptable request, or the refusal."""
        origin = request.headers.get("origin")
        if origin is not None and origin not in allowed_origins:
            return _problem(403, "cross-origin request refused")
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json":
            return _problem(415, "Content-Type must be application/json")
        body = await request.body()
        return body if len(body) <= MAX_BODY else _problem(413, "body too large")

    async def _acknowledge(alert_id: str | None, dedup_key: str | None, by: str, via: AckVia, note: str | None,
                           when: datetime, id_parts: tuple[str, ...], destination: str | None = None) -> JSONResponse:
        found = locate(alert_id, dedup_key)
        if found is None:
            if log is not None:
                log.warning("acknowledgement for an unknown alert: nothing changed", via=via.value)
            return _problem(404, "unknown alert")
        patient_id, alert_id = found
        fields: dict[str, Any] = {}
        if destination is not None:
            fields["destination"] = destination
        try:
            event = AlertAcknowledged(
                type="alert.acknowledged", event_id=stable_id("ev", "alert.acknowledged", alert_id, via.value, *id_parts),
                occurred_at=when, patient_id=patient_id, alert_id=alert_id, by=by, via=via, note=note, **fields,
            )
        except ValidationError as exc:
            error = exc.errors(include_url=False, include_input=False)[0]
            return _problem(400, f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}")
        await publish(event)
        if log is not None:
            log.info("acknowledgement received", alert_id=alert_id, via=via.value, by=by, event_id=event.event_id)
        return JSONResponse({"event_id": event.event_id, "alert_id": alert_id}, status_code=202)

    async def api_ack(request: Request) -> JSONResponse:
        caller: Caller | None = callers.identify(request.headers.get("authorization")) if callers else None
        if caller is None:
            return _problem(401, "missing or wrong bearer token")
        body = await _read(request)
        if isinstance(body, JSONResponse):
            return body
        try:
            data = AckRequest.model_validate_json(body)
        except ValidationError as exc:
            error = exc.errors(include_url=False, include_input=False)[0]
            return _problem(400, f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}")
        return await _acknowledge(data.alert_id, data.dedup_key, caller.principal, caller.via, data.note, now(),
                                  (caller.principal,))

    async def pagerduty(request: Request) -> JSONResponse:
        destination = request.path_params.get("destination")
        if destination is not None and destination not in destinations:
            return _problem(404, "unknown destination")
        body = await _read(request)
        if isinstance(body, JSONResponse):
            return body
        assert pagerduty_secret is not None
        if not verify_pagerduty_signature(pagerduty_secret, body, request.headers.get("x-pagerduty-signature")):
            if log is not None:
                log.warning("PagerDuty webhook with a missing or wrong signature refused", destination=destination)
            return _problem(401, "bad signature")
        try:
            hook = PagerDutyWebhook.model_validate_json(body)
        except ValidationError:
            return _problem(400, "not a PagerDuty v3 webhook")
        event = hook.event
        if event.event_type != "incident.acknowledged":
            return JSONResponse({"ignored": event.event_type}, status_code=202)
        key = event.data.get("incident_key") if isinstance(event.data, dict) else None
        if not isinstance(key, str) or not key:
            return _problem(400, "event.data.incident_key missing")
        agent = event.agent if isinstance(event.agent, dict) else {}
        by = str(agent.get("summary") or "pagerduty")[:256]
        # the incident key is the alert id (what the bridge sends as dedup_key), or an older dedup key
        return await _acknowledge(key, key, by, AckVia.PAGER, None, clamp(event.occurred_at, now()), (event.id,),
                                  destination or None)

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    routes = [Route("/healthz", health, methods=["GET"])]
    if callers:
        routes.append(Route("/pager/ack", api_ack, methods=["POST"]))
    if pagerduty_secret:
        routes += [Route("/pager/pagerduty", pagerduty, methods=["POST"]),
                   Route("/pager/pagerduty/{destination}", pagerduty, methods=["POST"])]
    return Starlette(routes=routes)


# -- request bodies --------------------------------------------------------------------------

class AckRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    alert_id: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    dedup_key: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    note: Annotated[str, Field(max_length=4000)] | None = None
    by: None = Field(default=None, description="refused: who acknowledged is the caller's credential")
    via: None = Field(default=None, description="refused: the caller's credential says it")

    @model_validator(mode="before")
    @classmethod
    def _no_identity_in_the_body(cls, data: Any) -> Any:
        if isinstance(data, dict) and ("by" in data or "via" in data):
            raise ValueError("by and via come from the caller's credential, never from the body")
        return data

    @model_validator(mode="after")
    def _one_key(self) -> AckRequest:
        if not self.alert_id and not self.dedup_key:
            raise ValueError("alert_id or dedup_key is required")
        return self


class PagerDutyEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: Annotated[str, Field(min_length=1, max_length=256)]
    event_type: str
    occurred_at: AwareDatetime | None = None
    agent: dict[str, Any] | None = None
    data: dict[str, Any] | None = None


class PagerDutyWebhook(BaseModel):
    model_config = ConfigDict(extra="ignore")

    event: PagerDutyEvent
