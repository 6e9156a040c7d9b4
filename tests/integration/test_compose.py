"""docker-compose.yml against the code and its deploy step (issue 17, point 10). Docker is not run
here: the file is read and checked.

- it runs every service ``up`` runs (the board included), and each command it gives the image
  parses with the real command-line parser;
- every environment variable it sets is read by the code;
- every file it mounts is made by ``deploy/make_secrets.py`` (run into a temporary folder), every
  path it names in a container exists there (a mount, the ``data`` volume, or ``/app`` from the
  Dockerfile), and each service gets its own NATS user only;
- what the step makes works: a real nats-server with the step's cluster config and TLS accepts every
  service as the container would connect (its compose environment), the listeners' certificate
  serves TLS that the step's CA verifies, the board's first user signs in with the password the
  step wrote, the gateway's configuration loads with the step's site secret;
- running the step again keeps every secret.
"""

from __future__ import annotations

import ast
import asyncio
import os
import re
import shlex
import ssl
import stat
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath

import pytest

yaml = pytest.importorskip("yaml")  # the [test] extra installs it

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
SECRETS = "./deploy/secrets/"
TLS_SUFFIXES = ("_TLS_CERT", "_TLS_KEY", "_TLS_CLIENT_CA")  # ServerTls.from_env(env, PREFIX)


def _product() -> dict[str, dict]:
    """The compose services that run the product's image (the others run nats-server)."""
    return {name: spec for name, spec in SERVICES.items() if spec.get("build")}


def _role(spec: dict) -> str:
    """The NATS user a container runs as: the service it runs, or admin for provision."""
    command = spec["command"]
    return command[1] if command[0] == "service" else "admin"


# -- commands ---------------------------------------------------------------------------------------

def test_compose_runs_every_service_up_runs_with_commands_the_cli_parses():
    from infusion_monitor.cli.main import _parser
    from infusion_monitor.cli.up import SERVICES as UP_SERVICES

    parser = _parser()
    run = {}
    for name, spec in _product().items():
        try:
            args = parser.parse_args(spec["command"])
        except SystemExit:
            pytest.fail(f"{name}: infusion-monitor {shlex.join(spec['command'])} is not a command")
        run.setdefault(args.command if args.command != "service" else args.name, []).append(args)
    choices = next(a for a in parser._subparsers._group_actions[0].choices["service"]._actions  # noqa: SLF001
                   if a.dest == "name").choices
    assert set(UP_SERVICES) | {"gateway"} <= set(run), f"up runs {UP_SERVICES} and the gateway; compose: {sorted(run)}"
    assert set(choices) <= set(run), "every service there is, the board included"
    (provision,) = run["provision"]
    instances = provision.monitor_instances
    assert sorted(a.partition for a in run["monitor"]) == [f"{i}/{instances}" for i in range(instances)]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r'^ENTRYPOINT \["infusion-monitor"\]$', dockerfile, flags=re.M)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["infusion-monitor"] == "infusion_monitor.cli.main:main"  # the parser checked above


def test_the_nats_containers_run_a_config_and_every_url_names_one_of_them():
    nats = {name: spec for name, spec in SERVICES.items() if "image" in spec and spec["image"].startswith("nats:")}
    assert len(nats) == 3
    for name, spec in nats.items():
        config = spec["command"][spec["command"].index("-c") + 1]
        assert any(_target(v) == config for v in spec["volumes"]), f"{name}: {config} is not mounted"
    for name, spec in _product().items():
        hosts = {url.split("://")[1].rsplit(":", 1)[0] for url in spec["environment"]["NATS_URL"].split(",")}
        assert hosts == set(nats), name


# -- environment variables ------------------------------------------------------------------------

def _read_names() -> tuple[set[str], set[str]]:
    """String literals of the product's code (docstrings excluded) and the prefixes given to
    ``from_env(env, PREFIX)`` (which reads PREFIX_TLS_CERT, _TLS_KEY, _TLS_CLIENT_CA)."""
    literals, prefixes = set(), set()
    for path in [*ROOT.joinpath("services").rglob("*.py"), *ROOT.joinpath("schemas").rglob("*.py")]:
        tree = ast.parse(path.read_text(), str(path))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                literals.add(node.value)
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "from_env":
                prefixes |= {a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)}
    return literals, prefixes


def is_read(variable: str, literals: set[str], prefixes: set[str]) -> bool:
    return variable in literals or any(variable == p + s for p in prefixes for s in TLS_SUFFIXES)


