"""``infusion-monitor up`` (supervisor: embedded NATS unless configured, every service as a
child process, restarted when it exits) and ``infusion-monitor service NAME`` (one service).

The embedded server has the account layout of ``deploy/nats`` (``runtime/permissions.py``):
``up`` generates one credentials file per user into ``DATA_DIR/credentials/`` (0600), runs
``provision`` as admin, and starts each service with its own file
(``INFUSION_MONITOR_NATS_CREDENTIALS``); the URL it writes to ``DATA_DIR/nats.url`` and prints
carries no credential. The command-line verbs find the operator's (or admin's) file there, by
``--data-dir``. Against a configured server, ``INFUSION_MONITOR_NATS_CREDENTIALS_DIR`` names a
directory with ``<service>.creds`` files, one per service.

The embedded server listens on 4222 (NATS's own port: what producers expect) unless it is taken
(``--nats-port``, ``INFUSION_MONITOR_NATS_PORT``); then on a free port, and ``up`` says which. Once
the services listen, ``up`` prints every address they serve (they write them to
``DATA_DIR/listening/``: ``runtime/listening.py``), where the secrets are and how to sign in to the
board (``banner.py``). Stopping and children: ``supervise.py``."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from argparse import Namespace
from pathlib import Path

from ..runtime import listening
from ..runtime.access import NatsAccess, access_for
from ..runtime.embedded import DEFAULT_PORT, EmbeddedAuth, EmbeddedNats, choose_port, free_port, port_taken
from ..runtime.logs import configure, get_logger
from ..runtime.names import Names
from ..runtime.settings import Settings
from .banner import UpBanner, render
from .supervise import ServerSupervision, StopRequest, Supervisor, child_environments

SERVICES = ("monitor", "pager", "board")  # + "gateway" when a patient-key secret is configured
CREDENTIALS_DIR_ENV = "INFUSION_MONITOR_NATS_CREDENTIALS_DIR"
NATS_PORT_ENV = "INFUSION_MONITOR_NATS_PORT"
BANNER_WAIT_S = 30.0  # how long up waits for its services to say where they listen before printing
ROOT = Path(__file__).resolve().parents[2]


def url_file(data_dir: Path) -> Path:
    return data_dir / "nats.url"


def credentials_dir(data_dir: Path) -> Path:
    return data_dir / "credentials"


def listening_dir(data_dir: Path) -> Path:
    return data_dir / "listening"


def data_dir_of(args: Namespace, settings: Settings) -> Path:
    """``--data-dir``, else ``$INFUSION_MONITOR_DATA_DIR``, else ``./var``."""
    return getattr(args, "data_dir", None) or settings.data_dir


def resolve_nats(args: Namespace, settings: Settings, role: str) -> NatsAccess | None:
    """Where and as whom ``role`` connects: --nats; else, when ``--data-dir`` is given, the
    embedded server of the ``up`` running with that data directory, with ``role``'s file in
    ``DATA_DIR/credentials/`` (an exported NATS_URL never overrides a data directory named on the
    command line); else NATS_URL, with the credentials file of ``INFUSION_MONITOR_NATS_CREDENTIALS``;
    else the ``up`` of ``$INFUSION_MONITOR_DATA_DIR``, else of ``./var``."""
    url = getattr(args, "nats", None) or (None if getattr(args, "data_dir", None) else settings.nats_url)
    if url:
        return access_for(url)
    data_dir = data_dir_of(args, settings)
    path = url_file(data_dir)
    if not path.exists():
        return None
    access = access_for(path.read_text().strip())
    if access.credentials is None:
        creds = EmbeddedAuth(credentials_dir(data_dir))
        if creds.path(role).exists():
            access = NatsAccess(access.url, creds.credentials(role), access.tls)
    return access


def running_up(command: str, args: Namespace, settings: Settings, role: str) -> NatsAccess | None:
    """``resolve_nats`` for a command-line verb; ``None`` after saying on stderr that there is no
    running ``up`` to talk to (the verb then exits 2)."""
    access = resolve_nats(args, settings, role)
    if access is None:
        data_dir = data_dir_of(args, settings)
        print(f"infusion-monitor {command}: no running up in {data_dir} ({url_file(data_dir)} is missing): start "
              "one, or give its --data-dir DIR, or a server with --nats URL (or NATS_URL)", file=sys.stderr)
    return access


def run_service(args: Namespace, settings: Settings) -> int:
    configure(settings.log_format)
    url = resolve_nats(args, settings, args.name)
    if not url:
        print("infusion-monitor service: no NATS URL (--nats or NATS_URL)", file=sys.stderr)
        return 2
    if args.name == "pager":
        import dataclasses

        from ..pager.app import PagerSettings, run_pager_service

        pager = PagerSettings.load()
        if args.routes:
            pager = dataclasses.replace(pager, routes_path=args.routes)
        return run_pager_service(url, settings, pager)
    if args.name == "board":
        from ..board.config import BoardConfig, apply_board_arguments
        from ..board.service import run_board_service

        return run_board_service(url, settings, apply_board_arguments(BoardConfig.load(data_dir=settings.data_dir), args))
    if args.name == "gateway":
        from ..gateway.cli import run_gateway_service

        for option in ("mllp_host", "mllp_port", "http_host", "http_port", "site_tz"):
            setattr(args, option, getattr(args, option, None))
        return run_gateway_service(args, settings, url)
    from ..worker.app import run_worker
    from ..worker.partition import Partition

    partition = Partition.parse(args.partition or os.environ.get("INFUSION_MONITOR_PARTITION"))
    clock = args.clock or os.environ.get("INFUSION_MONITOR_CLOCK", "wall")

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with run_worker(settings, url, clock=clock, tick_seconds=settings.tick_seconds,
                              partition=partition) as worker:
            stopped = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({stopped, worker.failed}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            return 70 if worker.failed in done else 0

    return asyncio.run(main())



def launch_embedded(data_dir: Path, instances: int, port: int = DEFAULT_PORT, names: Names = Names()) -> EmbeddedNats:
    """The embedded server with the deploy account layout (for ``names``) on ``port`` unless it is
    taken (then a free one; 0: any free one); not provisioned yet."""
    auth = EmbeddedAuth(credentials_dir(data_dir), monitor_instances=instances, names=names)
    chosen = choose_port(port)
    try:
        return EmbeddedNats(data_dir / "nats", port=chosen, auth=auth).start()
    except RuntimeError:
        if not (chosen == port and port_taken(port)):
            raise
        return EmbeddedNats(data_dir / "nats", port=free_port(), auth=auth).start()  # taken in between


async def provision_embedded(server: EmbeddedNats, instances: int, names: Names = Names()) -> list[str]:
    """Its streams and buckets, created by its admin."""
    from ..runtime.provision import ledger_days, provision

    return await provision(server.access("admin"), names, instances=instances, ledger=ledger_days())


def start_embedded(data_dir: Path, instances: int, log, port: int = DEFAULT_PORT) -> EmbeddedNats:
    """``up``'s server: launched, provisioned, its URL written to ``DATA_DIR/nats.url``."""
    server = launch_embedded(data_dir, instances, port)
    try:
        changed = asyncio.run(provision_embedded(server, instances))
    except BaseException:
        server.stop()
        raise
    url_file(data_dir).write_text(server.url + "\n")
    log.info("embedded nats-server started", url=server.url, pid=server.pid, store=str(data_dir / "nats"),
             credentials=str(credentials_dir(data_dir)), provisioned=len(changed))
    return server


