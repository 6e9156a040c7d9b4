"""What the JetStream durability settings cost on this machine (docs/reliability.md).

    python -m bench.durability_bench [--runs 3] [--messages 5000] [--dedup-ids 100000]

Loopback only, bounded (every server is ours, on a free 127.0.0.1 port with its store in a
temporary directory, stopped by its PID; every wait has a timeout). Measures, for
``sync_interval`` = the default (2 min) and ``always`` (fsync before every publish ack):

1. **pipelined throughput**: ``--messages`` publishes of a ~330-byte inbound event with
   ``Nats-Msg-Id``, at most 256 un-acked at a time (nats-py ``publish_async``), all acks
   awaited; a stream like ``IM_IN`` (file storage, 1 h dedup window). msgs/s, median of runs.
2. **sequential ack latency**: ``--sequential`` publishes, each awaited before the next
   (what one producer retransmitting on a missing ack sees). Median and p99 per run.
3. **KV update latency**: ``--sequential`` revision-checked KV updates (the monitor's
   checkpoint writes), each awaited.

And the **memory of the dedup window**: server RSS after ``--dedup-ids`` publishes with
distinct ``Nats-Msg-Id`` minus RSS after the same number without an id (the default sync),
per id.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import nats
from nats.js.api import KeyValueConfig, StorageType, StreamConfig

from infusion_monitor.runtime.embedded import EmbeddedNats

PAYLOAD = json.dumps({
    "type": "vitals.recorded", "event_id": "mon-000000000", "patient_id": "pk-7f3a91c2",
    "occurred_at": "2025-03-03T09:29:00+01:00", "session_id": "ses-20250303-N04-1",
    "systolic_mmhg": 118, "diastolic_mmhg": 74, "heart_rate_bpm": 72, "respiratory_rate_bpm": 16,
    "spo2_pct": 97, "temperature_c": 36.8, "symptoms": [], "source": "bedside-monitor-N04",
    "recorded_by": "device", "site": "north-infusion-suite",
}).encode()
WINDOW = 256  # publishes in flight
TIMEOUT_S = 120.0  # any single phase


def _server(root: Path, sync_always: bool) -> EmbeddedNats:
    root.mkdir(parents=True, exist_ok=True)
    conf = root / "server.conf"
    lines = ["jetstream {", "  max_file_store: 4GB"]
    if sync_always:
        lines.append("  sync_interval: always")
    lines.append("}")
    conf.write_text("\n".join(lines) + "\n")
    return EmbeddedNats(root / "store", extra_args=["-c", str(conf)])


async def _stream(js, name: str = "BENCH") -> None:
    await js.add_stream(StreamConfig(name=name, subjects=["bench.>"], storage=StorageType.FILE,
                                     duplicate_window=3600.0))


async def _pipelined(url: str, n: int) -> float:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(publish_async_max_pending=WINDOW)
        await _stream(js)
        start = time.perf_counter()
        futures = [await js.publish_async(f"bench.p{i % 64}.vitals.recorded", PAYLOAD,
                                          headers={"Nats-Msg-Id": f"mon-{i:09d}"}) for i in range(n)]
        acks = await asyncio.wait_for(asyncio.gather(*futures), TIMEOUT_S)
        elapsed = time.perf_counter() - start
        assert len({a.seq for a in acks}) == n, "every publish stored once"
        return n / elapsed
    finally:
        await nc.close()


async def _sequential(url: str, n: int) -> tuple[list[float], list[float]]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(timeout=10.0)
        await _stream(js)
        pub = []
        for i in range(n):
            t = time.perf_counter()
            await js.publish(f"bench.s.{i % 64}", PAYLOAD, headers={"Nats-Msg-Id": f"seq-{i}"})
            pub.append(time.perf_counter() - t)
        kv = await js.create_key_value(KeyValueConfig(bucket="bench-state", history=1, storage=StorageType.FILE))
        revision = await kv.create("p.pk-1", PAYLOAD)
        put = []
        for _ in range(n):
            t = time.perf_counter()
            revision = await kv.update("p.pk-1", PAYLOAD, last=revision)
            put.append(time.perf_counter() - t)
        return pub, put
    finally:
        await nc.close()


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def _dedup_rss(root: Path, n: int, with_ids: bool) -> int:
    server = _server(root, sync_always=False).start()
    try:
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream(publish_async_max_pending=WINDOW)
            await _stream(js)
            before = _rss(server.pid)
            futures = []
            for i in range(n):
                headers = {"Nats-Msg-Id": f"mon-{i:09d}-{'x' * 8}"} if with_ids else None
                futures.append(await js.publish_async(f"bench.d.{i % 64}", PAYLOAD, headers=headers))
            await asyncio.wait_for(asyncio.gather(*futures), TIMEOUT_S)
            await asyncio.sleep(1.0)
            return _rss(server.pid) - before
        finally:
            await nc.close()
    finally:
        server.stop()


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main(runs: int, messages: int, sequential: int, dedup_ids: int) -> dict:
    results: dict = {"runs": runs, "messages": messages, "sequential": sequential, "modes": {}}
    with tempfile.TemporaryDirectory(prefix="im-durability-") as tmp:
        for mode, always in (("default (2 min)", False), ("always", True)):
            rates, pub_p50, pub_p99, kv_p50 = [], [], [], []
            for run in range(runs):
                server = _server(Path(tmp) / f"{always}-{run}", always).start()
                try:
                    rates.append(await _pipelined(server.url, messages))
                finally:
                    server.stop()
                server = _server(Path(tmp) / f"{always}-{run}-seq", always).start()
                try:
                    pub, put = await _sequential(server.url, sequential)
                finally:
                    server.stop()
                pub_p50.append(statistics.median(pub) * 1e3)
                pub_p99.append(_p(pub, 0.99) * 1e3)
                kv_p50.append(statistics.median(put) * 1e3)
                print(f"{mode:>15} run {run + 1}: {rates[-1]:8.0f} msg/s pipelined; sequential publish "
                      f"p50 {pub_p50[-1]:.3f} ms p99 {pub_p99[-1]:.3f} ms; KV update p50 {kv_p50[-1]:.3f} ms",
                      flush=True)
            results["modes"][mode] = {
                "pipelined_msgs_per_s": rates, "median_msgs_per_s": statistics.median(rates),
                "publish_p50_ms": pub_p50, "publish_p99_ms": pub_p99, "kv_update_p50_ms": kv_p50,
            }
        if dedup_ids:
            with_ids = await _dedup_rss(Path(tmp) / "dedup-ids", dedup_ids, True)
            without = await _dedup_rss(Path(tmp) / "dedup-none", dedup_ids, False)
            results["dedup"] = {"ids": dedup_ids, "rss_with_ids": with_ids, "rss_without_ids": without,
                                "bytes_per_id": (with_ids - without) / dedup_ids}
    return results


def _print(results: dict) -> None:
    print()
    print("| sync_interval | pipelined msg/s (median; runs) | sequential publish ack p50 / p99 (median of runs) "
          "| KV update p50 |")
    print("|---|---|---|---|")
    for mode, r in results["modes"].items():
        runs = ", ".join(f"{x:.0f}" for x in r["pipelined_msgs_per_s"])
        print(f"| {mode} | {r['median_msgs_per_s']:.0f} ({runs}) | "
              f"{statistics.median(r['publish_p50_ms']):.3f} / {statistics.median(r['publish_p99_ms']):.3f} ms | "
              f"{statistics.median(r['kv_update_p50_ms']):.3f} ms |")
    if "dedup" in results:
        d = results["dedup"]
        print(f"\ndedup window: {d['ids']} distinct Nats-Msg-Id: server RSS +{d['rss_with_ids'] / 2**20:.1f} MiB, "
              f"without ids +{d['rss_without_ids'] / 2**20:.1f} MiB: ~{d['bytes_per_id']:.0f} bytes per id")


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--sequential", type=int, default=500)
    parser.add_argument("--dedup-ids", type=int, default=100_000, help="0: skip the memory measurement")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    results = asyncio.run(main(args.runs, args.messages, args.sequential, args.dedup_ids))
    _print(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