def test_every_environment_variable_compose_sets_is_read_by_the_code(secrets_dir):
    literals, prefixes = _read_names()
    assert not is_read("INFUSION_MONITOR_NO_SUCH_SETTING", literals, prefixes)  # the check can fail
    assert not is_read("INFUSION_MONITOR_BOARD_USERS_FILE", literals, prefixes)
    unread = {f"{name}: {variable}" for name, spec in _product().items()
              for variable in _environment(spec, secrets_dir) if not is_read(variable, literals, prefixes)}
    assert not unread, f"set by docker-compose.yml, read by no code: {sorted(unread)}"


# -- mounted files ----------------------------------------------------------------------------------

def _source(volume: str) -> str:
    return volume.split(":")[0]


def _target(volume: str) -> str:
    return volume.split(":")[1]


def _environment(spec: dict, secrets_dir: Path) -> dict[str, str]:
    """What the container's environment holds: ``env_file`` entries, then ``environment``."""
    env: dict[str, str] = {}
    for env_file in spec.get("env_file", []):
        assert env_file.startswith(SECRETS), f"{env_file}: only the step's files"
        for line in (secrets_dir / env_file.removeprefix(SECRETS)).read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                key, _, value = line.partition("=")
                env[key.strip()] = value.strip()
    env.update({k: str(v) for k, v in (spec.get("environment") or {}).items()})
    return env


def _copied_into_image() -> set[str]:
    """Top-level folders the Dockerfile copies into /app (its WORKDIR)."""
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^WORKDIR /app$", text, flags=re.M)
    return {m.group(1) for m in re.finditer(r"^COPY (\S+) \1$", text, flags=re.M)}


def in_container(spec: dict, path: str, secrets_dir: Path, volume_dir: Path) -> Path | None:
    """Where a container's ``path`` comes from on this machine; None: it does not exist there."""
    wanted = PurePosixPath(path)
    for volume in spec.get("volumes", []):
        source, target = _source(volume), PurePosixPath(_target(volume))
        if wanted != target and target not in wanted.parents:
            continue
        rest = wanted.relative_to(target)
        if source.startswith(SECRETS):
            return secrets_dir / source.removeprefix(SECRETS) / rest
        if source.startswith("./"):
            return ROOT / source.removeprefix("./") / rest
        assert source in COMPOSE["volumes"], f"{source}: an undeclared volume"
        return volume_dir  # a named volume: the services make what is in it
    if wanted.parts[:2] == ("/", "app") and len(wanted.parts) > 2 and wanted.parts[2] in _copied_into_image():
        return ROOT.joinpath(*wanted.parts[2:])
    return None


def test_every_mounted_file_is_made_by_the_deploy_step_and_never_kept_in_git_or_the_image(secrets_dir):
    sources = {_source(v) for spec in SERVICES.values() for v in spec.get("volumes", [])}
    files = {s for s in sources if s.startswith("./")}
    assert files and all(s.startswith(SECRETS) for s in files), f"mounted, not made by the step: {files - {s for s in files if s.startswith(SECRETS)}}"
    missing = [s for s in files if not (secrets_dir / s.removeprefix(SECRETS)).exists()]
    assert not missing, f"mounted by docker-compose.yml, not made by deploy/make_secrets.py: {missing}"
    assert all(s in COMPOSE["volumes"] for s in sources - files)
    assert "deploy/secrets" in (ROOT / ".dockerignore").read_text().split()
    ignored = subprocess.run(["git", "check-ignore", "-q", "deploy/secrets/credentials/admin.creds"], cwd=ROOT,
                             check=False, timeout=30)
    assert ignored.returncode == 0, "deploy/secrets/ is not ignored by git"


def test_every_path_a_container_is_given_exists_in_it(secrets_dir, tmp_path):
    from infusion_monitor.gateway.config import GatewayConfig

    checked = 0
    for name, spec in _product().items():
        env = _environment(spec, secrets_dir)
        paths = {k: v for k, v in env.items() if v.startswith("/")}
        if "INFUSION_MONITOR_CONFIG" in env and spec["command"][-1] == "gateway":
            config = GatewayConfig.load({**env, "INFUSION_MONITOR_CONFIG": str(
                in_container(spec, env["INFUSION_MONITOR_CONFIG"], secrets_dir, tmp_path))})
            paths |= {k: v for k, v in config.model_dump().items() if isinstance(v, str) and v.startswith("/")}
            assert config.mllp_tls_cert and config.mllp_tls_client_ca and config.http_tls_cert
        for key, path in paths.items():
            local = in_container(spec, path, secrets_dir, tmp_path)
            assert local is not None and local.exists(), f"{name}: {key}={path} does not exist in the container"
            checked += 1
    assert checked >= 20