def command_prefix() -> str:
    """How the reader runs a command from here: through run.py in a checkout (it changes to the
    checkout's folder), else the installed command."""
    return "python3 run.py" if (ROOT / "run.py").exists() and Path.cwd().resolve() == ROOT else "infusion-monitor"


def banner(url: str, port_note: str | None, data_dir: Path, credentials: Path | None, expected: list[str],
           gateway_off: bool, env: dict[str, str]) -> UpBanner:
    """What up prints, from what it started and what its services announced."""
    from ..board.auth import load_users
    from ..board.config import users_path

    prefix = command_prefix()
    default = Path(env.get("INFUSION_MONITOR_DATA_DIR") or "var")  # what the next command finds by itself
    option = "" if data_dir.resolve() == default.resolve() else f" --data-dir {data_dir.resolve()}"
    users = users_path(data_dir, env)
    try:
        count = len(load_users(users)) if users.exists() else 0
    except (OSError, ValueError):
        count = 0
    secrets = [("Board users (scrypt hashes)", users.resolve())]
    if listening.PAGER_ACK in expected:
        secrets.append(("Pager ack callers' tokens", Path(env.get("INFUSION_MONITOR_PAGER_ACK_CALLERS")
                                                          or data_dir / "pager" / "ack-callers.toml").resolve()))
    if listening.GATEWAY_FHIR in expected:
        secrets.append(("FHIR clients' tokens", Path(env.get("INFUSION_MONITOR_FHIR_CLIENTS")
                                                     or data_dir / "gateway" / "fhir-clients.toml").resolve()))
    example = ROOT / "examples" / "producer.py"
    producer = None
    if example.exists() and credentials is not None:
        if prefix == "python3 run.py":  # in the checkout, as the README shows it
            producer = f".venv/bin/python examples/producer.py{option}"
        else:  # from anywhere: the script's own path and this up's data directory
            producer = f"python {example} --data-dir {data_dir.resolve()}"
    option_users = f" --users {users.resolve()}" if env.get("INFUSION_MONITOR_BOARD_USERS") else ""  # from any shell
    return UpBanner(nats_url=url, command=prefix, data_dir_option=option, port_note=port_note,
                    credentials=credentials.resolve() if credentials else None, expected=tuple(expected),
                    listeners=listening.announced(listening_dir(data_dir)), board_users=users.resolve(),
                    board_user_count=count, secrets=tuple(secrets), gateway_off=gateway_off, producer_example=producer,
                    users_option=option_users)


