"""The shipped NATS authorization (deploy/nats/accounts.conf) on a real nats-server: one user per
service, least privilege, bcrypt passwords, TLS (issue #5, security).

The server runs the shipped file with only these substituted in a temporary copy: test password
hashes (bcrypt, cost 6), a free loopback port, a throwaway CA and server certificate, a
temporary JetStream store. The monitor and the pager run as real processes under their own
users, with credentials in ``NATS_URL`` (``nats://USER:PASS@host:port``, never on argv) and the
CA in ``SSL_CERT_FILE`` (Python's default TLS context reads it; no code change needed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from infusion_monitor.runtime.access import Credentials, NatsAccess
from infusion_monitor.runtime.embedded import EmbeddedNats, server_binary
from infusion_monitor.runtime.provision import provision
from tests.integration.live import now_minus, stop_process, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "nats"
BEGIN = "# ---- ACCOUNTS (begin"
END = "# ---- ACCOUNTS (end) ----"

# user -> (password, bcrypt hash of it, cost 6: fast to check, same code path as cost 11)
USERS = {
    "SYS": ("test-sys-secret", "$2b$06$eq0Ys71ES4NLn.xDGMZXOu9MAuKUKzyrHfWrAhqQ7sBCTn2F7KEVy"),
    "ADMIN": ("test-admin-secret", "$2b$06$ZfW0XNmri9NmL.ynlVIUYuoJgP2GmhqdtTM63zStINbwjLxEtC.3G"),
    "OPERATOR": ("test-operator-secret", "$2b$06$9L5czdHhbolRwUbgiTfSEO6zpOCyup6iugMhJUo58UvQ9LxrDxPzy"),
    "MONITOR": ("test-monitor-secret", "$2b$06$Gd7YhL1tYAiZ5seJCY4Up.whvA8VfxBATZcG6u/Zd2hJFOeYN5dE2"),
    "PAGER": ("test-pager-secret", "$2b$06$4h/DlmZDLv4Z3GMxPgWZeeUgMUSOrHel98kwXogESPnOYjHLhITJC"),
    "GATEWAY": ("test-gateway-secret", "$2b$06$GVetSJ2TJscnvnduml1iZey/ng0HcS0awiH7rL9f/w5FL6Ncu24Ta"),
    "BOARD": ("test-board-secret", "$2b$06$qxMdoTJSLRTXZ.UKiP5HCuQhELy5EYP1HwsxDZBi7a4zFlt6wTiJW"),
    "PRODUCER": ("test-producer-secret", "$2b$06$0WGlt5XE6w7eB7AValcIfOB9uXCMuIWInk0iSapx5GaFDtdSc9ZHK"),
}
DENIED_WAIT_S = 1.5  # a denied request gets no reply: the client's timeout


# -- certificates ------------------------------------------------------------------------------

def make_certificates(out: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate for 127.0.0.1/localhost and a client certificate,
    all signed by the CA (``cryptography`` if importable, else the ``openssl`` command)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / f"{name}.pem" for name in
             ("ca", "ca-key", "server-cert", "server-key", "client-cert", "client-key")}
    try:
        _certs_with_cryptography(paths)
    except ImportError:
        if not shutil.which("openssl"):
            pytest.skip("neither the cryptography package nor openssl is available")
        _certs_with_openssl(out, paths)
    return paths


def _certs_with_cryptography(paths: dict[str, Path]) -> None:
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)

    def key_pem(key: Any) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("im-test-ca")).issuer_name(name("im-test-ca"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["ca-key"].write_bytes(key_pem(ca_key))
    for role, usage in (("server", ExtendedKeyUsageOID.SERVER_AUTH), ("client", ExtendedKeyUsageOID.CLIENT_AUTH)):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name(f"im-test-{role}")).issuer_name(ca.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if role == "server":
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        paths[f"{role}-cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        paths[f"{role}-key"].write_bytes(key_pem(key))


def _certs_with_openssl(out: Path, paths: dict[str, Path]) -> None:
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=out, check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
        "-subj", "/CN=im-test-ca", "-keyout", str(paths["ca-key"]), "-out", str(paths["ca"]))
    for role, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
                      ("client", "extendedKeyUsage=clientAuth\n")):
        (out / f"{role}.ext").write_text(ext)
        run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN=im-test-{role}",
            "-keyout", str(paths[f"{role}-key"]), "-out", str(out / f"{role}.csr"))
        run("x509", "-req", "-in", str(out / f"{role}.csr"), "-CA", str(paths["ca"]), "-CAkey", str(paths["ca-key"]),
            "-CAcreateserial", "-days", "1", "-extfile", str(out / f"{role}.ext"), "-out", str(paths[f"{role}-cert"]))


# -- the shipped config, made runnable here -------------------------------------------------------

def accounts_block(text: str) -> str:
    start, end = text.index(BEGIN), text.index(END)
    return text[start:end + len(END)]


def render(source: Path, tmp: Path, certs: dict[str, Path], verify: bool | None = None) -> Path:
    """The shipped file with test hashes and TLS files; ``listen`` is overridden by EmbeddedNats'
    ``-a``/``-p``, the store by its ``-sd``; ``http`` is dropped."""
    text = source.read_text()
    for user, (_, hashed) in USERS.items():
        text, n = re.subn(rf'^PW_{user}: ".*"$', f'PW_{user}: "{hashed}"', text, flags=re.M)
        assert n == 1, f"PW_{user} defined once in {source.name}"
    text = re.sub(r"^http: .*$", "", text, flags=re.M)
    text = text.replace('"/etc/nats/tls/server-cert.pem"', json.dumps(str(certs["server-cert"])))
    text = text.replace('"/etc/nats/tls/server-key.pem"', json.dumps(str(certs["server-key"])))
    text = text.replace('"/etc/nats/tls/ca.pem"', json.dumps(str(certs["ca"])))
    text = re.sub(r"^\s*store_dir: .*$", "", text, flags=re.M)  # EmbeddedNats gives -sd (both: an error)
    if verify is not None:
        text, n = re.subn(r"^  verify: (true|false)$", f"  verify: {str(verify).lower()}", text, flags=re.M)
        assert n == 1
    out = tmp / source.name
    out.write_text(text)
    return out


class Secure:
    """The running server plus what a test needs to connect as somebody."""

    def __init__(self, server: EmbeddedNats, certs: dict[str, Path]) -> None:
        self.server, self.certs = server, certs

    def url(self, user: str, password: str | None = None) -> str:
        pw = USERS[user.upper()][0] if password is None else password
        return f"nats://{user}:{pw}@127.0.0.1:{self.server.port}"

    def access(self, user: str) -> NatsAccess:
        """How a service of this deployment connects: its credentials file's user and password."""
        return NatsAccess(f"nats://127.0.0.1:{self.server.port}", Credentials(user, USERS[user.upper()][0]), self.tls())

    def tls(self, client_cert: bool = False) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.certs["ca"]))
        if client_cert:
            ctx.load_cert_chain(str(self.certs["client-cert"]), str(self.certs["client-key"]))
        return ctx

    async def connect(self, user: str) -> Client:
        """Connect as ``user``; a service user with its service's own reply prefix, as the
        service itself does (its permissions allow no other)."""
        from infusion_monitor.runtime.shells import inbox_prefix

        client = Client()
        prefix = inbox_prefix(user) if user in ("monitor", "pager", "gateway", "board") else "_INBOX"
        client.nc = await nats.connect(self.url(user), tls=self.tls(), error_cb=client.on_error,
                                       allow_reconnect=False, connect_timeout=5, inbox_prefix=prefix)
        client.js = client.nc.jetstream(timeout=DENIED_WAIT_S)
        return client