def test_each_container_gets_its_own_nats_user_only(secrets_dir):
    for name, spec in _product().items():
        env = _environment(spec, secrets_dir)
        creds = [_source(v) for v in spec["volumes"] if _source(v).endswith(".creds")]
        assert creds == [f"{SECRETS}credentials/{_role(spec)}.creds"], f"{name} mounts {creds}"
        assert in_container(spec, env["INFUSION_MONITOR_NATS_CREDENTIALS"], secrets_dir, Path("/nowhere")) == \
            secrets_dir / "credentials" / f"{_role(spec)}.creds"
        assert not any("/ca/" in _source(v) for v in spec["volumes"]), f"{name}: a CA key is mounted"


# -- what the step makes works -----------------------------------------------------------------------

def _without_block(text: str, name: str) -> str:
    """``text`` without the top-level ``name { ... }`` block (braces counted outside comments)."""
    lines, out, depth = text.splitlines(), [], 0
    for line in lines:
        code = line.split("#", 1)[0]
        if depth == 0 and re.match(rf"^{name}\s*\{{", code):
            depth = code.count("{") - code.count("}")
            continue
        if depth > 0:
            depth += code.count("{") - code.count("}")
            continue
        out.append(line)
    return "\n".join(out) + "\n"


@pytest.fixture
def nats_node(secrets_dir, tmp_path):
    """nats1 of docker-compose.yml on loopback: the step's config and TLS files as the container
    sees them, without the cluster routes (no nats2/nats3 here), the store and the monitoring port."""
    from infusion_monitor.runtime.embedded import EmbeddedNats

    spec = SERVICES["nats1"]
    config = in_container(spec, "/etc/nats/nats.conf", secrets_dir, tmp_path)
    text = _without_block(config.read_text(), "cluster")
    for path in sorted(set(re.findall(r'"(/etc/nats/tls/[^"]+)"', text))):
        text = text.replace(f'"{path}"', f'"{in_container(spec, path, secrets_dir, tmp_path)}"')
    text = re.sub(r"^(http|listen): .*$", "", text, flags=re.M)
    text = re.sub(r"^\s*store_dir: .*$", "", text, flags=re.M)
    local = tmp_path / "nats1.conf"
    local.write_text(text)
    server = EmbeddedNats(tmp_path / "store", extra_args=["-c", str(local)]).start()
    try:
        yield server
    finally:
        server.stop()


def _certificate_names(path: Path) -> set[str]:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(n) for n in names.get_values_for_type(x509.DNSName)} | \
        {str(n) for n in names.get_values_for_type(x509.IPAddress)}


async def test_every_container_connects_to_the_steps_nats_server_as_its_own_user(secrets_dir, nats_node, tmp_path):
    from infusion_monitor.runtime.access import access_for

    names = _certificate_names(in_container(SERVICES["nats1"], "/etc/nats/tls/server-cert.pem", secrets_dir, tmp_path))
    assert {"nats1", "nats2", "nats3", "localhost", "127.0.0.1"} <= names
    url = f"tls://127.0.0.1:{nats_node.port}"
    for name, spec in _product().items():
        env = _environment(spec, secrets_dir)
        local = {k: str(in_container(spec, env[k], secrets_dir, tmp_path))
                 for k in ("INFUSION_MONITOR_NATS_CREDENTIALS", "NATS_TLS_CA")}
        access = access_for(url, local)  # how the container connects, with its own files
        assert access.credentials is not None and access.credentials.user == _role(spec)
        nc = await access.connect(_role(spec), allow_reconnect=False, connect_timeout=10)
        try:
            await nc.flush(timeout=10)
        finally:
            await nc.close()
    import nats

    async def quiet(_exc: Exception) -> None:
        pass

    with pytest.raises(Exception, match="(?i)authorization"):  # the server checks the password
        await nats.connect(servers=[url], user="monitor", password="not-the-password", error_cb=quiet,
                           tls=ssl.create_default_context(cafile=str(secrets_dir / "nats" / "tls" / "ca.pem")),
                           allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=5)


