"""``infusion-monitor up`` (supervisor: embedded NATS unless configured, every service as a
child process, restarted when it exits) and ``infusion-monitor service NAME`` (one service).

The embedded server has the account layout of ``deploy/nats`` (``runtime/permissions.py``):
``up`` generates one credentials file per user into ``DATA_DIR/credentials/`` (0600), runs
``provision`` as admin, and starts each service with its own file
(``INFUSION_MONITOR_NATS_CREDENTIALS``); the URL it writes to ``DATA_DIR/nats.url`` and prints
carries no credential. The command-line verbs find the operator's (or admin's) file there.
Against a configured server, ``INFUSION_MONITOR_NATS_CREDENTIALS_DIR`` names a directory with
``<service>.creds`` files, one per service."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path

from ..runtime.access import CREDENTIALS_ENV, NatsAccess, access_for
from ..runtime.embedded import EmbeddedAuth, EmbeddedNats
from ..runtime.logs import configure, get_logger
from ..runtime.settings import Settings

SERVICES = ("monitor", "pager", "board")  # + "gateway" when a patient-key secret is configured
RESTART_BACKOFF_S = (0.5, 1, 2, 5, 10)
SERVER_RESTARTS = 5  # the embedded server restarted this many times in a row without staying up: give up


class ServerSupervision:
    """``up`` keeps its embedded nats-server running like the services (architecture.md rule 9):
    a server that dies is started again (same port, same store) with backoff; one that cannot be
    started ``SERVER_RESTARTS`` times in a row makes ``up`` exit non-zero, so that systemd or
    Docker, which supervise ``up``, notice and act."""

    def __init__(self, server: EmbeddedNats, pid_file: Path, log) -> None:
        self.server, self.pid_file, self.log = server, pid_file, log
        self.failures = 0
        self.restarts = 0
        self.next_try = 0.0
        self.write_pid()

    def write_pid(self) -> None:
        self.pid_file.write_text(f"{self.server.pid}\n")

    def check(self) -> bool:
        """False: the server cannot be kept running."""
        if self.server.running():
            if self.failures and time.monotonic() > self.next_try + 30:
                self.failures = 0  # up for a while again
            return True
        if time.monotonic() < self.next_try:
            return True
        code = self.server.process.returncode if self.server.process else None
        self.log.critical("embedded nats-server exited; restarting it", code=code, attempt=self.failures + 1)
        try:
            self.server.start()
        except (RuntimeError, TimeoutError, OSError) as exc:
            self.failures += 1
            self.log.critical("embedded nats-server did not start", error=str(exc), attempt=self.failures)
            if self.failures >= SERVER_RESTARTS:
                return False
            self.next_try = time.monotonic() + RESTART_BACKOFF_S[min(self.failures, len(RESTART_BACKOFF_S) - 1)]
            return True
        self.restarts += 1
        self.failures += 1
        self.next_try = time.monotonic()
        self.write_pid()
        self.log.warning("embedded nats-server restarted", pid=self.server.pid, restarts=self.restarts)
        return True


CREDENTIALS_DIR_ENV = "INFUSION_MONITOR_NATS_CREDENTIALS_DIR"


def url_file(data_dir: Path) -> Path:
    return data_dir / "nats.url"


def credentials_dir(data_dir: Path) -> Path:
    return data_dir / "credentials"


def resolve_nats(args: Namespace, settings: Settings, role: str) -> NatsAccess | None:
    """Where and as whom ``role`` connects: --nats, else NATS_URL, with the credentials file of
    ``INFUSION_MONITOR_NATS_CREDENTIALS``; else the embedded server of a running ``up`` with
    ``role``'s file in ``DATA_DIR/credentials/``."""
    url = getattr(args, "nats", None) or settings.nats_url
    if url:
        return access_for(url)
    path = url_file(settings.data_dir)
    if not path.exists():
        return None
    access = access_for(path.read_text().strip())
    if access.credentials is None:
        creds = EmbeddedAuth(credentials_dir(settings.data_dir))
        if creds.path(role).exists():
            access = NatsAccess(access.url, creds.credentials(role), access.tls)
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