class Client:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.nc: Any = None
        self.js: Any = None

    async def on_error(self, exc: Exception) -> None:
        self.errors.append(str(exc).lower())

    async def violation(self, subject: str, timeout: float = 3.0) -> str:
        """Wait (bounded) for the server's permission violation naming ``subject``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for err in self.errors:
                if "permissions violation" in err and subject.lower() in err:
                    return err
            await asyncio.sleep(0.05)
        raise AssertionError(f"no permission violation for {subject}; errors: {self.errors}")

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.nc.close()


class Service:
    """``infusion-monitor service NAME`` under its own NATS user (credentials in NATS_URL)."""

    def __init__(self, name: str, secure: Secure, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.name, self.log_path = name, log_path
        base = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "SSL_CERT_FILE")}
        # the credentials in a file only its owner can read; the URL carries none
        creds = Credentials(name, USERS[name.upper()][0]).write(log_path.parent / f"{name}.creds")
        self.env = {**base, "NATS_URL": f"nats://127.0.0.1:{secure.server.port}", "INFUSION_MONITOR_NATS_CREDENTIALS": str(creds),
                    "SSL_CERT_FILE": str(secure.certs["ca"]), "INFUSION_MONITOR_DATA_DIR": str(log_path.parent / "var"),
                    "INFUSION_MONITOR_LOG_FORMAT": "json", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "infusion_monitor.cli.main", "service", self.name],
                                     cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        stop_process(self.proc)
        self.log.close()
        return self.proc.returncode


# -- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    tmp = tmp_path_factory.mktemp("secure-nats")
    certs = make_certificates(tmp / "tls")
    conf = render(DEPLOY / "accounts.conf", tmp, certs)
    server = EmbeddedNats(tmp / "store", extra_args=["-c", str(conf)]).start()
    try:
        secure = Secure(server, certs)
        # `infusion-monitor provision` as admin: the only one who may create streams and buckets
        asyncio.run(provision(secure.access("admin"), instances=1))
        yield secure
    finally:
        server.stop()


@pytest.fixture(scope="module")
def monitor(secure: Secure, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = Service("monitor", secure, tmp_path_factory.mktemp("monitor") / "monitor.log").start()
    try:
        yield service
    finally:
        service.stop()


async def _stream_has(client: Client, stream: str, predicate) -> Any:
    try:
        info = await client.js.stream_info(stream)
    except Exception:
        return None
    for seq in range(max(1, info.state.first_seq), info.state.last_seq + 1):
        with contextlib.suppress(Exception):
            msg = await client.js.get_msg(stream, seq)
            data = json.loads(msg.data)
            if predicate(data):
                return data
    return None


def ev(type_: str, event_id: str, minutes_ago: float, patient: str = "pk-sec", **fields: Any) -> dict[str, Any]:
    return {"type": type_, "event_id": event_id, "occurred_at": now_minus(minutes_ago), "patient_id": patient, **fields}


async def _monitor_ready(secure: Secure, durable: str = "monitor") -> None:
    operator = await secure.connect("admin")  # inspecting streams: admin (operators read dead letters and the audit only)

    async def ready() -> bool:
        try:
            await operator.js.consumer_info("IM_IN", durable)
            return True
        except Exception:
            return False

    try:
        await wait_for(ready, timeout=30)
    finally:
        await operator.close()


async def _produce_r7(secure: Secure, patient: str, tag: str, durable: str = "monitor") -> None:
    await _monitor_ready(secure, durable)
    producer = await secure.connect("producer")
    try:
        js = producer.nc.jetstream(timeout=5.0)
        for event in (ev("vitals.recorded", f"mon-{tag}1", 6, patient, systolic_mmhg=130, spo2_pct=98),
                      ev("infusion.started", f"pump-{tag}1", 4, patient, session_id=f"ses-{tag}", pump_id="p9"),
                      ev("vitals.recorded", f"mon-{tag}2", 0.1, patient, systolic_mmhg=84, spo2_pct=91,
                         symptoms=["wheeze"])):
            ack = await js.publish(f"im.in.{patient}.{event['type']}", json.dumps(event).encode(),
                                   headers={"Nats-Msg-Id": event["event_id"]})
            assert ack.stream == "IM_IN"
        again = await js.publish(f"im.in.{patient}.vitals.recorded", b"{}", headers={"Nats-Msg-Id": f"mon-{tag}1"})
        assert again.duplicate  # dedup works through the cross-account import too
    finally:
        await producer.close()


# -- tests ---------------------------------------------------------------------------------------

def test_every_shipped_server_config_has_the_same_authorization_and_is_valid(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path / "tls")
    block = accounts_block((DEPLOY / "accounts.conf").read_text())
    for name in ("accounts.conf", "cluster-node1.conf", "cluster-node2.conf", "cluster-node3.conf"):
        source = DEPLOY / name
        assert accounts_block(source.read_text()) == block, f"{name}: ACCOUNTS block differs from accounts.conf"
        assert re.search(r"sync_interval: always", source.read_text()), name
        assert re.search(r"(?ms)^tls \{.*?^  verify: (true|false)$", source.read_text()), name
        where = tmp_path / name.removesuffix(".conf")
        where.mkdir()
        conf = render(source, where, certs)
        checked = subprocess.run([server_binary(), "-t", "-c", str(conf)], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, f"{name}: {checked.stdout}{checked.stderr}"
    # no plain-text password anywhere: every user's password is a variable holding a bcrypt hash
    for line in block.splitlines():
        if "password:" in line:
            assert re.search(r"password: \$PW_[A-Z]+[ ,}]", line), line
    for match in re.finditer(r'^PW_[A-Z]+: "(.*)"$', block, flags=re.M):
        assert re.fullmatch(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}", match.group(1)), match.group(0)


async def test_a_producer_event_raises_an_alert_through_the_monitor_under_its_own_user(secure, monitor, tmp_path):
    await _produce_r7(secure, "pk-sec", "s")
    operator = await secure.connect("admin")  # inspecting streams: admin (operators read dead letters and the audit only)
    try:
        alert = await wait_for(lambda: _stream_has(operator, "IM_ALERTS", lambda a: a.get("rule") == "R7"
                                                   and a["patient_id"] == "pk-sec"), timeout=30)
        assert alert["type"] == "alert.raised" and alert["session_id"] == "ses-s"
    finally:
        await operator.close()
    assert monitor.proc is not None and monitor.proc.poll() is None, monitor.log_path.read_text()[-3000:]
    log = monitor.log_path.read_text()
    assert "monitor starting" in log
    assert USERS["MONITOR"][0] not in log  # the credentials never reach the logs


async def test_a_producer_cannot_raise_alerts_or_read_state_or_dead_letters(secure, monitor):
    await _produce_r7(secure, "pk-sec2", "t")  # the monitor's state bucket and streams exist
    operator = await secure.connect("admin")  # inspecting streams: admin (operators read dead letters and the audit only)
    producer = await secure.connect("producer")
    try:
        await wait_for(lambda: _stream_has(operator, "IM_ALERTS", lambda a: a["patient_id"] == "pk-sec2"), timeout=30)
        alerts_before = (await operator.js.stream_info("IM_ALERTS")).state.messages
        forged = json.dumps({"type": "alert.raised", "event_id": "forged-1"}).encode()
        await producer.nc.publish("im.alert.x.alert.raised", forged)
        await producer.nc.flush()
        await producer.violation('publish to "im.alert.x.alert.raised"')
        with pytest.raises(Exception):
            await producer.js.publish("im.alert.x.alert.raised", forged)
        # the monitor's state bucket: not through the JetStream API, not by subject
        with pytest.raises(Exception):
            await producer.js.key_value("im-state-monitor")
        await producer.violation("$js.api.stream.info.kv_im-state-monitor")
        with pytest.raises(Exception):
            await producer.js.get_msg("KV_im-state-monitor", 1)
        await producer.nc.subscribe("$KV.im-state-monitor.>")
        await producer.nc.flush()
        await producer.violation('subscription to "$kv.im-state-monitor.>"')
        # dead letters of the monitor and of the gateway
        for stream, subject in (("IM_DLQ", "im.dlq.>"), ("IM_GW_DLQ", "im.gwdlq.>")):
            with pytest.raises(Exception):
                await producer.js.get_msg(stream, 1)
            await producer.violation(f"$js.api.stream.msg.get.{stream}")
            await producer.nc.subscribe(subject)
            await producer.nc.flush()
            await producer.violation(f'subscription to "{subject}"')
        # not even the inbound stream it writes to
        with pytest.raises(Exception):
            await producer.js.get_msg("IM_IN", 1)
        await asyncio.sleep(0.5)
        assert (await operator.js.stream_info("IM_ALERTS")).state.messages == alerts_before
    finally:
        await producer.close()
        await operator.close()


async def test_the_pager_reads_alerts_but_cannot_publish_inbound_events_or_raise_alerts(secure, monitor):
    await _produce_r7(secure, "pk-sec3", "u")
    operator = await secure.connect("admin")  # inspecting streams: admin (operators read dead letters and the audit only)
    pager = await secure.connect("pager")
    try:
        await wait_for(lambda: _stream_has(operator, "IM_ALERTS", lambda a: a["patient_id"] == "pk-sec3"), timeout=30)
        found = await _stream_has(pager, "IM_ALERTS", lambda a: a["patient_id"] == "pk-sec3")
        assert found is not None and found["type"] == "alert.raised"  # the pager reads alerts
        inbound_before = (await operator.js.stream_info("IM_IN")).state.messages
        event = ev("vitals.recorded", "pager-forged-1", 0, "pk-sec3", symptoms=["stridor"])
        await pager.nc.publish("im.in.pk-sec3.vitals.recorded", json.dumps(event).encode())
        await pager.nc.flush()
        await pager.violation('publish to "im.in.pk-sec3.vitals.recorded"')
        await pager.nc.publish("im.alert.pk-sec3.alert.raised", b"{}")
        await pager.nc.flush()
        await pager.violation('publish to "im.alert.pk-sec3.alert.raised"')
        with pytest.raises(Exception):
            await pager.js.key_value("im-state-monitor")  # another service's state
        await pager.violation("$js.api.stream.info.kv_im-state-monitor")
        with pytest.raises(Exception):
            await pager.js.get_msg("IM_IN", 1)  # inbound events (free text, birth dates)
        await pager.violation("$js.api.stream.msg.get.im_in")
        await asyncio.sleep(0.5)
        assert (await operator.js.stream_info("IM_IN")).state.messages == inbound_before
    finally:
        await pager.close()
        await operator.close()


async def test_the_pager_service_runs_under_its_own_user(secure, monitor, tmp_path):
    """Its consumers, KV bucket, audit writes and stream declarations are all permitted: the
    raised alert reaches the audit trail."""
    await _produce_r7(secure, "pk-sec4", "v")
    service = Service("pager", secure, tmp_path / "pager.log",
                      env={"INFUSION_MONITOR_PAGER_ACK_BIND": "off"}).start()
    operator = await secure.connect("admin")  # inspecting streams: admin (operators read dead letters and the audit only)
    try:
        audited = await wait_for(lambda: _stream_has(operator, "IM_AUDIT", lambda a: a["type"] == "alert.raised"
                                                     and a["patient_id"] == "pk-sec4"), timeout=40)
        assert audited["rule"] == "R7"
        assert service.proc is not None and service.proc.poll() is None
    finally:
        await operator.close()
        code = service.stop()
    log = service.log_path.read_text()
    assert code == 0, log[-3000:]
    assert "permissions violation" not in log.lower(), log[-3000:]
    assert USERS["PAGER"][0] not in log


async def test_gateway_dead_letters_are_readable_by_the_gateway_and_operators_only(secure, monitor):
    from infusion_monitor.runtime.names import Names
    from infusion_monitor.runtime.streams import ensure_gateway_streams

    gateway = await secure.connect("gateway")
    try:
        await ensure_gateway_streams(gateway.nc.jetstream(timeout=5.0), Names())
        ack = await gateway.js.publish("im.gwdlq.hl7", b"MSH|^~\\&|LAB|...|PID|||MRN-4711||Doe^Jane",
                                       headers={"Nats-Msg-Id": "gwdlq:test:1"})
        with pytest.raises(Exception):  # it writes them; only operators read them back
            await gateway.js.get_msg("IM_GW_DLQ", ack.seq)
        await gateway.violation("$js.api.stream.msg.get.im_gw_dlq")
    finally:
        await gateway.close()
    operator = await secure.connect("operator")
    try:
        assert (await operator.js.get_msg("IM_GW_DLQ", ack.seq)).data.startswith(b"MSH")
    finally:
        await operator.close()
    for user in ("monitor", "pager", "board", "producer"):
        client = await secure.connect(user)
        try:
            with pytest.raises(Exception):
                await client.js.get_msg("IM_GW_DLQ", ack.seq)
            await client.violation("$js.api.stream.msg.get.im_gw_dlq")
        finally:
            await client.close()


async def test_wrong_or_missing_credentials_are_refused(secure):
    for url in (secure.url("monitor", "not-the-password"), secure.url("nobody", "x"),
                f"nats://127.0.0.1:{secure.server.port}"):
        with pytest.raises(Exception):
            nc = await nats.connect(url, tls=secure.tls(), allow_reconnect=False, max_reconnect_attempts=0,
                                    connect_timeout=3)
            await nc.close()


async def test_tls_connects_with_the_ca_and_fails_without_it(secure):
    url = secure.url("producer")
    nc = await nats.connect(url, tls=secure.tls(), allow_reconnect=False, connect_timeout=5)
    assert nc.is_connected
    await nc.close()
    bare = ssl.create_default_context(cafile=None)  # system CAs only: the throwaway CA is unknown
    bare.load_default_certs()
    with pytest.raises(Exception):
        nc = await nats.connect(url, tls=bare, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=3)
        await nc.close()
    # a client speaking plain text is refused by the server (TLS required)
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", secure.server.port), 5)
    try:
        info = await asyncio.wait_for(reader.readline(), 5)
        assert b'"tls_required":true' in info
        writer.write(b'CONNECT {"verbose":false,"user":"producer","pass":"test-producer-secret"}\r\nPING\r\n')
        await writer.drain()
        reply = await asyncio.wait_for(reader.read(200), 5)
        assert b"PONG" not in reply
    finally:
        writer.close()


async def test_mutual_tls_when_verify_is_on(tmp_path):
    certs = make_certificates(tmp_path / "tls")
    conf = render(DEPLOY / "accounts.conf", tmp_path, certs, verify=True)
    server = EmbeddedNats(tmp_path / "store", extra_args=["-c", str(conf)]).start()
    try:
        secure = Secure(server, certs)
        nc = await nats.connect(secure.url("producer"), tls=secure.tls(client_cert=True), allow_reconnect=False,
                                connect_timeout=5)
        assert nc.is_connected
        await nc.close()
        with pytest.raises(Exception):
            nc = await nats.connect(secure.url("producer"), tls=secure.tls(client_cert=False), allow_reconnect=False,
                                    max_reconnect_attempts=0, connect_timeout=3)
            await nc.close()
    finally:
        server.stop()


async def test_a_service_cannot_read_another_services_replies(secure):
    """Each service may subscribe to its own reply prefix only: the pager cannot listen to the
    monitor's replies (its fetched inbound events, its KV reads)."""
    pager = await secure.connect("pager")
    try:
        await pager.nc.subscribe("_INBOX_monitor.>")
        await pager.nc.flush()
        await pager.violation('subscription to "_INBOX_monitor.>"')
    finally:
        await pager.close()


