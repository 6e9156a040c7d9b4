"""The gateway as a real process for integration tests, and HL7 messages timed around now."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from infusion_monitor.runtime.embedded import free_port
from tests.gateway import corpus_support
from tests.gateway.hl7msg import PCD01, PCD10, SECRET
from tests.integration.live import stop_process

ROOT = Path(__file__).resolve().parents[2]
PID = "PID|||{mrn}^^^HOSP^MR||{family}^{given}||19850412|F|||12 HIGH STREET^^SPRINGFIELD^^12345"


class GatewayProcess:
    """``python -m infusion_monitor.gateway run`` in a child process, logging JSON to a file."""

    def __init__(self, url: str, log_path: Path, mllp_port: int | None = None, http_port: int | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.url, self.log_path, self.env = url, log_path, env or {}
        self.mllp_port = mllp_port or free_port()
        self.http_port = http_port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.data_dir = log_path.parent / "gateway-data"

    def fhir_headers(self) -> dict[str, str]:
        """A FHIR client's headers: the bearer token the gateway created at its first start."""
        import tomllib

        clients = tomllib.loads((self.data_dir / "gateway" / "fhir-clients.toml").read_text())["clients"]
        return {"Content-Type": "application/fhir+json", "Authorization": f"Bearer {clients['ehr']['token']}"}

    def start(self) -> GatewayProcess:
        env = {**os.environ, "INFUSION_MONITOR_LOG_FORMAT": "json", "INFUSION_MONITOR_DATA_DIR": str(self.data_dir),
               "INFUSION_MONITOR_PATIENT_KEY_SECRET": SECRET, **self.env}
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "infusion_monitor.gateway", "run", "--nats", self.url,
             "--mllp-port", str(self.mllp_port), "--http-port", str(self.http_port)],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        return self

    async def ready(self, timeout: float = 30.0) -> GatewayProcess:
        """Both ports accept connections (they open after NATS, the streams and the state)."""
        deadline = time.monotonic() + timeout
        for port in (self.mllp_port, self.http_port):
            while True:
                assert self.proc is not None and self.proc.poll() is None, self.log_path.read_text()[-2000:]
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"gateway port {port} not open") from None
                    await asyncio.sleep(0.1)
        return self

    async def exited(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        assert self.proc is not None
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise TimeoutError("gateway did not exit")
            await asyncio.sleep(0.05)
        self.log.close()
        return self.proc.returncode

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        stop_process(self.proc)
        if not self.log.closed:
            self.log.close()
        return self.proc.returncode


def corpus_gateway(url: str, log_path: Path, **kwargs) -> GatewayProcess:
    """A gateway configured as the conformance corpus's site (``corpus/gateway.toml``)."""
    env = {"INFUSION_MONITOR_CONFIG": str(corpus_support.CONFIG), **kwargs.pop("env", {})}
    return GatewayProcess(url, log_path, env=env, **kwargs)


def corpus_messages(name: str, day: datetime | None = None) -> list[bytes]:
    """The messages of a corpus file; with ``day``, moved from the corpus day to that date."""
    folder = "fhir" if name.endswith(".json") else "hl7"
    raws = corpus_support.messages(corpus_support.CORPUS / folder / name)
    if day is not None:
        raws = [raw.replace(b"20250310", day.strftime("%Y%m%d").encode()) for raw in raws]
    return raws


def hl7_time(minutes_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).strftime("%Y%m%d%H%M%S+0000")


def patient_segment(mrn: str = "MRN12345", family: str = "DOE", given: str = "JANE") -> str:
    return PID.format(mrn=mrn, family=family, given=given)


def monitor_msg(control: str, minutes_ago: float, systolic: float, spo2: float, hr: float = 80,
                pid: str | None = None, chair: str = "CHAIR3") -> bytes:
    at = hl7_time(minutes_ago)
    lines = [
        f"MSH|^~\\&|VITALS_GW^0011223344556677^EUI-64|INFCTR|MONSVC|HOSP|{at}||ORU^R01^ORU_R01|{control}|P|2.6"
        f"|||AL|NE||UNICODE UTF-8|||{PCD01}",
        pid or patient_segment(), f"PV1||O|INFUSION^{chair}^1",
        f"OBR|1|{control}^VITALS_GW|{control}^VITALS_GW|182777000^monitoring of patient^SCT|||{at}",
        "OBX|1||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X|||||||0011223344556677^^0011223344556677^EUI-64",
        f"OBX|2|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC|1.1.1.1|{systolic}|266016^MDC_DIM_MMHG^MDC|||||R|||{at}",
        f"OBX|3|NM|147842^MDC_ECG_CARD_BEAT_RATE^MDC|1.2.1.1|{hr}|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R|||{at}",
        f"OBX|4|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.3.1.1|{spo2}|262688^MDC_DIM_PERCENT^MDC|||||R|||{at}",
        "NTE|1||Patient anxious, husband present",
    ]
    return "\r".join(lines).encode() + b"\r"


def pump_msg(control: str, minutes_ago: float, event: str = "START", order: str = "ORD555",
             pid: str | None = None, chair: str = "CHAIR3") -> bytes:
    at = hl7_time(minutes_ago)
    code = {"START": "197288^MDC_EVT_PUMP_DELIV_START^MDC", "STOP": "0^MDC_EVT_PUMP_DELIV_STOP^MDC",
            "COMP": "0^MDC_EVT_PUMP_DELIV_COMP^MDC"}[event]
    lines = [
        f"MSH|^~\\&|PUMP_GW^0012210000000001^EUI-64|PUMPVENDOR|MONSVC|HOSP|{at}||ORU^R42^ORU_R01|{control}|P|2.6"
        f"|||AL|NE|||||{PCD10}",
        pid if pid is not None else patient_segment(), f"PV1||O|INFUSION^{chair}^1",
        f"OBR|1|{order}^EMR|{control}^PUMP_GW|NTZ300^natalizumab 300 mg|||{at}",
        "OBX|1||70049^MDC_DEV_PUMP_INFUS_LVP_MDS^MDC|1.0.0.0|||||||X|||||||0012210000000001^^0012210000000001^EUI-64",
        f"OBX|2|CWE|0^MDC_ATTR_EVT_COND^MDC|1.0.0.2|{code}||||||R",
        "OBX|18|ST|184514^MDC_DRUG_NAME_LABEL^MDC|1.1.2.9|Natalizumab||||||R",
    ]
    return "\r".join(lines).encode() + b"\r"


def ack_code(ack: bytes) -> str:
    for seg in ack.split(b"\r"):
        if seg.startswith(b"MSA|"):
            return seg.split(b"|")[1].decode()
    return ""
