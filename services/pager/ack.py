"""The acknowledgement endpoint (Starlette; served by uvicorn inside the bridge, 127.0.0.1 by default).

- ``POST /pager/ack`` with JSON ``{"alert_id" | "dedup_key", "by", "note"?, "via"?}`` (``via``:
  ``api``, the default, or ``board``); with ``INFUSION_MONITOR_PAGER_ACK_TOKEN`` set it needs
  ``Authorization: Bearer <token>``.
- ``POST /pager/pagerduty/{destination}`` (and ``/pager/pagerduty``): a PagerDuty v3 webhook;
  ``incident.acknowledged`` becomes an acknowledgement ``via: pager`` naming the destination
  (so it is relayed to the other destinations, never back to that one; without a destination it
  is relayed to no one). With a webhook secret set, ``X-PagerDuty-Signature`` is verified.
  Other event types are accepted and ignored.
- ``GET /healthz``.

Each acknowledgement is published as ``alert.acknowledged`` on ``{ns}.alert.<patient>.alert.acknowledged``
with a deterministic ``event_id`` (the same acknowledgement twice is one event); the bridge's
consumer then handles it like one from the board. 202: published; 404: unknown alert.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from schemas.outbound import AlertAcknowledged
from schemas.vocab import AckVia

from ..engine.ids import stable_id

Locate = Callable[[str | None, str | None], tuple[str, str] | None]
Publish = Callable[[AlertAcknowledged], Awaitable[None]]
MAX_BODY = 256 * 1024


def _problem(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


def verify_pagerduty_signature(secret: str, body: bytes, header: str | None) -> bool:
    """``X-PagerDuty-Signature: v1=<hex HMAC-SHA256 of the body>[,v1=...]`` (key rotation)."""
    if not header:
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(part.strip().removeprefix("v1="), expected)
               for part in header.split(",") if part.strip().startswith("v1="))


def ack_app(locate: Locate, publish: Publish, *, token: str | None = None, pagerduty_secret: str | None = None,
            destinations: frozenset[str] = frozenset(), log: Any = None,
            now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Starlette:
    """The app; ``locate(alert_id, dedup_key)`` finds (patient_id, alert_id), ``publish`` sends."""

    async def _read(request: Request) -> bytes | None:
        body = await request.body()
        return body if len(body) <= MAX_BODY else None

    async def _acknowledge(alert_id: str | None, dedup_key: str | None, by: str, via: str, note: str | None,
                           when: datetime, id_parts: tuple[str, ...], destination: str | None = None) -> JSONResponse:
        found = locate(alert_id, dedup_key)
        if found is None:
            return _problem(404, "unknown alert")
        patient_id, alert_id = found
        fields: dict[str, Any] = {}
        if destination is not None:
            fields["destination"] = destination
        try:
            event = AlertAcknowledged(
                type="alert.acknowledged", event_id=stable_id("ev", "alert.acknowledged", alert_id, via, *id_parts),
                occurred_at=when, patient_id=patient_id, alert_id=alert_id, by=by, via=AckVia(via), note=note, **fields,
            )
        except ValidationError as exc:
            error = exc.errors(include_url=False, include_input=False)[0]
            return _problem(400, f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}")
        await publish(event)
        if log is not None:
            log.info("acknowledgement received", alert_id=alert_id, via=via, event_id=event.event_id)
        return JSONResponse({"event_id": event.event_id, "alert_id": alert_id}, status_code=202)

    async def api_ack(request: Request) -> JSONResponse:
        if token and not hmac.compare_digest(request.headers.get("authorization", ""), f"Bearer {token}"):
            return _problem(401, "missing or wrong bearer token")
        body = await _read(request)
        if body is None:
            return _problem(413, "body too large")
        try:
            data = AckRequest.model_validate_json(body)
        except ValidationError as exc:
            error = exc.errors(include_url=False, include_input=False)[0]
            return _problem(400, f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}")
        return await _acknowledge(data.alert_id, data.dedup_key, data.by, data.via, data.note, now(), (data.by,))

    async def pagerduty(request: Request) -> JSONResponse:
        destination = request.path_params.get("destination")
        if destination is not None and destination not in destinations:
            return _problem(404, "unknown destination")
        body = await _read(request)
        if body is None:
            return _problem(413, "body too large")
        if pagerduty_secret and not verify_pagerduty_signature(
                pagerduty_secret, body, request.headers.get("x-pagerduty-signature")):
            return _problem(401, "bad signature")
        try:
            hook = PagerDutyWebhook.model_validate_json(body)
        except ValidationError:
            return _problem(400, "not a PagerDuty v3 webhook")
        event = hook.event
        if event.event_type != "incident.acknowledged":
            return JSONResponse({"ignored": event.event_type}, status_code=202)
        dedup_key = event.data.get("incident_key") if isinstance(event.data, dict) else None
        if not isinstance(dedup_key, str) or not dedup_key:
            return _problem(400, "event.data.incident_key missing")
        agent = event.agent if isinstance(event.agent, dict) else {}
        by = str(agent.get("summary") or "pagerduty")[:256]
        when = event.occurred_at or now()
        return await _acknowledge(None, dedup_key, by, "pager", None, when, (event.id,), destination or None)

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(routes=[
        Route("/pager/ack", api_ack, methods=["POST"]),
        Route("/pager/pagerduty", pagerduty, methods=["POST"]),
        Route("/pager/pagerduty/{destination}", pagerduty, methods=["POST"]),
        Route("/healthz", health, methods=["GET"]),
    ])


# -- request bodies --------------------------------------------------------------------------

class AckRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    alert_id: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    dedup_key: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    by: Annotated[str, Field(min_length=1, max_length=256)]
    via: Literal["api", "board"] = "api"
    note: Annotated[str, Field(max_length=4000)] | None = None

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