async def test_a_partitioned_monitor_instance_runs_under_the_monitor_user(secure, tmp_path):
    """docker-compose.yml runs monitor instances 0/3..2/3: their durables and state buckets are
    allowed to the monitor user like the single instance's."""
    from infusion_monitor.worker.partition import Partition

    part = Partition(1, 3)
    patient = next(f"pk-part{i}" for i in range(1000) if part.owns(f"pk-part{i}"))
    instance = Service("monitor", secure, tmp_path / "monitor-p1.log", env={"INFUSION_MONITOR_PARTITION": "1/3"}).start()
    operator = await secure.connect("admin")  # inspecting streams: admin (operators read dead letters and the audit only)
    try:
        await _produce_r7(secure, patient, "p1", durable="monitor-p1of3")
        alert = await wait_for(lambda: _stream_has(operator, "IM_ALERTS", lambda a: a.get("rule") == "R7"
                                                   and a["patient_id"] == patient), timeout=30)
        assert alert["session_id"] == "ses-p1"
        assert instance.proc is not None and instance.proc.poll() is None, instance.log_path.read_text()[-3000:]
        await operator.js.consumer_info("IM_IN", "monitor-p1of3")
    finally:
        await operator.close()
        instance.stop()
    assert "Permissions Violation" not in instance.log_path.read_text()


