"""Delivery of ``page.requested``: one queue per destination, each with its own retries,
backoff and cap, so no destination ever waits behind another (``docs/paging.md``, "Delivery").

- A **transport** sends one request and says what came of it (``Outcome``): HTTP for
  ``pagerduty``, ``webhook`` and ``fhir`` (2xx delivered; a connection error, a timeout, 5xx, 408,
  425, 429, 401/403/404 retried; any other 4xx refused for good), MLLP for ``acm`` (``ACK`` AA
  delivered; AE refused for good; AR, no ACK, an ACK for another message, a timeout or a broken
  connection: retried, with the same bytes and control id).
- A **worker** owns one destination's queue: one request at a time, in order; a failed attempt is
  retried with the same key after 0.25 s, 0.5 s, 1 s ... capped at ``backoff_max_s``. A request
  not taken within the destination's cap (``max_attempts`` or ``give_up_after``) marks the
  destination **down**: every request in its queue is reported ``failed`` (``destination_down``:
  their triggers escalate at once) and an operator condition is raised; the worker keeps
  retrying (never restarting anything), and the first request that goes through marks it up
  again, ends the condition and the queue drains in order.
- The **dispatcher** hands each request to its destination's worker.

Workers report through a ``Reporter`` whose calls never block (``reports.py`` publishes them):
every attempt (``page.attempted``), every state (``alert.delivery``), the destination's condition.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from infusion_monitor.schemas.outbound import PageRequested
from infusion_monitor.schemas.vocab import DeliveryState

from ..engine.config import MonitorConfig
from ..gateway.mllp import FrameTooLarge, MllpClient
from .acm import control_id, parse_ack, pcd04
from .adapters import build_request
from .core import DOWN
from .routes import Destination, PagerRoutes

RETRY_STATUS = frozenset({401, 403, 404, 408, 425, 429})
KNOWN_MAX = 50_000  # request ids a worker remembers (queued or done in this process)


@dataclass(frozen=True, slots=True)
class Outcome:
    delivered: bool
    retry: bool = False  # not delivered, and worth another attempt with the same key
    status_code: int | None = None
    error: str | None = None  # error class or ACK code, never a body


@dataclass(frozen=True, slots=True)
class Attempt:
    page: PageRequested
    number: int
    at: datetime  # wall clock
    delivered: bool
    status_code: int | None = None
    error: str | None = None


class Transport(Protocol):
    async def send(self, page: PageRequested) -> Outcome: ...
    async def close(self) -> None: ...


class Reporter(Protocol):
    def attempt(self, attempt: Attempt) -> None: ...
    def state(self, page: PageRequested, state: DeliveryState, attempts: int | None, reason: str | None) -> None: ...
    def condition(self, destination: str, active: bool, detail: dict[str, Any]) -> None: ...


def backoff(attempt: int, initial: float, cap: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
    return min(cap, initial * 2 ** min(attempt - 1, 30))


# -- transports ------------------------------------------------------------------------------

class HttpTransport:
    """``pagerduty``, ``webhook``, ``fhir``: one HTTP request per attempt."""

    def __init__(self, destination: Destination, routes: PagerRoutes, client: httpx.AsyncClient,
                 env: dict[str, str] | None = None) -> None:
        self.destination, self.routes, self.client, self.env = destination, routes, client, env

    async def send(self, page: PageRequested) -> Outcome:
        request = build_request(page, self.destination, self.routes, self.env)
        try:
            response = await self.client.request(request.method, request.url, content=request.body,
                                                 headers=request.headers,
                                                 timeout=httpx.Timeout(self.destination.timeout_s))
        except httpx.TimeoutException:
            return Outcome(False, True, error="timeout")
        except httpx.ConnectError:
            return Outcome(False, True, error="connect")
        except httpx.HTTPError as exc:
            return Outcome(False, True, error=type(exc).__name__)
        code = response.status_code
        if 200 <= code < 300:
            return Outcome(True, status_code=code)
        return Outcome(False, code >= 500 or code in RETRY_STATUS, status_code=code)

    async def close(self) -> None:
        return None


class MllpTransport:
    """``acm``: PCD-04 over one MLLP connection, waiting for its ACK. After a timeout or a
    broken connection the connection is dropped (a late ACK can never be taken for the next
    message's) and the same bytes are sent again on a new one."""

    def __init__(self, destination: Destination, routes: PagerRoutes, config: MonitorConfig) -> None:
        self.destination, self.routes, self.config = destination, routes, config
        self.host, self.port = destination.mllp_address()
        self.client: MllpClient | None = None

    async def send(self, page: PageRequested) -> Outcome:
        message = pcd04(page, self.destination.acm_settings, self.routes, self.config)
        try:
            if self.client is None:
                client = MllpClient(self.host, self.port, timeout=self.destination.timeout_s)
                await client.connect()
                self.client = client
            raw = await self.client.send(message)
        except TimeoutError:
            await self.close()
            return Outcome(False, True, error="timeout")
        except (OSError, ConnectionError, asyncio.IncompleteReadError, FrameTooLarge) as exc:
            await self.close()
            return Outcome(False, True, error="connect" if isinstance(exc, ConnectionRefusedError) else type(exc).__name__)
        ack = parse_ack(raw)
        if ack is None or ack.control_id != control_id(page):
            await self.close()
            return Outcome(False, True, error="no ack" if ack is None else "ack for another message")
        if ack.code in ("AA", "CA"):
            return Outcome(True)
        return Outcome(False, ack.code not in ("AE", "CE"), error=f"ack {ack.code or '?'}")

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            await client.close()


# -- one destination's queue -----------------------------------------------------------------

class DestinationWorker:
    def __init__(self, name: str, destination: Destination, transport: Transport, reporter: Reporter, log: Any,
                 *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.name, self.destination, self.transport, self.reporter, self.log = name, destination, transport, reporter, log
        self.sleep, self.clock, self.now = sleep, clock, now
        self.queue: deque[PageRequested] = deque()
        self.known: OrderedDict[str, None] = OrderedDict()
        self.wake = asyncio.Event()
        self.down_since: float | None = None
        self.reported_down: set[str] = set()
        self.confirmed = False  # a request went through since this worker started
        self.sent = 0
        self.attempts = 0
        self.errors = 0  # deliveries a defect stopped (each reported failed)
        self.task: asyncio.Task[None] | None = None

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def submit(self, page: PageRequested) -> bool:
        """Queue a request (False: it is queued or was handled already in this process)."""
        if page.event_id in self.known:
            return False
        self.known[page.event_id] = None
        if len(self.known) > KNOWN_MAX:
            self.known.popitem(last=False)
        self.queue.append(page)
        self.wake.set()
        if self.down:
            self._report_down(page)
        return True

    def start(self) -> asyncio.Task[None]:
        self.task = asyncio.create_task(self._run(), name=f"pager-destination-{self.name}")
        return self.task

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        await self.transport.close()

    async def _run(self) -> None:
        while True:
            while not self.queue:
                self.wake.clear()
                await self.wake.wait()
            page = self.queue[0]
            try:
                await self._deliver(page)
            except Exception as exc:  # a defect outside the transport: loud, and this queue goes on
                self.errors += 1
                self.log.critical("delivery failed unexpectedly; reported failed (its alert escalates)",
                                  destination=self.name, page_event_id=page.event_id, error=type(exc).__name__)
                with contextlib.suppress(Exception):
                    self.reporter.state(page, DeliveryState.FAILED, None, "internal")
            self.queue.popleft()
            self.reported_down.discard(page.event_id)

    async def _deliver(self, page: PageRequested) -> None:
        dest = self.destination
        started, number = self.clock(), 0
        while True:
            number += 1
            self.attempts += 1
            at = self.now()
            try:
                outcome = await self.transport.send(page)
            except Exception as exc:  # a bug in a transport must not stop this queue
                self.log.error("delivery attempt failed unexpectedly", destination=self.name, error=repr(exc))
                outcome = Outcome(False, True, error=type(exc).__name__)
            self.reporter.attempt(Attempt(page, number, at, outcome.delivered, outcome.status_code, outcome.error))
            fields = dict(destination=self.name, alert_id=page.alert_id, page_event_id=page.event_id,
                          action=page.event_action, attempt=number, status=outcome.status_code, error=outcome.error)
            if outcome.delivered:
                self.sent += 1
                self.log.info("page delivered", **fields)
                self.reporter.state(page, DeliveryState.SENT, number, None)
                self._up()
                return
            if not outcome.retry:
                self.log.error("page refused by the receiver; not retried", **fields)
                self.reporter.state(page, DeliveryState.FAILED, number,
                                    f"refused {outcome.status_code or outcome.error}")
                return
            if number == 1:
                self.reporter.state(page, DeliveryState.RETRYING, number, outcome.error or str(outcome.status_code))
            self.log.warning("page not delivered; retrying", **fields)
            if not self.down and (number >= dest.max_attempts
                                  or self.clock() - started >= dest.give_up_after.total_seconds()):
                self._mark_down(number, outcome)
            await self.sleep(backoff(number, dest.backoff_initial_s, dest.backoff_max_s))

    def _mark_down(self, attempts: int, outcome: Outcome) -> None:
        self.down_since = self.clock()
        error = outcome.error or str(outcome.status_code)
        self.log.error("destination down: its alerts escalate, retrying in the background", destination=self.name,
                       attempts=attempts, error=error, queued=len(self.queue))
        self.reporter.condition(self.name, True, {"attempts": attempts, "error": error, "queued": len(self.queue)})
        for page in list(self.queue):
            self._report_down(page)

    def _report_down(self, page: PageRequested) -> None:
        if page.event_id not in self.reported_down:
            self.reported_down.add(page.event_id)
            self.reporter.state(page, DeliveryState.FAILED, None, DOWN)

    def _up(self) -> None:
        if self.down:
            self.log.warning("destination back up", destination=self.name,
                             down_s=round(self.clock() - (self.down_since or 0.0), 1), queued=len(self.queue) - 1)
            self.down_since = None
            self.reported_down.clear()
            self.reporter.condition(self.name, False, {})
        elif not self.confirmed:
            self.reporter.condition(self.name, False, {})  # ends a condition an earlier run left open
        self.confirmed = True


class Dispatcher:
    """Every destination's worker; ``submit`` never waits."""

    def __init__(self, workers: dict[str, DestinationWorker], reporter: Reporter, log: Any) -> None:
        self.workers, self.reporter, self.log = workers, reporter, log

    def submit(self, pages: Iterable[PageRequested]) -> None:
        for page in pages:
            worker = self.workers.get(page.destination)
            if worker is None:  # removed from the configuration since the core asked
                self.log.error("page not sent: destination not configured", destination=page.destination,
                               alert_id=page.alert_id, page_event_id=page.event_id)
                self.reporter.state(page, DeliveryState.FAILED, 0, "unconfigured")
                continue
            worker.submit(page)

    def start(self) -> None:
        for worker in self.workers.values():
            worker.start()

    async def stop(self) -> None:
        await asyncio.gather(*(w.stop() for w in self.workers.values()), return_exceptions=True)

    @property
    def sent(self) -> int:
        return sum(w.sent for w in self.workers.values())


def make_transport(destination: Destination, routes: PagerRoutes, client: httpx.AsyncClient,
                   config: MonitorConfig, env: dict[str, str] | None = None) -> Transport:
    if destination.adapter == "acm":
        return MllpTransport(destination, routes, config)
    return HttpTransport(destination, routes, client, env)


def make_dispatcher(routes: PagerRoutes, client: httpx.AsyncClient, config: MonitorConfig, reporter: Reporter,
                    log: Any, env: dict[str, str] | None = None, **worker_options: Any) -> Dispatcher:
    workers = {name: DestinationWorker(name, dest, make_transport(dest, routes, client, config, env), reporter, log,
                                       **worker_options)
               for name, dest in routes.destinations.items()}
    return Dispatcher(workers, reporter, log)
