"""Issue 14, the gateway: MLLP and FHIR accepted anything from anyone, and 3,000 idle MLLP
connections were all held for an hour. Against the running gateway (real nats-server, real
sockets and HTTP on loopback): connections from addresses not allowed, per-source and total
caps, the idle timeout, MLLP over TLS with client certificates, per-sender address and
certificate allow-lists, unknown senders, FHIR bearer tokens and mutual TLS."""

from __future__ import annotations

import asyncio
import ssl

import httpx
import pytest

from infusion_monitor.gateway.app import run_gateway
from infusion_monitor.gateway.mllp import MllpClient
from infusion_monitor.runtime.settings import Settings
from tests.gateway.fhirmsg import body as fhir_body
from tests.gateway.fhirmsg import patient as fhir_patient
from tests.gateway.hl7msg import config as gateway_config
from tests.gateway.live import ack_code, monitor_msg
from tests.integration.live import connect, stream_messages
from tests.integration.test_security import make_certificates

pytestmark = pytest.mark.integration


def _settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "var")


async def _inbound(js) -> int:
    return len(await stream_messages(js, "IM_IN"))


async def _held_open(port: int, n: int, wait: float = 0.5) -> list[asyncio.StreamWriter]:
    """Open ``n`` idle connections; those the gateway has not closed after ``wait`` seconds."""
    pairs = [await asyncio.open_connection("127.0.0.1", port) for _ in range(n)]
    await asyncio.sleep(wait)
    held = []
    for reader, writer in pairs:
        try:
            closed = await asyncio.wait_for(reader.read(1), 0.05) == b""
        except TimeoutError:
            closed = False
        if closed:
            writer.close()
        else:
            held.append(writer)
    return held


async def test_connections_from_addresses_not_allowed_are_closed_unread(nats_server, tmp_path):
    config = gateway_config(mllp_port=0, http_port=0, mllp_peers=["10.9.9.0/24"])
    nc, js = await connect(nats_server.url)
    try:
        async with run_gateway(_settings(tmp_path), nats_server.url, config) as gateway:
            with pytest.raises((ConnectionError, asyncio.IncompleteReadError, TimeoutError, OSError)):
                async with MllpClient("127.0.0.1", gateway.mllp_port, timeout=5) as client:
                    await client.send(monitor_msg("SEC1", 1, systolic=80, spo2=88))
            assert await _inbound(js) == 0
    finally:
        await nc.close()


async def test_idle_connections_are_capped_per_source_and_closed_after_the_idle_timeout(nats_server, tmp_path):
    """The attack held 3,000 idle connections (no cap, 1 h idle timeout); here 300 try."""
    config = gateway_config(mllp_port=0, http_port=0, max_connections_per_source=8, idle_timeout_s=1.5)
    async with run_gateway(_settings(tmp_path), nats_server.url, config) as gateway:
        held = await _held_open(gateway.mllp_port, 300)
        assert len(held) == 8
        await asyncio.sleep(2.5)  # past the idle timeout
        for writer in held:
            assert writer.transport.is_closing() or await _eof(writer)
        # after the idle ones are gone, a sender gets through
        async with MllpClient("127.0.0.1", gateway.mllp_port, timeout=10) as client:
            assert ack_code(await client.send(monitor_msg("SEC2", 1, systolic=120, spo2=97))) == "AA"
        for writer in held:
            writer.close()


async def _eof(writer: asyncio.StreamWriter) -> bool:
    reader = writer._protocol._stream_reader  # type: ignore[attr-defined]
    try:
        return await asyncio.wait_for(reader.read(1), 1.0) == b""
    except (TimeoutError, ConnectionError):
        return False


def _sender_toml(**entry: object) -> dict:
    return {"senders": [{"application": "VITALS_GW", **entry}]}


@pytest.mark.parametrize(("changes", "expected"), [
    ({}, "AA"),  # no allow-list for this sender: any allowed connection
    (_sender_toml(peers=["127.0.0.1"]), "AA"),
    (_sender_toml(peers=["10.0.0.5"]), "AR"),  # the sender is only allowed from its own address
    ({"require_known_sender": True}, "AR"),  # nobody names VITALS_GW
    ({"require_known_sender": True, **_sender_toml()}, "AA"),
])
async def test_per_sender_address_allow_lists(nats_server, tmp_path, changes, expected):
    config = gateway_config(mllp_port=0, http_port=0, **changes)
    nc, js = await connect(nats_server.url)
    try:
        async with run_gateway(_settings(tmp_path), nats_server.url, config) as gateway:
            async with MllpClient("127.0.0.1", gateway.mllp_port, timeout=10) as client:
                assert ack_code(await client.send(monitor_msg("SEC3", 1, systolic=80, spo2=88))) == expected
        if expected == "AR":
            assert await _inbound(js) == 0
            (letter,) = await stream_messages(js, "IM_GW_DLQ")  # refused input is kept, with the reason
            assert "not" in letter.headers["Im-Reason"] and letter.headers["Im-Kind"] == "AR"
    finally:
        await nc.close()


