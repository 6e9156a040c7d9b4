"""The gateway shell: connect to NATS, load the state, then run the MLLP listener
(``mllp.py``) and the FHIR endpoint (``fhir_app.py``) in front of the message handling
(``handling.py``), with the pump timer and the heartbeats."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..runtime.access import NatsAccess, access_for
from ..runtime import listening
from ..runtime.health import Heartbeats, instance_name
from ..runtime.listening import announce
from ..runtime.logs import get_logger
from ..runtime.names import Names
from ..runtime.settings import Settings
from ..runtime.shells import start_http, stop_http
from ..runtime.tokens import TokenFile
from ..runtime.streams import ensure_gateway_streams
from .config import GatewayConfig
from .fhir_app import make_app
from .handling import SERVICE, Gateway
from .mapping.book import Book
from .mllp import MllpServer
from .store import GatewayStore, MessageLedger

LEDGER = "gateway-msgids"  # KV bucket {ns}-state-gateway-msgids: message identity -> content digest


@dataclass
class RunningGateway:
    gateway: Gateway
    mllp_port: int
    http_port: int
    failed: asyncio.Future[BaseException]


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def insecure_choices(config: GatewayConfig) -> list[str]:
    """The insecure settings in use (each one a choice someone made: none is a default)."""
    found = []
    if config.mllp_host not in LOOPBACK and config.mllp_tls is None:
        found.append("plain MLLP on a network interface")
    if config.http_host not in LOOPBACK and config.http_tls is None:
        found.append("plain HTTP on a network interface")
    if config.fhir_auth == "none":
        found.append("FHIR without authentication")
    if any(p in ("0.0.0.0/0", "::/0") for p in config.mllp_peers):
        found.append("MLLP from any address")
    return found


def fhir_clients(config: GatewayConfig, data_dir: Path) -> TokenFile | None:
    """The bearer tokens the FHIR endpoint requires; ``None`` when it needs none (client
    certificates required by TLS, or ``fhir_auth = "none"``)."""
    if config.fhir_auth == "none" or config.http_tls_client_ca:
        return None
    path = Path(config.fhir_clients_path) if config.fhir_clients_path else data_dir / "gateway" / "fhir-clients.toml"
    return TokenFile.load_or_create(path, "clients", "ehr", "FHIR clients of the gateway's POST /fhir "
                                    "(services/gateway/fhir_app.py)")


@asynccontextmanager
async def run_gateway(settings: Settings, nats_url: str | NatsAccess, gateway_config: GatewayConfig,
                      names: Names = Names()) -> AsyncIterator[RunningGateway]:
    """Connect, declare streams and the state bucket, load the state, then listen (MLLP and
    HTTP). Yields once both ports accept connections."""
    log = get_logger(SERVICE)
    config = gateway_config
    broker = access_for(nats_url).broker(SERVICE, graceful_timeout=10.0)
    failed: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
    async with broker:
        js = broker.config.connection_state.stream
        await ensure_gateway_streams(js, names)
        store = await GatewayStore.open(js, names.state_bucket(SERVICE))
        ledger = await MessageLedger.open(js, names.state_bucket(LEDGER), config.message_identity_days * 86400)
        book = Book(await store.load())
        gateway = Gateway(config, js, names, store, book, log, ledger)
        mllp = MllpServer(gateway.handle_hl7_safely, config.max_message_bytes, config.idle_timeout_s, log,
                          peers=config.mllp_peers, max_per_source=config.max_connections_per_source,
                          max_connections=config.max_connections, tls=config.mllp_tls)
        mllp_port = await mllp.start(config.mllp_host, config.mllp_port)
        clients = fhir_clients(config, settings.data_dir)
        app = make_app(gateway, config.max_message_bytes, clients, config.fhir_max_in_flight_per_source)
        server, serving, http_url = await start_http(app, f"{config.http_host}:{config.http_port}", "FHIR endpoint",
                                                     config.http_tls, limit_concurrency=config.fhir_max_in_flight,
                                                     timeout_keep_alive=5)
        http_port = int(http_url.rsplit(":", 1)[1])
        if insecure := insecure_choices(config):
            log.warning("gateway transport not secured (docs/integrations.md, 'Who may send')", insecure=insecure)

        async def ticking() -> None:
            while not failed.done():
                await asyncio.sleep(config.tick_seconds)
                try:
                    await gateway.tick(datetime.now(UTC))
                except Exception as exc:  # crash-only: stop for a clean restart
                    log.critical("timer tick failed; stopping", error=type(exc).__name__)
                    if not failed.done():
                        failed.set_result(exc)

        ticker = asyncio.create_task(ticking())

        async def status() -> dict[str, Any]:
            return {"counters": dict(gateway.counts)}

        heartbeats = Heartbeats(broker.connection, names, SERVICE, instance_name(), status, log=log)
        if names.ns == Names().ns:
            heartbeats.start()
        log.info("gateway listening", mllp_port=mllp_port, http_port=http_port, state_keys=len(book.base),
                 site_timezone=config.site_timezone)
        host = f"[{config.mllp_host}]" if ":" in config.mllp_host else config.mllp_host  # for the up that started it
        announce(listening.GATEWAY_MLLP, f"{'mllps' if config.mllp_tls else 'mllp'}://{host}:{mllp_port}")
        announce(listening.GATEWAY_FHIR, f"{http_url}/fhir")
        try:
            yield RunningGateway(gateway, mllp_port, http_port, failed)
        finally:
            await heartbeats.stop()
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await ticker
            await mllp.stop()
            await stop_http(server, serving)
            log.info("gateway stopping", **gateway.counts, connections_refused=sum(mllp.refused.values()))
