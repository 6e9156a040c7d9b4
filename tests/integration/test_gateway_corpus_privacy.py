"""The whole conformance corpus through a running gateway and monitor (issue 15, privacy): every
HL7 message over MLLP, every FHIR body over HTTP, with the corpus site's configuration. Every
name, record number, address, phone number and free text the corpus files carry is then searched
for in every stream and state bucket (the gateway's own raw dead letters excepted: operators only)
and in every line of both services' JSON logs. Nothing may appear."""

from __future__ import annotations

import json

import httpx
import pytest

from infusion_monitor.gateway.mllp import MllpClient
from tests.gateway import corpus_support as C
from tests.gateway.live import ack_code, corpus_gateway
from tests.integration.live import MonitorProcess, connect, consumer_caught_up, stream_messages, wait_for

pytestmark = pytest.mark.integration


async def test_no_identity_from_the_corpus_in_any_event_state_or_log(nats_server, tmp_path):
    secrets = {s for path in C.files() for s in C.identifying_strings(path)}
    assert len(secrets) >= 40 and {"BEISPIEL", "MRN10001", "Fhirsen", "PATID6001", "EF20931"} <= secrets
    monitor = MonitorProcess(nats_server.url, tmp_path / "monitor.log").start()
    gateway = corpus_gateway(nats_server.url, tmp_path / "gateway.log").start()
    nc, js = await connect(nats_server.url)
    acks: dict[str, int] = {}
    try:
        await gateway.ready()
        async with MllpClient("127.0.0.1", gateway.mllp_port, timeout=30) as client, \
                httpx.AsyncClient(timeout=30) as http:
            for path in C.files():
                for raw in C.messages(path):
                    if path.suffix == ".json":
                        resp = await http.post(f"http://127.0.0.1:{gateway.http_port}/fhir", content=raw,
                                               headers=gateway.fhir_headers())
                        code = str(resp.status_code)
                    else:
                        code = ack_code(await client.send(raw))
                    acks[code] = acks.get(code, 0) + 1
        assert acks["AA"] >= 45 and acks["AE"] >= 5 and acks["AR"] >= 1 and acks["200"] == 5
        await wait_for(lambda: consumer_caught_up(js), timeout=60)
        streams = [s.config.name for s in await js.streams_info()]
        assert {"IM_IN", "IM_GW_DLQ", "KV_im-state-gateway", "KV_im-state-gateway-msgids"} <= set(streams)
        for stream in streams:
            blob = "".join((m.data or b"").decode("utf-8", "replace") + json.dumps(dict(m.headers or {}))
                           for m in await stream_messages(js, stream))
            if stream == "IM_GW_DLQ":
                assert "BEISPIEL" in blob  # raw messages live only here (operators only)
                continue
            present = sorted(s for s in secrets if s in blob)
            assert present == [], f"{stream} holds {present}"
    finally:
        await nc.close()
        gateway.stop()
        monitor.stop()
    for name in ("gateway.log", "monitor.log"):
        text = (tmp_path / name).read_text()
        assert text.count("\n") > 20, name
        for number, line in enumerate(text.splitlines(), start=1):
            present = sorted(s for s in secrets if s in line)
            assert present == [], f"{name} line {number} carries {present}: {line[:300]}"