async def test_mllp_over_tls_with_client_certificates_per_sender(nats_server, tmp_path):
    certs = make_certificates(tmp_path / "tls")
    tls = {"mllp_tls_cert": str(certs["server-cert"]), "mllp_tls_key": str(certs["server-key"]),
           "mllp_tls_client_ca": str(certs["ca"])}

    def client_context(with_cert: bool) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(certs["ca"]))
        if with_cert:
            context.load_cert_chain(str(certs["client-cert"]), str(certs["client-key"]))
        return context

    for names, expected in ((["im-test-client"], "AA"), (["monitor-gw-07"], "AR")):
        config = gateway_config(mllp_port=0, http_port=0, **tls, **_sender_toml(client_names=names))
        async with run_gateway(_settings(tmp_path), nats_server.url, config) as gateway:
            async with MllpClient("127.0.0.1", gateway.mllp_port, timeout=10, ssl=client_context(True)) as client:
                assert ack_code(await client.send(monitor_msg(f"TLS-{expected}", 1, systolic=120, spo2=97))) == expected
            for bad in (client_context(False), None):  # no client certificate; plain text
                with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError, TimeoutError, OSError)):
                    async with MllpClient("127.0.0.1", gateway.mllp_port, timeout=5, ssl=bad) as client:
                        await client.send(monitor_msg("TLS-X", 1, systolic=120, spo2=97))


async def test_fhir_needs_a_bearer_token(nats_server, tmp_path):
    import tomllib

    config = gateway_config(mllp_port=0, http_port=0)
    nc, js = await connect(nats_server.url)
    try:
        async with run_gateway(_settings(tmp_path), nats_server.url, config) as gateway:
            path = tmp_path / "var" / "gateway" / "fhir-clients.toml"
            assert path.stat().st_mode & 0o777 == 0o600
            token = tomllib.loads(path.read_text())["clients"]["ehr"]["token"]
            url = f"http://127.0.0.1:{gateway.http_port}/fhir"
            body = fhir_body(fhir_patient(mrn="MRN777"))
            async with httpx.AsyncClient(timeout=10, headers={"Content-Type": "application/fhir+json"}) as http:
                none = await http.post(url, content=body)
                wrong = await http.post(url, content=body, headers={"Authorization": "Bearer " + "x" * 43})
                assert (none.status_code, wrong.status_code) == (401, 401)
                assert none.json()["issue"][0]["code"] == "security"
                assert await _inbound(js) == 0
                ok = await http.post(url, content=body, headers={"Authorization": f"Bearer {token}"})
                assert ok.status_code == 200
            assert await _inbound(js) == 1
    finally:
        await nc.close()


async def test_fhir_over_mutual_tls(nats_server, tmp_path):
    certs = make_certificates(tmp_path / "tls")
    config = gateway_config(mllp_port=0, http_port=0, http_tls_cert=str(certs["server-cert"]),
                            http_tls_key=str(certs["server-key"]), http_tls_client_ca=str(certs["ca"]))
    async with run_gateway(_settings(tmp_path), nats_server.url, config) as gateway:
        url = f"https://127.0.0.1:{gateway.http_port}/fhir"
        body = fhir_body(fhir_patient(mrn="MRN778"))
        with_cert = ssl.create_default_context(cafile=str(certs["ca"]))
        with_cert.load_cert_chain(str(certs["client-cert"]), str(certs["client-key"]))
        async with httpx.AsyncClient(verify=with_cert, timeout=10) as http:
            ok = await http.post(url, content=body, headers={"Content-Type": "application/fhir+json"})
            assert ok.status_code == 200  # the certificate is the credential
        without = ssl.create_default_context(cafile=str(certs["ca"]))
        with pytest.raises(httpx.HTTPError):
            async with httpx.AsyncClient(verify=without, timeout=10) as http:
                await http.post(url, content=body, headers={"Content-Type": "application/fhir+json"})


def test_the_shipped_gateway_settings_are_the_secure_ones():
    """deploy/gateway.toml: TLS with client certificates, peers, per-sender allow-lists, known
    senders only; no insecure choice."""
    from pathlib import Path

    from infusion_monitor.gateway.app import insecure_choices
    from infusion_monitor.gateway.config import GatewayConfig

    root = Path(__file__).resolve().parents[2]
    config = GatewayConfig.load({"INFUSION_MONITOR_CONFIG": str(root / "deploy" / "gateway.toml"),
                                 "INFUSION_MONITOR_PATIENT_KEY_SECRET": "s" * 32})
    assert insecure_choices(config) == []
    assert config.mllp_tls and config.mllp_tls.client_ca and config.http_tls and config.require_known_sender
    assert all(s.peers or s.client_names for s in config.senders)
    default = gateway_config()  # and the defaults: loopback, caps, a short idle timeout, tokens
    assert insecure_choices(default) == [] and default.idle_timeout_s <= 300 and default.fhir_auth == "token"
