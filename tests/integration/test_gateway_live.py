"""The gateway against real sockets, a real nats-server and the real monitor process
(issue #8): HL7 feeds to alerts, ACK semantics, retransmission, dead letters, crash before the
ACK, privacy, and FHIR giving the same alerts as HL7."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from infusion_monitor.gateway.mllp import MllpClient
from infusion_monitor.gateway.sender import send_files
from tests.gateway import fhirmsg as F
from tests.gateway.corpus_support import key_of
from tests.gateway.live import (
    GatewayProcess, ack_code, corpus_gateway, corpus_messages, hl7_time, monitor_msg, patient_segment, pump_msg,
)
from tests.integration.live import MonitorProcess, alerts, connect, stream_messages, wait_for

pytestmark = pytest.mark.integration

IDENTITY = ("DOE", "JANE", "MRN12345", "HIGH STREET", "SPRINGFIELD", "anxious", "husband", "itching")


@pytest.fixture
def monitor(nats_server, tmp_path):
    proc = MonitorProcess(nats_server.url, tmp_path / "monitor.log").start()
    yield proc
    proc.stop()


@pytest.fixture
async def gateway(nats_server, tmp_path):
    proc = GatewayProcess(nats_server.url, tmp_path / "gateway.log").start()
    try:
        await proc.ready()
        yield proc
    finally:
        proc.stop()


async def send_all(port: int, messages: list[bytes]) -> list[str]:
    async with MllpClient("127.0.0.1", port, timeout=30) as client:
        return [ack_code(await client.send(m)) for m in messages]


async def inbound(js) -> list[dict]:
    return [json.loads(m.data) for m in await stream_messages(js, "IM_IN")]


async def critical_hypersensitivity(js, patient=None):
    found = [a for a in await alerts(js) if a["type"] == "alert.raised" and a["kind"] == "discontinue.hypersensitivity"
             and a["severity"] == "critical" and (patient is None or a["patient_id"] == patient)]
    return found[0] if found else None


def anaphylaxis_feed(prefix: str = "A") -> list[bytes]:
    return [
        monitor_msg(f"{prefix}GW1", 6, systolic=128, spo2=98),
        pump_msg(f"{prefix}PG1", 4, "START"),
        monitor_msg(f"{prefix}GW2", 0.1, systolic=84, spo2=91, hr=128),
    ]


async def test_monitor_and_pump_feeds_raise_the_critical_hypersensitivity_alert(nats_server, monitor, gateway):
    nc, js = await connect(nats_server.url)
    try:
        assert await send_all(gateway.mllp_port, anaphylaxis_feed()) == ["AA", "AA", "AA"]
        events = await inbound(js)  # AA means stored: no waiting needed
        assert [e["type"] for e in events] == ["vitals.recorded", "infusion.started", "vitals.recorded"]
        session = events[1]["session_id"]
        found = await wait_for(lambda: critical_hypersensitivity(js), timeout=30)
        assert found["session_id"] == session and found["patient_id"] == events[0]["patient_id"]
        assert {"R7", "R8"} <= set(found["evidence"]["rules_met"])
    finally:
        await nc.close()


async def test_same_message_twice_yields_one_set_of_events(nats_server, gateway):
    nc, js = await connect(nats_server.url)
    try:
        vitals = monitor_msg("DUP1", 1, systolic=120, spo2=97)
        start = pump_msg("DUP2", 1, "START")
        codes = await send_all(gateway.mllp_port, [vitals, start, vitals, start])
        codes += await send_all(gateway.mllp_port, [vitals])  # again on a new connection
        assert codes == ["AA"] * 5
        events = await inbound(js)
        assert [e["type"] for e in events] == ["vitals.recorded", "infusion.started"]
    finally:
        await nc.close()


async def test_malformed_gets_ar_unmappable_gets_ae_and_both_land_in_gateway_dead_letters(nats_server, gateway):
    nc, js = await connect(nats_server.url)
    try:
        garbage = b"this is not an HL7 message\r"
        no_patient = monitor_msg("NOPID1", 1, systolic=120, spo2=97, pid="PID|||||DOE^JANE")
        async with MllpClient("127.0.0.1", gateway.mllp_port) as client:
            ar = (await client.send(garbage)).decode()
            ae = (await client.send(no_patient)).decode()
            retransmitted = ack_code(await client.send(no_patient))
            ok = ack_code(await client.send(monitor_msg("OK1", 1, systolic=120, spo2=97)))
        assert "\rMSA|AR|" in ar and "\rERR||MSH^1|" in ar
        assert "\rMSA|AE|NOPID1|" in ae and "\rERR||PID^1^3^1|101^Required field missing^HL70357|E" in ae
        assert (retransmitted, ok) == ("AE", "AA")
        letters = await stream_messages(js, "IM_GW_DLQ")
        assert [m.data for m in letters] == [garbage, no_patient]  # the retransmission is deduplicated
        assert [(m.headers["Im-Kind"], m.headers["Im-Field"]) for m in letters] == [("AR", "MSH"), ("AE", "PID-3")]
        assert [e["type"] for e in await inbound(js)] == ["vitals.recorded"]  # the rest keeps flowing
    finally:
        await nc.close()


async def test_gateway_killed_before_the_ack_is_retried_by_the_sender_nothing_lost_or_doubled(nats_server, tmp_path):
    gateway = GatewayProcess(nats_server.url, tmp_path / "gw1.log",
                             env={"INFUSION_MONITOR_GATEWAY_FAULT_EXIT_BEFORE_ACK": "KILL2"}).start()
    files = []
    for n, raw in enumerate([monitor_msg("KILL1", 3, systolic=125, spo2=98), pump_msg("KILL2", 2, "START"),
                             monitor_msg("KILL3", 1, systolic=122, spo2=97)]):
        path = tmp_path / f"{n}.hl7"
        path.write_bytes(raw.replace(b"\r", b"\n"))  # files with \n line ends, as people write them
        files.append(path)
    restarted = None
    nc, js = await connect(nats_server.url)
    try:
        await gateway.ready()
        out, err = io.StringIO(), io.StringIO()
        sending = asyncio.create_task(send_files(files, "127.0.0.1", gateway.mllp_port, timeout=10, retries=30,
                                                 out=out, err=err))
        assert await gateway.exited() == 75  # stored KILL2's events, died before answering
        restarted = GatewayProcess(nats_server.url, tmp_path / "gw2.log", mllp_port=gateway.mllp_port,
                                   http_port=gateway.http_port).start()
        assert await asyncio.wait_for(sending, 120) == 0
        printed = out.getvalue()
        assert printed.count(": AA") == 3 and "MSA|AA|KILL2" in printed
        assert "retransmitting" in err.getvalue()
        events = await inbound(js)
        assert [e["type"] for e in events] == ["vitals.recorded", "infusion.started", "vitals.recorded"]
    finally:
        await nc.close()
        gateway.stop()
        if restarted is not None:
            restarted.stop()


async def test_no_identity_outside_the_gateway_dead_letters_or_in_any_log(nats_server, monitor, gateway, tmp_path):
    nc, js = await connect(nats_server.url)
    try:
        adt = (f"MSH|^~\\&|REGADT|HOSP|MONSVC|HOSP|{hl7_time(30)}||ADT^A04^ADT_A01|PRIV0|P|2.5.1\r"
               f"EVN|A04|{hl7_time(30)}\r{patient_segment()}\rPV1||O|INFUSION^CHAIR3^1\r").encode()
        lab = (f"MSH|^~\\&|LIS|HOSPLAB|MONSVC|HOSP|{hl7_time(1)}||ORU^R01^ORU_R01|PRIV9|P|2.5.1\r"
               f"{patient_segment()}\rOBR|1|PLC1^EMR|FIL1^LIS|58012-6^Ab^LN|||{hl7_time(20)}\r"
               "OBX|1|ST|58012-6^Natalizumab Ab^LN||Not detected||||||F\rNTE|1||Specimen itching label\r").encode()
        rejected = monitor_msg("PRIVX", 1, systolic=120, spo2=97).replace(b"266016^MDC_DIM_MMHG", b"999^MDC_DIM_CMH2O")
        codes = await send_all(gateway.mllp_port, [adt, *anaphylaxis_feed("P"), lab, rejected])
        assert codes == ["AA"] * 5 + ["AE"]
        await wait_for(lambda: critical_hypersensitivity(js), timeout=30)
        resp = httpx.post(f"http://127.0.0.1:{gateway.http_port}/fhir", content=F.body(F.patient(mrn="MRN12345")),
                          headers=gateway.fhir_headers(), timeout=30)
        assert resp.status_code == 200
        streams = [s.config.name for s in await js.streams_info()]
        assert "IM_GW_DLQ" in streams and "IM_IN" in streams and "KV_im-state-gateway" in streams
        for stream in streams:
            blob = b"".join((m.data or b"") + json.dumps(dict(m.headers or {})).encode()
                            for m in await stream_messages(js, stream)).decode("utf-8", "replace")
            present = [word for word in IDENTITY if word in blob]
            if stream == "IM_GW_DLQ":
                assert "DOE" in blob  # the only place raw messages live
            else:
                assert present == [], f"{stream} holds {present}"
    finally:
        await nc.close()
    assert gateway.stop() == 0  # a clean stop on SIGTERM
    monitor.stop()
    for log in (tmp_path / "gateway.log", tmp_path / "monitor.log"):
        text = log.read_text()
        assert "control_id" in text or log.name == "monitor.log"
        assert [word for word in IDENTITY if word in text] == [], log.name


async def test_fhir_transaction_bundle_gives_the_same_alerts_as_the_hl7_feed(nats_server, monitor, gateway):
    nc, js = await connect(nats_server.url)
    try:
        assert await send_all(gateway.mllp_port, anaphylaxis_feed("H")) == ["AA"] * 3
        hl7_patient = (await inbound(js))[0]["patient_id"]

        def iso(minutes_ago: float) -> str:
            return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat(timespec="seconds")

        subject = "urn:uuid:patient-1"
        bundle = F.bundle(
            F.patient(mrn="MRN99999"),
            F.bp(iso(6), 128, 80, subject, oid="bp0"), F.vital("59408-5", iso(6), 98, "%", subject, oid="s0"),
            F.vital("8867-4", iso(6), 80, "/min", subject, oid="h0"),
            F.administration("in-progress", iso(4), subject=subject),
            F.bp(iso(0.1), 84, 60, subject, oid="bp1"), F.vital("59408-5", iso(0.1), 91, "%", subject, oid="s1"),
            F.vital("8867-4", iso(0.1), 128, "/min", subject, oid="h1"),
        )
        async with httpx.AsyncClient(timeout=30) as client:
            resp = await client.post(f"http://127.0.0.1:{gateway.http_port}/fhir", content=F.body(bundle),
                                     headers=gateway.fhir_headers())
        assert resp.status_code == 200 and resp.json()["resourceType"] == "OperationOutcome"
        assert resp.json()["issue"][0]["severity"] == "information"
        fhir_patient = [e for e in await inbound(js) if e["type"] == "patient.profile"][0]["patient_id"]
        await wait_for(lambda: critical_hypersensitivity(js, fhir_patient), timeout=30)
        await wait_for(lambda: critical_hypersensitivity(js, hl7_patient), timeout=30)

        async def summary(patient):
            return sorted((a["kind"], a["severity"], a["rule"]) for a in await alerts(js)
                          if a["type"] == "alert.raised" and a["patient_id"] == patient and a["rule"].startswith("R"))
        assert await summary(fhir_patient) == await summary(hl7_patient)
    finally:
        await nc.close()


async def test_fhir_invalid_resource_gets_an_operation_outcome_naming_the_element(nats_server, gateway):
    nc, js = await connect(nats_server.url)
    try:
        bad = F.vital("8867-4", "2025-03-01T10:00:00+00:00", 72, "/min")
        bad["valueQuantity"] = {"value": "fast"}
        async with httpx.AsyncClient(timeout=30) as client:
            resp = await client.post(f"http://127.0.0.1:{gateway.http_port}/fhir/Observation", content=F.body(bad),
                                     headers=gateway.fhir_headers())
            unmapped = await client.post(f"http://127.0.0.1:{gateway.http_port}/fhir",
                                         content=F.body({**F.vital("8867-4", "2025-03-01T10:00:00+00:00", 72, "/min"),
                                                         "subject": {"reference": "Patient/unknown"}}),
                                         headers=gateway.fhir_headers())
        assert resp.status_code == 400
        outcome = resp.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["severity"] == "error"
        assert outcome["issue"][0]["expression"] == ["Observation.valueQuantity.value"]
        assert unmapped.status_code == 422 and unmapped.json()["issue"][0]["expression"] == ["Observation.subject"]
        letters = await stream_messages(js, "IM_GW_DLQ")
        assert [m.headers["Im-Field"] for m in letters] == ["Observation.valueQuantity.value", "Observation.subject"]
        assert json.loads(letters[0].data) == bad
        assert await inbound(js) == []
    finally:
        await nc.close()


# -- issue 15: the conventions vendors send, over real sockets (corpus files, corpus site config) --

@pytest.fixture
async def site_gateway(nats_server, tmp_path):
    """The gateway configured as the corpus site: Berlin, per-sender conventions."""
    proc = corpus_gateway(nats_server.url, tmp_path / "gateway.log").start()
    try:
        await proc.ready()
        yield proc
    finally:
        proc.stop()


def log_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


async def test_two_monitors_of_one_model_with_the_same_control_id_both_arrive(nats_server, site_gateway):
    nc, js = await connect(nats_server.url)
    try:
        codes = await send_all(site_gateway.mllp_port, corpus_messages("11-two-monitors-same-model-same-control-id.hl7"))
        assert codes == ["AA", "AA"]
        events = await inbound(js)
        assert sorted((e["patient_id"], e["spo2_pct"]) for e in events) == sorted(
            [(key_of("HOSP|MRN10002"), 97.0), (key_of("HOSP|MRN10004"), 86.0)])  # the hypoxaemic one too
    finally:
        await nc.close()


async def test_retransmission_is_a_logged_duplicate_and_a_reused_control_id_is_refused_even_after_a_restart(
        nats_server, tmp_path):
    first, again, reused = corpus_messages("12-monitor-reboot-reuses-control-id.hl7")
    gateway = corpus_gateway(nats_server.url, tmp_path / "gw1.log").start()
    restarted = None
    nc, js = await connect(nats_server.url)
    try:
        await gateway.ready()
        assert await send_all(gateway.mllp_port, [first, again, reused]) == ["AA", "AA", "AE"]
        gateway.stop()
        restarted = corpus_gateway(nats_server.url, tmp_path / "gw2.log", mllp_port=gateway.mllp_port).start()
        await restarted.ready()
        async with MllpClient("127.0.0.1", restarted.mllp_port) as client:  # the ledger outlives the process
            ack = (await client.send(reused)).decode()
        assert "\rMSA|AE|2|conflicting control id" in ack and "\rERR||MSH^1^10^1|205^" in ack
        assert [e["spo2_pct"] for e in await inbound(js)] == [96.0]  # nothing of the reused id stored
        [letter] = await stream_messages(js, "IM_GW_DLQ")
        stored, received = letter.headers["Im-Digest-Stored"], letter.headers["Im-Digest-Received"]
        assert stored != received and len(stored) == len(received) == 64
        lines = log_lines(tmp_path / "gw1.log")
        duplicate = [line for line in lines if line.get("event", "").startswith("hl7 message duplicate")]
        assert [(d["control_id"], d["duplicates"], d["events"]) for d in duplicate] == [("2", 1, 0)]
        assert not any(line.get("event") == "hl7 message stored" and line.get("duplicates") for line in lines)
        conflicts = [line for line in lines if line.get("event") == "hl7 message conflicting control id"]
        assert [(c["digest_stored"], c["digest_received"]) for c in conflicts] == [(stored, received)]
    finally:
        await nc.close()
        gateway.stop()
        if restarted is not None:
            restarted.stop()


async def test_a_utc_clocked_feed_in_a_berlin_site_gives_the_right_instants(nats_server, site_gateway):
    nc, js = await connect(nats_server.url)
    try:
        utc_gateway = corpus_messages("13-utc-gateway-berlin-site.hl7")  # MSH-7 +0000, OBX-14 bare
        no_offsets = corpus_messages("15-site-zone-without-offsets.hl7")  # no offset anywhere: Berlin
        assert await send_all(site_gateway.mllp_port, utc_gateway + no_offsets) == ["AA", "AA"]
        assert [e["occurred_at"] for e in await inbound(js)] == ["2025-03-10T09:29:30Z", "2025-03-10T08:20:00Z"]
    finally:
        await nc.close()


async def test_an_annotated_unit_keeps_the_row_and_one_bad_row_is_refused_alone(nats_server, site_gateway):
    nc, js = await connect(nats_server.url)
    try:
        [raw] = corpus_messages("18-annotated-units-beside-a-bad-row.hl7")
        async with MllpClient("127.0.0.1", site_gateway.mllp_port) as client:
            ack = (await client.send(raw)).decode()
        assert "\rMSA|AE|GW200018|" in ack and "\rERR||OBX^6^6^1|103^" in ack
        [event] = await inbound(js)
        assert (event["heart_rate_bpm"], event["respiratory_rate_bpm"], event["systolic_mmhg"]) == (112.0, 24.0, 96.0)
        assert "temperature_c" not in event
        [letter] = await stream_messages(js, "IM_GW_DLQ")  # the refused row stays inspectable
        assert letter.data == raw and letter.headers["Im-Field"] == "OBX[6]-6"
    finally:
        await nc.close()


async def test_an_si_liver_panel_with_molar_bilirubin_feeds_hys_law_end_to_end(nats_server, monitor, site_gateway):
    nc, js = await connect(nats_server.url)
    try:
        yesterday = datetime.now(UTC) - timedelta(days=1)
        panel = corpus_messages("61-si-liver-panel-14631-6.hl7", day=yesterday)
        assert await send_all(site_gateway.mllp_port, panel) == ["AA"]
        assert "14631-6" in {e["code"] for e in await inbound(js)}
        patient = key_of("HOSP|MRN10001")

        async def liver_injury():
            found = [a for a in await alerts(js) if a["type"] == "alert.raised" and a["patient_id"] == patient
                     and a["kind"] == "discontinue.liver_injury"]
            return found[0] if found else None

        alert = await wait_for(liver_injury, timeout=30)
        assert alert["rule"] == "L6" and alert["severity"] == "critical"
        assert alert["evidence"]["bilirubin_umol_l"]["value"] == 55.0
    finally:
        await nc.close()


async def test_a_pi_feed_is_refused_until_configured_then_works(nats_server, tmp_path):
    [raw] = corpus_messages("24-pi-identifier-configured.hl7")
    plain = GatewayProcess(nats_server.url, tmp_path / "gw-plain.log").start()
    configured = None
    nc, js = await connect(nats_server.url)
    try:
        await plain.ready()
        assert await send_all(plain.mllp_port, [raw]) == ["AE"]  # PI is not a record number by default
        plain.stop()
        configured = corpus_gateway(nats_server.url, tmp_path / "gw-site.log").start()
        await configured.ready()
        assert await send_all(configured.mllp_port, [raw]) == ["AA"]
        [event] = await inbound(js)
        assert event["patient_id"] == key_of("HOSP|MRN10001")  # the same key as the patient's MR
    finally:
        await nc.close()
        plain.stop()
        if configured is not None:
            configured.stop()


async def test_a_sender_clock_disagreeing_with_its_zone_is_warned_once_per_connection(nats_server, site_gateway,
                                                                                    tmp_path):
    [raw] = corpus_messages("16-zone-mismatch-warning.hl7")  # MSH-7 +0100 from a sender configured as UTC
    again = raw.replace(b"|4|P|2.6|", b"|40|P|2.6|").replace(b"|94|", b"|93|")
    assert await send_all(site_gateway.mllp_port, [raw, again]) == ["AA", "AA"]
    assert await send_all(site_gateway.mllp_port, [raw]) == ["AA"]  # a new connection (a retransmission)
    warnings = [line for line in log_lines(tmp_path / "gateway.log") if line.get("event") == "hl7 message warning"]
    assert [(w["control_id"], w["warning"].split(":")[0]) for w in warnings] == [
        ("4", "zone-mismatch"), ("4", "zone-mismatch")]