class Supervisor:
    """Keeps one child process per service running until told to stop."""

    def __init__(self, envs: dict[str, dict[str, str]], log) -> None:
        self.envs, self.log = envs, log
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts: dict[str, int] = {name: 0 for name in envs}

    def spawn(self, name: str) -> None:
        service, _, part = name.partition("#")  # "monitor#1/3": instance 1 of 3
        # where to connect and the credentials file go in the environment, never on a command line
        command = [sys.executable, "-m", "services.cli.main", "service", service]
        if part:
            command += ["--partition", part]
        self.children[name] = subprocess.Popen(command, env=self.envs[name])
        self.log.info("service started", name=name, pid=self.children[name].pid)

    def check(self) -> None:
        for name, child in list(self.children.items()):
            code = child.poll()
            if code is None:
                continue
            delay = RESTART_BACKOFF_S[min(self.restarts[name], len(RESTART_BACKOFF_S) - 1)]
            self.log.warning("service exited; restarting", name=name, code=code, in_s=delay)
            time.sleep(delay)
            self.restarts[name] += 1
            self.spawn(name)

    def stop(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.children.values():
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()


def child_environments(services: list[str], url: str, data_dir: Path, credentials: Path | None,
                       env: dict[str, str] | None = None) -> dict[str, dict[str, str]]:
    """Each child's environment: the server, the data directory, and its own credentials file
    (``credentials``: a directory of ``<service>.creds``; none: the inherited environment's)."""
    base = {**(os.environ if env is None else env), "NATS_URL": url, "INFUSION_MONITOR_DATA_DIR": str(data_dir)}
    envs = {}
    for name in services:
        child = dict(base)
        if credentials is not None:
            child[CREDENTIALS_ENV] = str(credentials / f"{name.partition('#')[0]}.creds")
        envs[name] = child
    return envs


def start_embedded(data_dir: Path, instances: int, log) -> EmbeddedNats:
    """The embedded server with the deploy account layout, provisioned as admin."""
    from ..runtime.provision import ledger_days, provision

    auth = EmbeddedAuth(credentials_dir(data_dir), monitor_instances=instances)
    server = EmbeddedNats(data_dir / "nats", auth=auth).start()
    try:
        changed = asyncio.run(provision(server.access("admin"), instances=instances, ledger=ledger_days()))
    except BaseException:
        server.stop()
        raise
    url_file(data_dir).write_text(server.url + "\n")
    log.info("embedded nats-server started", url=server.url, pid=server.pid, store=str(data_dir / "nats"),
             credentials=str(credentials_dir(data_dir)), provisioned=len(changed))
    return server


def run_up(args: Namespace, settings: Settings) -> int:
    configure(settings.log_format)
    log = get_logger("up")
    data_dir = args.data_dir or settings.data_dir
    url = args.nats or settings.nats_url
    instances = int(os.environ.get("INFUSION_MONITOR_MONITOR_INSTANCES", "1"))
    server = supervision = None
    credentials = Path(os.environ[CREDENTIALS_DIR_ENV]) if os.environ.get(CREDENTIALS_DIR_ENV) else None
    if url is None:
        server = start_embedded(data_dir, instances, log)
        url, credentials = server.url, credentials_dir(data_dir)
        supervision = ServerSupervision(server, data_dir / "nats.pid", log)
    stopping = False
    exit_code = 0

    def request_stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    services = list(SERVICES)
    if instances > 1:  # scale-out: every instance reads all, owns 1/N of the patients
        at = services.index("monitor")
        services[at:at + 1] = [f"monitor#{i}/{instances}" for i in range(instances)]
    if os.environ.get("INFUSION_MONITOR_PATIENT_KEY_SECRET"):
        services.append("gateway")
    else:
        log.info("gateway not started: set INFUSION_MONITOR_PATIENT_KEY_SECRET to run it")
    expect = [f"{name.partition('#')[0]}/{name.partition('#')[2].split('/')[0] or '0'}"
              for name in services if not name.startswith("pager")]  # what the watchdog must hear
    envs = child_environments(services, url, data_dir, credentials)
    for env in envs.values():
        env.setdefault("INFUSION_MONITOR_WATCHDOG_EXPECT", ",".join(expect))
    supervisor = Supervisor(envs, log)
    try:
        for name in services:
            supervisor.spawn(name)
        where = (f" (user producer: {credentials / 'producer.creds'})" if server is not None and credentials else "")
        print(f"infusion-monitor is up. NATS: {url}{where}. Publish inbound events on im.in.<patient>.<type>; "
              "alerts arrive on im.alert.>. Ctrl-C stops.", flush=True)
        while not stopping:
            if supervision is not None and not supervision.check():
                log.critical("embedded nats-server cannot be kept running: stopping (exit 1)")
                exit_code = 1
                break
            supervisor.check()
            time.sleep(0.2)
    finally:
        supervisor.stop()
        if server is not None:
            server.stop()
            url_file(data_dir).unlink(missing_ok=True)
            (data_dir / "nats.pid").unlink(missing_ok=True)
            log.info("embedded nats-server stopped")
    return exit_code