async def test_the_gateway_opens_its_state_and_its_message_ledger_with_its_own_permissions(secure):
    """The message ledger (issue 15: identity -> content digest) is the gateway's own bucket."""
    from infusion_monitor.gateway.store import GatewayStore, MessageLedger

    gateway = await secure.connect("gateway")
    try:
        js = gateway.nc.jetstream(timeout=5.0)
        await (await GatewayStore.open(js, "im-state-gateway")).load()
        ledger = await MessageLedger.open(js, "im-state-gateway-msgids", 30 * 86400)
        await ledger.record("id-1", "d" * 64)
        assert await ledger.digest("id-1") == "d" * 64
        assert await ledger.digest("id-2") is None
    finally:
        await gateway.close()
    assert not [e for e in gateway.errors if "permissions violation" in e]
    monitor = await secure.connect("monitor")
    try:
        with pytest.raises(Exception):  # noqa: B017 - denied: a timeout or a permission error
            await monitor.js.key_value("im-state-gateway-msgids")
    finally:
        await monitor.close()


# -- issue 14: nobody but admin changes a stream; the audit trail is append-only ------------------

SERVICE_USERS = ("monitor", "pager", "gateway", "board", "operator", "producer")


async def test_every_service_user_fails_to_purge_delete_or_shrink_the_audit_stream(secure):
    """The attack of issue 14 (the monitor shrank IM_AUDIT from 12 to 2 messages; an anonymous
    client deleted it) against every user of the shipped configuration."""
    from nats.js.api import StreamConfig

    admin = await secure.connect("admin")
    try:
        for i in range(3):
            await admin.js.publish("im.audit.pk-audit.alert.raised", json.dumps({"n": i}).encode(),
                                   headers={"Nats-Msg-Id": f"audit-attack-{i}"})
        before = (await admin.js.stream_info("IM_AUDIT")).state
        config = (await admin.js.stream_info("IM_AUDIT")).config
        for user in SERVICE_USERS:
            client = await secure.connect(user)
            try:
                for attempt in (lambda js: js.purge_stream("IM_AUDIT"), lambda js: js.delete_stream("IM_AUDIT"),
                                lambda js: js.delete_msg("IM_AUDIT", before.last_seq),
                                lambda js: js.update_stream(StreamConfig(**{**config.as_dict(), "max_msgs": 1})),
                                lambda js: js.add_stream(StreamConfig(name="IM_EVIL", subjects=["im.audit.>"]))):
                    with pytest.raises(Exception):  # noqa: B017 - denied: refused or no reply
                        await attempt(client.js)
                assert [e for e in client.errors if "permissions violation" in e], user
            finally:
                await client.close()
        after = (await admin.js.stream_info("IM_AUDIT")).state
        assert (after.messages, after.first_seq, after.last_seq) == (before.messages, before.first_seq, before.last_seq)
        # append-only even for the admin's tools: no purge, no message delete (only max_age expires it)
        with pytest.raises(Exception):
            await admin.js.purge_stream("IM_AUDIT")
        with pytest.raises(Exception):
            await admin.js.delete_msg("IM_AUDIT", before.last_seq)
    finally:
        await admin.close()


