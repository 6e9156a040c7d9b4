"""A loopback alarm-manager simulator for the tests: it takes PCD-04 over MLLP on 127.0.0.1,
answers each with an ACK as scripted (``AA`` by default; ``AE``, ``AR``, or ``silent``: no answer at
all), records every message, and sends PCD-05 (``ORA^R41`` or ``ORU^R41``) to the bridge's status
listener like a real alarm manager reporting what happened to an alert."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

import hl7

from infusion_monitor.gateway.mllp import MllpClient, frame, read_frames
from tests.pager.receiver import free_port


@dataclass
class Received:
    raw: bytes
    message: hl7.Message
    ack: str  # what the simulator answered ("silent": nothing)

    @property
    def control_id(self) -> str:
        return str(self.message.segment("MSH")[10])

    @property
    def alert_id(self) -> str:
        return str(self.message.segment("OBR")[3][0][0])

    def facet(self, n: int) -> hl7.Segment:
        """The OBX of facet ``n`` (OBX-4 ``1.0.0.0.n``)."""
        for seg in self.message.segments("OBX"):
            if str(seg[4]).endswith(f".{n}"):
                return seg
        raise KeyError(n)

    def value(self, n: int) -> str:
        return self.message.unescape(str(self.facet(n)[5]))

    @property
    def phase(self) -> str:
        return str(self.facet(3)[5])


@dataclass
class AlarmManager:
    port: int = field(default_factory=free_port)
    script: list[str] = field(default_factory=list)  # ACK codes for the next messages, then "AA"
    received: list[Received] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task] = field(default_factory=set)
    _sent: int = 0

    @property
    def url(self) -> str:
        return f"mllp://127.0.0.1:{self.port}"

    async def start(self) -> AlarmManager:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", self.port, reuse_address=True)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        self._server = None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            async for raw in read_frames(reader, 1_048_576, 60):
                message = hl7.parse(raw.decode("utf-8").replace("\n", "\r"))
                code = self.script.pop(0) if self.script else "AA"
                self.received.append(Received(raw, message, code))
                if code == "silent":
                    continue
                control = str(message.segment("MSH")[10])
                ack = (f"MSH|^~\\&|ALARM_MGR|HOSP|INFUSION_MONITOR||{_now()}||ACK^R40^ACK|A{control}|P|2.6\r"
                       f"MSA|{code}|{control}\r")
                writer.write(frame(ack.encode()))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    def messages_for(self, alert_id: str) -> list[Received]:
        return [r for r in self.received if r.alert_id == alert_id]

    async def wait_for(self, count: int, timeout: float = 20.0, alert_id: str | None = None) -> list[Received]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            got = self.received if alert_id is None else self.messages_for(alert_id)
            if len(got) >= count:
                return list(got)
            if loop.time() > deadline:
                raise TimeoutError(f"{len(got)} of {count} PCD-04 arrived in time")
            await asyncio.sleep(0.02)

    async def send_status(self, address: tuple[str, int], alert_id: str, status: str, *,
                          recipient: tuple[str, str, str] | None = None, structure: str = "ORU",
                          pcd04_control: str | None = None, control: str | None = None,
                          sender: str = "ALARM_MGR") -> bytes:
        """Send one PCD-05 about ``alert_id`` and return the bridge's ACK."""
        self._sent += 1
        control = control or f"AM{self._sent:06d}"
        prt = ""
        if recipient is not None:
            ident, family, given = recipient
            prt = f"PRT||UC|^{status}|^Alert recipient|{ident}^{family}^{given}|||||PHONE-{ident}\r"
        if structure == "ORA":  # ORA^R41: MSA names our PCD-04; the status is in PRT
            body = (f"MSA|AA|{pcd04_control or alert_id + '.1'}\r"
                    + (prt or f"PRT||UC|^{status}\r"))
            mtype = "ORA^R41^ORA_R41"
        else:  # ORU^R41: OBR identifies the alert, an OBX carries the status
            body = (f"OBR|1|{alert_id}^INFUSION_MONITOR|{alert_id}^INFUSION_MONITOR|196616^MDC_EVT_ALARM^MDC\r"
                    + prt + f"OBX|1|ST|0^MDCX_ATTR_ALERT_DISSEMINATION_STATUS^MDC|1.0.0.0.1|{status}||||||F\r")
            mtype = "ORU^R41^ORU_R41"
        message = (f"MSH|^~\\&|{sender}|HOSP|INFUSION_MONITOR||{_now()}||{mtype}|{control}|P|2.6|||AL|NE||"
                   f"UNICODE UTF-8|||IHE_PCD_ACM_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.4.1^ISO\r" + body)
        async with MllpClient(address[0], address[1], timeout=10) as client:
            return await client.send(message.encode())


def _now() -> str:
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S") + "+0000"


def ack_code(raw: bytes) -> str:
    for line in raw.decode().split("\r"):
        if line.startswith("MSA|"):
            return line.split("|")[1]
    return ""
