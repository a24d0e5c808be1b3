"""Storage backends side by side: embedded SQLite vs a real etcd, in one run.

    python -m benchmarks.storage [--quick] [--json FILE] [--sync full|normal] [--dir DIR]

Starts Debian's etcd on free loopback ports in a temporary directory (stopped at the end) and a
SQLite store in another, then measures through the same Store API for both:

- creates/s with 1 writer and with 100 concurrent writers (acknowledged: each create returned);
- gets/s (100 concurrent readers, random existing keys);
- a list of all keys of the 100-writer phase (100,000 in the full run);
- watch latency: one watcher on the prefix; sequential writes; time from issuing the write to
  the event reaching the watcher, p50 and p99.

Ratios are SQLite relative to etcd (> 1: SQLite is better; for latencies, etcd's / SQLite's).
etcd is driven through hyperkube's etcd backend (its JSON gateway over HTTP), which is how
hyperkube uses it.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import tempfile
import time
from typing import Any

from benchmarks._common import machine, parser
from hyperkube.storage import Store, open_store
from hyperkube.storage.etcd_local import LocalEtcd

VALUE = os.urandom(300)  # about the size of a small msgpack-encoded pod


async def creates(store: Store, prefix: str, n: int, writers: int) -> float:
    per = n // writers

    async def writer(w: int) -> None:
        for i in range(per):
            await store.create(f"{prefix}w{w:03d}-{i:07d}", VALUE)

    t0 = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    return per * writers / (time.perf_counter() - t0)


async def gets(store: Store, keys: list[str], n: int, readers: int = 100) -> float:
    rnd = random.Random(1)
    per = n // readers

    async def reader() -> None:
        for _ in range(per):
            await store.get(rnd.choice(keys))

    t0 = time.perf_counter()
    await asyncio.gather(*(reader() for _ in range(readers)))
    return per * readers / (time.perf_counter() - t0)


async def list_all(store: Store, prefix: str, expect: int) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        res = await store.list(prefix)
        best = min(best, time.perf_counter() - t0)
        assert len(res.items) == expect, (len(res.items), expect)
    return best


async def watch_latency(store: Store, prefix: str, n: int) -> tuple[float, float]:
    start = await store.current_revision()
    sent: dict[str, float] = {}
    lat: list[float] = []
    done = asyncio.Event()

    async def watcher() -> None:
        async for ev in store.watch(prefix, start):
            lat.append(time.perf_counter() - sent[ev.key])
            if len(lat) == n:
                done.set()
                return

    task = asyncio.create_task(watcher())
    await asyncio.sleep(0.2)  # let the watch be established
    for i in range(n):
        key = f"{prefix}{i:07d}"
        sent[key] = time.perf_counter()
        await store.create(key, VALUE)
    await asyncio.wait_for(done.wait(), 60)
    await task
    q = statistics.quantiles(lat, n=100, method="inclusive")
    return q[49] * 1000, q[98] * 1000


async def run_backend(url: str, sizes: dict[str, int]) -> dict[str, float]:
    store = open_store(url)
    await store.start()
    try:
        r: dict[str, float] = {}
        r["creates_1"] = await creates(store, "/registry/one/", sizes["creates_1"], 1)
        r["creates_100"] = await creates(store, "/registry/pods/", sizes["creates_100"], 100)
        keys = [kv.key for kv in (await store.list("/registry/pods/", limit=5000)).items]
        r["gets"] = await gets(store, keys, sizes["gets"])
        r["list_s"] = await list_all(store, "/registry/pods/", sizes["creates_100"])
        r["watch_p50_ms"], r["watch_p99_ms"] = await watch_latency(
            store, "/registry/watched/", sizes["watch"]
        )
        return r
    finally:
        await store.close()


def main() -> None:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--sync", choices=["full", "normal"], default="full", help="SQLite synchronous mode")
    p.add_argument("--dir", default=None, help="where to put both stores' files (default: a temp dir)")
    args = p.parse_args()
    sizes = (
        {"creates_1": 300, "creates_100": 5_000, "gets": 5_000, "watch": 200}
        if args.quick
        else {"creates_1": 3_000, "creates_100": 100_000, "gets": 50_000, "watch": 2_000}
    )
    try:
        import uvloop

        run = uvloop.run
    except ImportError:  # pragma: no cover
        run = asyncio.run
    with tempfile.TemporaryDirectory(prefix="hk-bench-storage-", dir=args.dir) as tmp:
        sqlite = run(run_backend(f"sqlite://{tmp}/state.db?sync={args.sync}&compact_interval=0", sizes))
        with LocalEtcd(os.path.join(tmp, "etcd")) as etcd:
            etcd_r = run(run_backend(etcd.url, sizes))

    rows: list[dict[str, Any]] = []

    def row(metric: str, key: str, unit: str, higher_better: bool = True) -> None:
        a, b = sqlite[key], etcd_r[key]
        ratio = (a / b) if higher_better else (b / a)
        rows.append({"metric": metric, "sqlite": a, "etcd": b, "unit": unit, "ratio": ratio})

    n = sizes["creates_100"]
    row("creates/s, 1 writer", "creates_1", "creates/s")
    row("creates/s, 100 concurrent writers", "creates_100", "creates/s")
    row("gets/s, 100 concurrent readers", "gets", "gets/s")
    row(f"list of {n:,} keys", "list_s", "s", higher_better=False)
    row("watch latency p50 (write -> event)", "watch_p50_ms", "ms", higher_better=False)
    row("watch latency p99 (write -> event)", "watch_p99_ms", "ms", higher_better=False)

    print(f"# storage: SQLite (sync={args.sync}) vs etcd 3.4 on {machine()}")
    print(f"{'metric':<40} {'SQLite':>14} {'etcd':>14}  ratio (SQLite vs etcd)")
    for r in rows:
        fmt = "{:>14,.0f}" if r["unit"].endswith("/s") else "{:>14.3f}"
        print(
            f"{r['metric']:<40} {fmt.format(r['sqlite'])} {fmt.format(r['etcd'])}  "
            f"{r['ratio']:.1f}x {'faster' if r['ratio'] >= 1 else 'slower'}  ({r['unit']})"
        )
    ok_creates = sqlite["creates_100"] >= 20_000
    ok_watch = sqlite["watch_p99_ms"] <= 5.0
    print(
        f"targets: SQLite >= 20,000 creates/s with 100 writers: {'met' if ok_creates else 'MISSED'}; "
        f"watch p99 <= 5 ms: {'met' if ok_watch else 'MISSED'}"
    )
    if args.json:
        import json

        with open(args.json, "w") as f:
            json.dump(
                {"benchmark": "storage", "machine": machine(), "sync": args.sync, "results": rows},
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