async def test_no_one_but_admin_publishes_a_clock_tick(secure):
    """Only the product's own scheduler may move the clock (architecture rule 9; issue 13): no
    producer, gateway, operator or service may publish ``clock.tick``."""
    admin = await secure.connect("admin")
    try:
        before = (await admin.js.stream_info("IM_IN")).state.messages
        for user in SERVICE_USERS:
            client = await secure.connect(user)
            try:
                tick = {"type": "clock.tick", "event_id": f"tick-{user}", "occurred_at": "9999-01-01T00:00:00Z"}
                await client.nc.publish("im.in._.clock.tick", json.dumps(tick).encode())
                await client.nc.flush()
                await client.violation('publish to "im.in._.clock.tick"')
            finally:
                await client.close()
        await asyncio.sleep(0.3)
        assert (await admin.js.stream_info("IM_IN")).state.messages == before
    finally:
        await admin.close()


async def test_the_pager_cannot_forge_the_boards_audit_records_nor_the_board_the_pagers(secure):
    admin = await secure.connect("admin")
    try:
        before = (await admin.js.stream_info("IM_AUDIT")).state.messages
        for user, subject in (("pager", "im.audit._.board.login"), ("board", "im.audit.pk-x.page.attempted"),
                              ("board", "im.audit.pk-x.alert.acknowledged"), ("monitor", "im.audit.pk-x.board.acknowledge")):
            client = await secure.connect(user)
            try:
                await client.nc.publish(subject, b'{"type": "board.login", "user": "someone-else"}')
                await client.nc.flush()
                await client.violation(f'publish to "{subject}"')
            finally:
                await client.close()
        await asyncio.sleep(0.3)
        assert (await admin.js.stream_info("IM_AUDIT")).state.messages == before
    finally:
        await admin.close()


