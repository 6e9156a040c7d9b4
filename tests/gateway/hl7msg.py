"""Terse HL7 v2 message builders for gateway tests (segments joined with ``\\r``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from infusion_monitor.gateway.config import GatewayConfig

SECRET = "test-secret-0123456789"
PCD01 = "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO"
PCD10 = "IHE_PCD_010^IHE PCD^1.3.6.1.4.1.19376.1.6.4.10^ISO"
PID = "PID|||MRN12345^^^HOSP^MR||DOE^JANE||19850412|F"
PV1 = "PV1||O|INFUSION^CHAIR3^1"
T0 = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)


def config(**overrides) -> GatewayConfig:
    return GatewayConfig(patient_key_secret=SECRET, **overrides)


def ts(minutes: float = 0, base: datetime = T0) -> str:
    """An HL7 timestamp with a +0000 offset, ``minutes`` after T0."""
    return (base + timedelta(minutes=minutes)).strftime("%Y%m%d%H%M%S+0000")


def msh(kind: str, control: str, sender: str = "VITALS_GW^0011223344556677^EUI-64", at: str | None = None,
        profile: str = "", charset: str = "UNICODE UTF-8", version: str = "2.6") -> str:
    return (f"MSH|^~\\&|{sender}|INFCTR|MONSVC|HOSP|{ts() if at is None else at}||{kind}|{control}|P|{version}"
            f"|||AL|NE||{charset}|||{profile}")


def obx(n: int, code: str, value: str, unit: str = "", status: str = "R", at: str = "", kind: str = "NM",
        rng: str = "") -> str:
    return f"OBX|{n}|{kind}|{code}|1.{n}|{value}|{unit}|{rng}||||{status}|||{at}"


def vitals(*observations: str, control: str = "GW1", pid: str = PID, obr_at: str | None = None,
           msh_at: str | None = None, profile: str = PCD01, sep: str = "\r") -> bytes:
    lines = [msh("ORU^R01^ORU_R01", control, at=msh_at, profile=profile), pid, PV1,
             f"OBR|1|{control}^VITALS_GW|{control}^VITALS_GW|182777000^monitoring of patient^SCT|||"
             f"{ts() if obr_at is None else obr_at}",
             "OBX|1||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X|||||||0011223344556677^^0011223344556677^EUI-64",
             *observations]
    return sep.join(line for line in lines if line).encode() + sep.encode()


def pump(event: str, control: str, minutes: float, order: str = "ORD555", pid: str = PID, pv1: str = PV1,
         drug: str = "Natalizumab", order_text: str = "natalizumab 300 mg", status: str = "delivering",
         device: str = "0012210000000001") -> bytes:
    code = {"start": "197288^MDC_EVT_PUMP_DELIV_START^MDC", "stop": "0^MDC_EVT_PUMP_DELIV_STOP^MDC",
            "complete": "0^MDC_EVT_PUMP_DELIV_COMP^MDC", "alarm": "0^MDC_EVT_ALARM^MDC"}[event]
    lines = [msh("ORU^R42^ORU_R01", control, sender=f"PUMP_GW^{device}^EUI-64", at=ts(minutes), profile=PCD10),
             pid, pv1,
             f"OBR|1|{order}^EMR|{control}^PUMP_GW|NTZ300^{order_text}|||{ts(minutes)}",
             f"OBX|1||70049^MDC_DEV_PUMP_INFUS_LVP_MDS^MDC|1.0.0.0|||||||X|||||||{device}^^{device}^EUI-64",
             f"OBX|2|CWE|0^MDC_ATTR_EVT_COND^MDC|1.0.0.2|{code}||||||R",
             f"OBX|10|CWE|0^MDC_DEV_PUMP_CURRENT_DELIVERY_STATUS^MDC|1.1.2.1|^pump-delivery-status-{status}||||||R",
             f"OBX|18|ST|184514^MDC_DRUG_NAME_LABEL^MDC|1.1.2.9|{drug}||||||R" if drug else ""]
    return "\r".join(line for line in lines if line).encode() + b"\r"


def lab(*observations: str, control: str = "LAB1", collected: str | None = None, resulted: str | None = None,
        filler: str = "FIL1^LIS", status: str = "F", extra: tuple[str, ...] = ()) -> bytes:
    lines = [msh("ORU^R01^ORU_R01", control, sender="LIS", version="2.5.1"), PID.replace("PID|", "PID|1", 1),
             f"OBR|1|PLC1^EMR|{filler}|57021-8^CBC^LN|||{ts(-120) if collected is None else collected}"
             f"|||||||||||||||{ts() if resulted is None else resulted}|||{status}",
             *observations, *extra]
    return "\r".join(lines).encode() + b"\r"


def adt(trigger: str, control: str = "ADT1", pid: str = PID + "|||12 HIGH STREET^^SPRINGFIELD") -> bytes:
    lines = [msh(f"ADT^{trigger}^ADT_A01", control, sender="REGADT", version="2.5.1"), f"EVN|{trigger}|{ts(-60)}",
             pid, PV1]
    return "\r".join(lines).encode() + b"\r"
