"""The FHIR R4 endpoint (Starlette): ``POST /fhir`` (a resource or a Bundle), ``POST /fhir/{type}``
and ``POST /fhir/subscription`` (rest-hook notifications) all answer with an OperationOutcome:
200 stored (``information``), 400 invalid FHIR (``expression`` names the element), 422 valid
FHIR the gateway cannot map, 413 too large, 503 storage unavailable (retry)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

if TYPE_CHECKING:
    from .app import Gateway

MEDIA_TYPE = "application/fhir+json"


def make_app(gateway: Gateway, max_bytes: int) -> Starlette:
    from .app import outcome

    async def receive(request: Request) -> JSONResponse:
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > max_bytes:
                return JSONResponse(outcome("error", "too-costly", f"body larger than {max_bytes} bytes"),
                                    413, media_type=MEDIA_TYPE)
        try:
            status, result = await gateway.handle_fhir(bytes(body))
        except Exception:
            gateway.log.error("fhir body not stored (storage unavailable)")
            return JSONResponse(outcome("error", "transient", "storage unavailable; retry"), 503,
                                media_type=MEDIA_TYPE)
        return JSONResponse(result, status, media_type=MEDIA_TYPE)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[
        Route("/fhir", receive, methods=["POST"]),
        Route("/fhir/{resource_type}", receive, methods=["POST", "PUT"]),
        Route("/healthz", health, methods=["GET"]),
    ])
