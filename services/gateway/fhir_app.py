"""The FHIR R4 endpoint (Starlette): ``POST /fhir`` (a resource or a Bundle), ``POST /fhir/{type}``
and ``POST /fhir/subscription`` (rest-hook notifications) all answer with an OperationOutcome:
200 stored (``information``), 400 invalid FHIR (``expression`` names the element), 401 no or a
wrong bearer token, 422 valid FHIR the gateway cannot map, 413 too large, 429 too many requests
in flight from one address, 503 storage unavailable (retry).

Who may post: a client with a bearer token from the clients file (``fhir-clients.toml``, mode
0600, created with one client at first start), or any client when the port requires client
certificates (mutual TLS: the handshake already authenticated it). ``fhir_auth = "none"`` (never
the default) accepts anyone. ``GET /healthz`` needs nothing."""

from __future__ import annotations

from collections import Counter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..runtime.tokens import TokenFile
from .handling import Gateway, outcome

MEDIA_TYPE = "application/fhir+json"


def make_app(gateway: Gateway, max_bytes: int, clients: TokenFile | None = None, max_in_flight_per_source: int = 8) -> Starlette:
    """``clients``: the bearer tokens to require (``None``: no token needed, i.e. mutual TLS or
    ``fhir_auth = "none"``)."""
    in_flight: Counter[str] = Counter()

    async def receive(request: Request) -> JSONResponse:
        if clients is not None:
            client = clients.identify(request.headers.get("authorization"))
            if client is None:
                gateway.log.warning("fhir request without a valid bearer token refused",
                                    peer=request.client.host if request.client else "-")
                return JSONResponse(outcome("error", "security", "a valid bearer token is required"), 401,
                                    media_type=MEDIA_TYPE, headers={"www-authenticate": "Bearer"})
        source = request.client.host if request.client else "-"
        if in_flight[source] >= max_in_flight_per_source:
            return JSONResponse(outcome("error", "throttled", "too many requests in flight from this address"), 429,
                                media_type=MEDIA_TYPE, headers={"retry-after": "1"})
        in_flight[source] += 1
        try:
            return await _handle(request)
        finally:
            in_flight[source] -= 1
            if in_flight[source] <= 0:
                del in_flight[source]

    async def _handle(request: Request) -> JSONResponse:
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
