"""``POST /alerts/{alert_id}/ack``: a nurse acknowledges an alert on the board. Same origin and
the CSRF token bound to the signed-in identity; publishes ``alert.acknowledged`` ``via: board``
with the signed-in name (never one from the form); audited; a second acknowledgement changes
nothing."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from infusion_monitor.schemas.outbound import AlertAcknowledged
from infusion_monitor.schemas.vocab import AckVia

from ..engine.ids import stable_id
from .site import Site, back, form, same_origin


class Acknowledge:
    def __init__(self, site: Site) -> None:
        self.site = site

    async def post(self, request: Request) -> Response:
        site = self.site
        wants_json = "application/json" in request.headers.get("accept", "")
        if (who := site.identify(request)) is None:
            return JSONResponse({"error": "sign in first"}, status_code=401)
        user, identity = who
        if not same_origin(request):
            return JSONResponse({"error": "cross-origin request refused"}, status_code=403)
        data = await form(request)
        if not site.auth.csrf_ok(identity, request.headers.get("x-csrf-token") or data.get("csrf")):
            return JSONResponse({"error": "missing or wrong CSRF token"}, status_code=403)
        if not user.can_acknowledge:
            await site.audit("acknowledge_refused", user.username, {"alert_id": request.path_params["alert_id"],
                                                                    "role": user.role})
            return JSONResponse({"error": f"the role {user.role} may not acknowledge"}, status_code=403)
        alert_id = request.path_params["alert_id"]
        found = site.hub.locate(alert_id)
        if found is None:
            return JSONResponse({"error": "unknown alert"}, status_code=404)
        patient_id, alert = found
        details = {"patient_id": patient_id, "session_id": alert.session_id, "alert_id": alert_id, "rule": alert.rule}
        if alert.acknowledged_at is not None or alert.resolved_at is not None:
            await site.audit("acknowledge_noop", user.username, details)
            result: dict[str, Any] = {"alert_id": alert_id, "already": True, "by": alert.acknowledged_by}
            return JSONResponse(result) if wants_json else RedirectResponse(back(request), status_code=303)
        note = (data.get("note") or "").strip()[:500] or None
        try:
            event = AlertAcknowledged(
                type="alert.acknowledged",
                event_id=stable_id("ev", "alert.acknowledged", alert_id, AckVia.BOARD.value, user.username),
                occurred_at=site.hub.now(), patient_id=patient_id, alert_id=alert_id, by=user.name,
                via=AckVia.BOARD, note=note,
            )
        except ValidationError:
            return JSONResponse({"error": "acknowledgement not valid"}, status_code=400)
        await site.publish(event)
        await site.audit("acknowledge", user.username, {**details, "event_id": event.event_id})
        if wants_json:
            return JSONResponse({"alert_id": alert_id, "event_id": event.event_id}, status_code=202)
        return RedirectResponse(back(request), status_code=303)
