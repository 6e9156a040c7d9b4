"""HTTP delivery of ``page.requested``: timeouts, bounded retries with exponential backoff.

- 2xx: delivered.
- A connection error, a timeout, 5xx, 408, 425, 429, and 401/403/404 (a configuration problem
  a restart with a fixed configuration can cure): retried after 0.25 s, 0.5 s, 1 s ... capped at
  ``backoff_max_s``, at most ``max_attempts`` times; then ``DeliveryFailed`` (the shell stops
  without acking, a restart retries: nothing is dropped).
- Any other 4xx: the receiver refuses this request for good (retrying cannot help); recorded
  as not delivered and not retried, so one malformed request cannot block every later alert.

Requests to one destination go one at a time, in order; destinations run concurrently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from schemas.outbound import PageRequested

from .adapters import build_request
from .routes import PagerRoutes

RETRY_STATUS = frozenset({401, 403, 404, 408, 425, 429})


class DeliveryFailed(Exception):
    """A destination did not accept a request within its attempts."""

    def __init__(self, destination: str, page_event_id: str, attempts: int) -> None:
        super().__init__(f"destination {destination!r}: not delivered after {attempts} attempts")
        self.destination, self.page_event_id, self.attempts = destination, page_event_id, attempts


@dataclass(frozen=True, slots=True)
class Attempt:
    page: PageRequested
    number: int
    at: datetime  # wall clock
    delivered: bool
    status_code: int | None = None
    error: str | None = None

    @property
    def retry(self) -> bool:
        if self.delivered:
            return False
        return self.status_code is None or self.status_code >= 500 or self.status_code in RETRY_STATUS


def backoff(attempt: int, initial: float, cap: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
    return min(cap, initial * 2 ** (attempt - 1))


class Deliverer:
    def __init__(self, routes: PagerRoutes, client: httpx.AsyncClient, log: Any,
                 env: dict[str, str] | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.routes, self.client, self.log, self.env = routes, client, log, env
        self.sleep, self.now = sleep, now
        self.on_attempt: Callable[[Attempt], Awaitable[None]] | None = None  # e.g. the audit record

    async def deliver_all(self, pages: Sequence[PageRequested],
                          keepalive: Callable[[], Awaitable[None]] | None = None,
                          attempts: list[Attempt] | None = None) -> list[Attempt]:
        """Deliver every page, in order per destination; every attempt is appended to
        ``attempts`` (also when one destination fails: the others finish first, then
        ``DeliveryFailed`` is raised)."""
        by_destination: dict[str, list[PageRequested]] = {}
        for page in pages:
            by_destination.setdefault(page.destination, []).append(page)
        attempts = [] if attempts is None else attempts

        async def one_destination(queue: list[PageRequested]) -> None:
            for page in queue:
                await self.deliver(page, attempts, keepalive)

        results = await asyncio.gather(*(one_destination(q) for q in by_destination.values()),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return attempts

    async def deliver(self, page: PageRequested, attempts: list[Attempt],
                      keepalive: Callable[[], Awaitable[None]] | None = None) -> Attempt:
        destination = self.routes.destinations.get(page.destination)
        if destination is None:  # removed from the configuration since the core asked
            attempt = Attempt(page, 1, self.now(), False, error="unconfigured")
            attempts.append(attempt)
            if self.on_attempt is not None:
                await self.on_attempt(attempt)
            self.log.error("page not sent: destination not configured", destination=page.destination,
                           alert_id=page.alert_id, page_event_id=page.event_id)
            return attempt
        request = build_request(page, destination, self.routes, self.env)
        timeout = httpx.Timeout(destination.timeout_s)
        for number in range(1, destination.max_attempts + 1):
            at = self.now()
            try:
                response = await self.client.post(request.url, content=request.body, headers=request.headers,
                                                  timeout=timeout)
                ok = 200 <= response.status_code < 300
                attempt = Attempt(page, number, at, ok, status_code=response.status_code)
            except httpx.TimeoutException:
                attempt = Attempt(page, number, at, False, error="timeout")
            except httpx.ConnectError:
                attempt = Attempt(page, number, at, False, error="connect")
            except httpx.HTTPError as exc:
                attempt = Attempt(page, number, at, False, error=type(exc).__name__)
            attempts.append(attempt)
            if self.on_attempt is not None:
                await self.on_attempt(attempt)
            fields = dict(destination=page.destination, alert_id=page.alert_id, page_event_id=page.event_id,
                          action=page.event_action, attempt=number, status=attempt.status_code, error=attempt.error)
            if attempt.delivered:
                self.log.info("page delivered", **fields)
                return attempt
            if not attempt.retry:
                self.log.error("page refused by the receiver; not retried", **fields)
                return attempt
            if number == destination.max_attempts:
                break
            self.log.warning("page not delivered; retrying", **fields)
            if keepalive is not None:
                await keepalive()
            await self.sleep(backoff(number, destination.backoff_initial_s, destination.backoff_max_s))
        raise DeliveryFailed(page.destination, page.event_id, destination.max_attempts)