async def test_the_listeners_serve_tls_that_the_steps_ca_verifies(secrets_dir, tmp_path):
    from infusion_monitor.board.config import BoardConfig
    from infusion_monitor.pager.app import PagerSettings

    def local_env(name: str) -> dict[str, str]:
        spec = SERVICES[name]
        return {k: (str(in_container(spec, v, secrets_dir, tmp_path)) if v.startswith("/") else v)
                for k, v in _environment(spec, secrets_dir).items()}

    client = ssl.create_default_context(cafile=str(secrets_dir / "tls" / "ca.pem"))
    for tls in (BoardConfig.load(local_env("board")).tls, PagerSettings.load(local_env("pager")).tls):
        assert tls is not None
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=tls.context())
        port = server.sockets[0].getsockname()[1]
        try:
            for host in ("localhost", "127.0.0.1"):
                _, writer = await asyncio.wait_for(asyncio.open_connection(
                    "127.0.0.1", port, ssl=client, server_hostname=host), timeout=10)
                assert writer.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
                writer.close()
        finally:
            server.close()
            await server.wait_closed()


def test_the_boards_first_user_signs_in_with_the_password_the_step_wrote(secrets_dir, tmp_path):
    from infusion_monitor.board.auth import load_users, verify_password
    from infusion_monitor.board.config import BoardConfig

    spec = SERVICES["board"]
    path = BoardConfig.load(_environment(spec, secrets_dir)).users_path
    users = load_users(in_container(spec, path, secrets_dir, tmp_path))
    password = (secrets_dir / "board-admin.password").read_text().strip()
    assert list(users) == ["admin"] and verify_password(password, users["admin"].password)
    assert not verify_password(password + "x", users["admin"].password)


# -- the step itself ----------------------------------------------------------------------------------

def make_secrets(out: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "deploy" / "make_secrets.py"), "--out", str(out), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("compose") / "secrets"
    make_secrets(out)
    return out


def _contents(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_running_the_step_again_keeps_every_secret_and_remakes_only_what_is_gone(tmp_path):
    import bcrypt

    from infusion_monitor.runtime.access import Credentials

    out = tmp_path / "secrets"
    printed = make_secrets(out)
    first = _contents(out)
    assert "board-admin.password" in printed  # where the password is, never the password
    secrets_made = [(out / "board-admin.password").read_text().strip()] + \
        [Credentials.read(p).password for p in (out / "credentials").glob("*.creds")]
    assert len(secrets_made) == 9 and not [s for s in secrets_made if s in printed]
    for path in out.rglob("*"):  # every file only for its owner, every folder too
        assert not path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO), path
    second_out = make_secrets(out)
    assert "made " not in second_out
    second = _contents(out)
    configs = {k for k in first if k.startswith("nats/cluster-node")}
    assert {k: v for k, v in first.items() if k not in configs} == {k: v for k, v in second.items() if k not in configs}
    (out / "credentials" / "pager.creds").unlink()
    (out / "tls" / "listener-key.pem").unlink()
    third_out = make_secrets(out)
    assert sorted(re.findall(r"^made (\S+)$", third_out, flags=re.M)) == \
        ["credentials/pager.creds", "tls/listener-cert.pem", "tls/listener-key.pem"]
    for user in ("pager", "monitor", "admin"):  # every config holds the hash of the current password
        password = Credentials.read(out / "credentials" / f"{user}.creds").password.encode()
        for config in configs:
            hashed = re.search(rf'^PW_{user.upper()}: "(.*)"$', (out / config).read_text(), flags=re.M).group(1)
            assert bcrypt.checkpw(password, hashed.encode()), (user, config)
    assert _contents(out)["tls/ca.pem"] == first["tls/ca.pem"]


def test_the_step_puts_extra_host_names_in_both_certificates(tmp_path):
    out = tmp_path / "secrets"
    make_secrets(out, "--hostname", "im.hospital.example", "--hostname", "10.1.2.3")
    assert {"im.hospital.example", "10.1.2.3", "nats1"} <= _certificate_names(out / "nats" / "tls" / "server-cert.pem")
    assert {"im.hospital.example", "10.1.2.3", "localhost"} <= _certificate_names(out / "tls" / "listener-cert.pem")
    assert sorted(os.listdir(out / "ca")) == ["listener-ca-key.pem", "nats-ca-key.pem"]  # never mounted