async def test_the_board_cannot_take_deliveries_from_the_monitors_durable(secure, monitor):
    await _monitor_ready(secure)
    board = await secure.connect("board")
    try:
        with pytest.raises(Exception):  # noqa: B017
            sub = await board.js.pull_subscribe_bind("monitor", "IM_IN", inbox_prefix=b"_INBOX_board.")
            await sub.fetch(1, timeout=DENIED_WAIT_S)
        await board.violation("$js.api.consumer.msg.next.im_in.monitor")
    finally:
        await board.close()


async def test_the_board_runs_under_its_shipped_user(secure, monitor, tmp_path):
    """Issue 14: the board could not even start under its shipped user. It reads the three
    streams, serves its page, and its log shows no permission violation."""
    await _produce_r7(secure, "pk-sec-board", "w")
    service = Service("board", secure, tmp_path / "board.log",
                      env={"INFUSION_MONITOR_BOARD_BIND": "127.0.0.1:0", "INFUSION_MONITOR_BOARD_LOOKBACK_HOURS": "1"})
    service.start()
    try:
        async def listening() -> bool:
            return "board listening" in service.log_path.read_text()

        await wait_for(listening, timeout=40)
        assert service.proc is not None and service.proc.poll() is None
    finally:
        code = service.stop()
    log = service.log_path.read_text()
    assert code == 0, log[-3000:]
    assert "permissions violation" not in log.lower(), log[-3000:]
    assert USERS["BOARD"][0] not in log


async def test_the_single_server_config_refuses_anonymous_clients(tmp_path):
    """Issue 14: deploy/nats/single.conf was anonymous like the embedded server."""
    text = (DEPLOY / "single.conf").read_text()
    for user, (_, hashed) in USERS.items():
        text = re.sub(rf'^PW_{user}: ".*"$', f'PW_{user}: "{hashed}"', text, flags=re.M)
    text = re.sub(r"^\s*store_dir: .*$", "", text, flags=re.M)
    conf = tmp_path / "single.conf"
    conf.write_text(text)
    server = EmbeddedNats(tmp_path / "store", extra_args=["-c", str(conf)]).start()
    try:
        with pytest.raises(Exception):
            nc = await nats.connect(f"nats://127.0.0.1:{server.port}", allow_reconnect=False,
                                    max_reconnect_attempts=0, connect_timeout=3)
            await nc.close()
        nc = await nats.connect(f"nats://producer:{USERS['PRODUCER'][0]}@127.0.0.1:{server.port}",
                                allow_reconnect=False, connect_timeout=5)
        await nc.close()
    finally:
        server.stop()
