"""A sign-in flood must not slow the wall display (issue 14): the board's update latency, quiet and
under a flood of failing sign-ins.

    python3 run.py bench --only login-flood [--flood-samples 50] [--flooders 32]   # in the bench table
    .venv/bin/python -m bench.login_flood_bench [--samples 50] [--flooders 32] [--gap 0.25]   # this table only

The board runs in its own process (real uvicorn on loopback, a real embedded nats-server,
ephemeral consumers as in production) with one open session; the flood comes from another. A sample publishes a ``vitals.recorded`` with a new heart
rate and measures until the wall display's event stream (a signed-in ``/events`` client) shows
it. Phases:

- ``quiet``: nothing else happens;
- ``flood, throttled``: a separate process runs ``--flooders`` concurrent clients posting wrong
  passwords for changing user names as fast as the board answers (one source: the throttle
  answers 429 after five failures, no hashing);
- ``flood, every attempt hashed``: the same with the throttle off (a distributed flood where
  every source stays under its limit: every attempt costs an scrypt, ~50 ms of CPU);
- ``flood, hashed on the event loop``: for comparison, the board as it was before issue 14
  (scrypt on the event loop, no throttle): what the benchmark sees when hashing blocks the page.

Prints the median and 95th percentile per phase and the difference to quiet (target: within
100 ms). Figures go to docs/security.md. Nothing here is a test. The board and the flood die with
the bench, whatever signal kills it (``services/runtime/children.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import httpx

from infusion_monitor.runtime.children import die_with_parent

from .common import Results

TARGET_MS = 100.0
FLOODER = r'''
import asyncio, sys, httpx
async def one(url, n):
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        i = 0
        while True:
            i += 1
            try:
                await http.post("/login", data={"username": f"user{n}-{i % 50}", "password": "wrong"},
                                headers={"origin": url})
            except httpx.HTTPError:
                await asyncio.sleep(0.05)
async def main(url, n):
    await asyncio.gather(*(one(url, k) for k in range(n)))
asyncio.run(main(sys.argv[1], int(sys.argv[2])))
'''


def _event(type_: str, n: int, **fields) -> bytes:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return json.dumps({"type": type_, "event_id": f"flood-{type_}-{n}", "occurred_at": now, "patient_id": "pk-flood",
                       **fields}).encode()


async def _sse_waiter(url: str, cookies: dict[str, str], seen: dict[int, float], stop: asyncio.Event) -> None:
    """Reads the board's event stream; records when each heart rate first appears."""
    async with httpx.AsyncClient(base_url=url, cookies=cookies, timeout=None) as http:
        async with http.stream("GET", "/events") as stream:
            buffer = ""
            async for chunk in stream.aiter_text():
                buffer += chunk
                while "\n\n" in buffer:
                    message, buffer = buffer.split("\n\n", 1)
                    arrived = time.monotonic()
                    for hr in list(_pending):
                        if f"HR {hr}/min" in message and hr not in seen:
                            seen[hr] = arrived
                if stop.is_set():
                    return


_pending: set[int] = set()


async def _phase(js, url: str, cookies: dict[str, str], samples: int, start_hr: int, gap_s: float) -> list[float]:
    seen: dict[int, float] = {}
    stop = asyncio.Event()
    reader = asyncio.create_task(_sse_waiter(url, cookies, seen, stop))
    await asyncio.sleep(1.0)  # the stream is open and has sent the board once
    latencies = []
    for i in range(samples):
        hr = start_hr + i
        _pending.add(hr)
        sent = time.monotonic()
        await js.publish("im.in.pk-flood.vitals.recorded",
                         _event("vitals.recorded", hr, heart_rate_bpm=hr, systolic_mmhg=120, spo2_pct=98),
                         headers={"Nats-Msg-Id": f"flood-v-{hr}"})
        deadline = sent + 30
        while hr not in seen and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        if hr in seen:
            latencies.append((seen[hr] - sent) * 1000)
        _pending.discard(hr)
        await asyncio.sleep(gap_s)
    stop.set()
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await reader
    return latencies


def _on_the_loop_class() -> type:
    from infusion_monitor.board.auth import Authenticator, SignIn, _dummy_hash, verify_password

    class OnTheLoop(Authenticator):
        """The board before issue 14: scrypt in the request handler, on the event loop."""

        async def sign_in(self, username: str, password: str, source: str) -> SignIn:
            user = self.users.get(username)
            ok = verify_password(password, user.password if user is not None else _dummy_hash())
            if user is None or not ok:
                return SignIn()
            return SignIn(user, self.sessions.start(user.username))

    return OnTheLoop


def _p95(values: list[float]) -> float:
    return sorted(values)[max(0, int(round(0.95 * len(values))) - 1)]


@dataclass(frozen=True)
class Phase:
    label: str
    latencies_ms: list[float]  # one per sample the display showed within 30 s
    attempts: int  # sign-in attempts the board answered meanwhile (its audit records)


BOARD = r'''
import asyncio, sys
from dataclasses import replace
from pathlib import Path
from bench.login_flood_bench import board_auth
from infusion_monitor.board.config import BoardConfig
from infusion_monitor.board.service import run_board
from infusion_monitor.runtime.logs import configure
from infusion_monitor.runtime.settings import Settings

async def main(url, variant, data):
    config = replace(BoardConfig(), bind="127.0.0.1:0", secret_path=Path(data) / "board" / "secret",
                     sse_refresh_s=5.0, lookback_hours=1)
    async with run_board(Settings(), url, config, auth=board_auth(variant)) as board:
        print(board.url, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the bench closes stdin

configure("json")
asyncio.run(main(*sys.argv[1:4]))
'''
PHASES = (("quiet", "default"), ("flood, throttled", "default"), ("flood, every attempt hashed", "unthrottled"),
          ("flood, hashed on the event loop", "on-the-loop"))