def expected_listeners(services: list[str], env: dict[str, str]) -> list[str]:
    """The addresses up's services will announce (the ones whose bind is not off)."""
    off = ("", "off", "none")
    out = []
    if "board" in services and env.get("INFUSION_MONITOR_BOARD_BIND", "x").lower() not in off:
        out.append(listening.BOARD)
    if "pager" in services and env.get("INFUSION_MONITOR_PAGER_ACK_BIND", "x").lower() not in off:
        out.append(listening.PAGER_ACK)
    if "gateway" in services:
        out += [listening.GATEWAY_MLLP, listening.GATEWAY_FHIR]
    return out


def run_up(args: Namespace, settings: Settings) -> int:
    configure(settings.log_format)
    log = get_logger("up")
    stop = StopRequest()  # first: a Ctrl-C while the server starts stops up cleanly too
    data_dir = args.data_dir or settings.data_dir
    url = args.nats or settings.nats_url
    instances = int(os.environ.get("INFUSION_MONITOR_MONITOR_INSTANCES", "1"))
    server = supervision = None
    port_note = None
    credentials = Path(os.environ[CREDENTIALS_DIR_ENV]) if os.environ.get(CREDENTIALS_DIR_ENV) else None
    if url is None:
        wanted = args.nats_port if args.nats_port is not None else int(os.environ.get(NATS_PORT_ENV, DEFAULT_PORT))
        server = start_embedded(data_dir, instances, log, port=wanted)
        if wanted and server.port != wanted:
            port_note = f"port {wanted} was taken"
            log.warning("NATS port taken: the embedded server listens on another one", wanted=wanted, port=server.port)
        url, credentials = server.url, credentials_dir(data_dir)
        supervision = ServerSupervision(server, data_dir / "nats.pid", log)
    services = list(SERVICES)
    if instances > 1:  # scale-out: every instance reads all, owns 1/N of the patients
        at = services.index("monitor")
        services[at:at + 1] = [f"monitor#{i}/{instances}" for i in range(instances)]
    gateway_off = not os.environ.get("INFUSION_MONITOR_PATIENT_KEY_SECRET")
    if gateway_off:
        log.info("gateway not started: set INFUSION_MONITOR_PATIENT_KEY_SECRET to run it")
    else:
        services.append("gateway")
    expect = [f"{name.partition('#')[0]}/{name.partition('#')[2].split('/')[0] or '0'}"
              for name in services if not name.startswith("pager")]  # what the watchdog must hear
    announced = listening_dir(data_dir)
    listening.clear(announced)
    envs = child_environments(services, url, data_dir, credentials, listening_dir=announced)
    for env in envs.values():
        env.setdefault("INFUSION_MONITOR_WATCHDOG_EXPECT", ",".join(expect))
    expected = expected_listeners(services, dict(os.environ))
    supervisor = Supervisor(envs, log)
    exit_code = 0
    try:
        if not stop.requested:
            for name in services:
                supervisor.spawn(name)
        started, shown = time.monotonic(), False
        while not stop.requested:
            if supervision is not None and not supervision.check():
                log.critical("embedded nats-server cannot be kept running: stopping (exit 1)")
                exit_code = 1
                break
            supervisor.check()
            if not shown and (set(expected) <= set(listening.announced(announced))
                              or time.monotonic() - started > BANNER_WAIT_S):
                shown = True
                print(render(banner(url, port_note, data_dir, credentials, expected, gateway_off,
                                    dict(os.environ))), end="", flush=True)
            stop.wait(0.2)
    finally:
        supervisor.stop()
        listening.clear(announced)
        if server is not None:
            server.stop()
            url_file(data_dir).unlink(missing_ok=True)
            (data_dir / "nats.pid").unlink(missing_ok=True)
            log.info("embedded nats-server stopped")
    return exit_code
