"""The acknowledgement endpoint's lifecycle inside the bridge: a failure of the endpoint never
stops paging.

The endpoint is started after the consumers and the clock. When it cannot listen (its port is
taken, its address not this host's, its certificate unreadable), the bridge keeps running: an
operator alert ``system.ack_endpoint_down`` goes to the operator destinations and the endpoint
is tried again every ``retry_s``; once it listens, the alert is resolved. Acknowledgements still
come through the board, the pagers and the alarm managers meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from infusion_monitor.schemas.outbound import OperatorCondition
from infusion_monitor.schemas.vocab import AlertKind

from ..runtime.listening import PAGER_ACK, announce
from ..runtime.shells import CannotListen, start_http, stop_http
from ..runtime.tls import ServerTls
from .reports import operator_condition

RETRY_S = 30.0


def endpoint_condition(bind: str, active: bool, reason: str, at: datetime) -> OperatorCondition:
    summary = (f"The pager's acknowledgement endpoint cannot listen on {bind}: acknowledge on the board or "
               "the pager" if active else f"The pager's acknowledgement endpoint listens on {bind} again")
    return operator_condition(AlertKind.SYSTEM_ACK_ENDPOINT_DOWN, bind, active, summary,
                              "Free the port or change INFUSION_MONITOR_PAGER_ACK_BIND; paging goes on",
                              {"bind": bind, "reason": reason}, at)


class AckEndpoint:
    def __init__(self, app: Any, bind: str, observe: Callable[[OperatorCondition], Awaitable[None]], log: Any,
                 tls: ServerTls | None = None, retry_s: float = RETRY_S) -> None:
        self.app, self.bind, self.observe, self.log, self.tls, self.retry_s = app, bind, observe, log, tls, retry_s
        self.url: str | None = None
        self.down = False
        self._server: Any = None
        self._task: asyncio.Task[Any] | None = None
        self._retry: asyncio.Task[None] | None = None

    async def start(self) -> str | None:
        """Listen, or report the endpoint down and keep trying in the background."""
        if not await self._try():
            self._retry = asyncio.create_task(self._keep_trying())
        return self.url

    async def _try(self) -> bool:
        try:
            self._server, self._task, self.url = await start_http(self.app, self.bind, "acknowledgement endpoint",
                                                                  self.tls)
        except (CannotListen, OSError, ValueError) as exc:
            if not self.down:
                self.down = True
                self.log.critical("acknowledgement endpoint cannot listen; paging goes on, retrying",
                                  bind=self.bind, error=str(exc), retry_s=self.retry_s)
                await self._report(True, type(exc).__name__)
            return False
        self.log.info("acknowledgement endpoint listening", url=self.url)
        announce(PAGER_ACK, f"{self.url}/pager/ack")
        if self.down:
            self.down = False
            await self._report(False, "")
        return True

    async def _report(self, active: bool, reason: str) -> None:
        try:
            await self.observe(endpoint_condition(self.bind, active, reason, datetime.now(UTC)))
        except Exception as exc:  # noqa: BLE001 - the bridge's own failure handling stops it if it must
            self.log.error("operator condition not recorded", kind="system.ack_endpoint_down", error=repr(exc))

    async def _keep_trying(self) -> None:
        while True:
            await asyncio.sleep(self.retry_s)
            try:
                if await self._try():
                    return
            except Exception as exc:  # noqa: BLE001 - reporting failed: try again later, never stop paging
                self.log.error("acknowledgement endpoint retry failed", error=repr(exc))

    async def stop(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._retry
        await stop_http(self._server, self._task)