COMPARISON = "flood, hashed on the event loop"  # the board before issue 14: no target


def board_auth(variant: str):  # noqa: ANN201 - used by the board process
    from infusion_monitor.board.auth import Authenticator, Backoff, LoginThrottle, users_from_pairs

    kind = _on_the_loop_class() if variant == "on-the-loop" else Authenticator
    auth = kind(users_from_pairs([("wall", "Wall display", "wall-pw")]), b"f" * 32, cookie_secure=False)
    if variant != "default":
        auth = replace(auth, throttle=LoginThrottle(by_source=Backoff(10**9, 1, 1), by_account=Backoff(10**9, 1, 1)))
    return auth


async def run(samples: int, flooders: int, gap_s: float, tick: Callable[[str], None] | None = None) -> list[Phase]:
    """The board in a process of its own (as in production), the flood in another, the
    measuring client and the publisher here; ``tick`` after each phase."""
    from infusion_monitor.runtime.embedded import EmbeddedNats
    from infusion_monitor.runtime.names import Names
    from infusion_monitor.runtime.streams import ensure_streams

    root = Path(__file__).resolve().parents[1]
    results: list[Phase] = []
    with tempfile.TemporaryDirectory(prefix="im-flood-") as tmp, EmbeddedNats(Path(tmp) / "nats") as server:
        nc = await server.access().connect()
        js = nc.jetstream()
        await ensure_streams(js, Names())
        await js.publish("im.in.pk-flood.infusion.started",
                         _event("infusion.started", 0, session_id="ses-flood", pump_id="pump-F1"))
        attempts = 0
        for label, variant in PHASES:
            board = subprocess.Popen([sys.executable, "-c", BOARD, server.url, variant, tmp], cwd=root,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     preexec_fn=die_with_parent())
            flood = None
            try:
                assert board.stdout is not None
                url = await asyncio.get_running_loop().run_in_executor(None, board.stdout.readline)
                url = url.strip()
                async with httpx.AsyncClient(base_url=url) as http:
                    await http.post("/login", data={"username": "wall", "password": "wall-pw"}, headers={"origin": url})
                    cookies = dict(http.cookies)
                if label != "quiet":
                    flood = subprocess.Popen([sys.executable, "-c", FLOODER, url, str(flooders)],
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                             preexec_fn=die_with_parent())
                    await asyncio.sleep(2.0)  # the flood is under way
                start = 40 + samples * len(results)  # distinct, plausible heart rates per phase
                latencies = await _phase(js, url, cookies, samples, start, gap_s)
            finally:
                if flood is not None:
                    flood.terminate()
                    flood.wait(10)
                if board.stdin is not None:
                    board.stdin.close()
                try:
                    board.wait(30)
                except subprocess.TimeoutExpired:  # the old variant's loop may still be hashing
                    board.kill()
                    board.wait(10)
            audited = (await js.stream_info("IM_AUDIT")).state.messages if label != "quiet" else attempts
            results.append(Phase(label, latencies, audited - attempts))
            attempts = audited
            if tick is not None:
                tick(f"{label}: {len(latencies)} of {samples} samples, {results[-1].attempts} sign-in attempts answered")
        await nc.close()
    return results


def add_figures(phases: list[Phase], samples: int, flooders: int, results: Results) -> None:
    """One row per phase: the display's update latency, and for a flood its distance to quiet."""
    quiet = statistics.median(phases[0].latencies_ms) if phases and phases[0].latencies_ms else None
    for phase in phases:
        values = phase.latencies_ms
        name = f"login flood: wall display update, {phase.label}"
        note = (f"{len(values)} of {samples} samples" + (f"; {flooders} flooding clients, {phase.attempts:,} "
                                                         "sign-in attempts answered" if phase.label != "quiet" else ""))
        if not values:
            results.add(name, "no update shown within 30 s", "", False, note)
            continue
        median = statistics.median(values)
        value = f"p50 {median:.1f} / p95 {_p95(values):.1f} ms"
        if phase.label == "quiet" or quiet is None:
            results.add(name, value, "", None, note)
        elif phase.label == COMPARISON:
            results.add(name, f"{value} ({median - quiet:+.1f} vs quiet)", "", None,
                        f"{note}; the board before issue 14, for comparison")
        else:
            results.add(name, f"{value} ({median - quiet:+.1f} vs quiet)", f"<= quiet + {TARGET_MS:.0f} ms",
                        median - quiet <= TARGET_MS, note)


def main(argv: list[str] | None = None) -> int:
    from infusion_monitor.cli.helptext import Parser

    parser = Parser(prog="python -m bench.login_flood_bench",
                    description="The wall display's update latency, quiet and under a flood of failing sign-ins.")
    parser.add_argument("--samples", type=int, default=50, help="per phase (at most 50: heart rates stay plausible)")
    parser.add_argument("--flooders", type=int, default=32, help="concurrent clients posting wrong passwords")
    parser.add_argument("--gap", type=float, default=0.25, help="seconds between samples")
    args = parser.parse_args(argv)

    def say(what: str) -> None:
        print(what, file=sys.stderr, flush=True)

    phases = asyncio.run(run(args.samples, args.flooders, args.gap, tick=say))
    results = Results()
    add_figures(phases, args.samples, args.flooders, results)
    print(results.table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
