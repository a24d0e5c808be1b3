"""API server: creates under 64 concurrent clients, a list of 150,000 pods, and watch fan-out
to 10,000 watchers side by side with a real etcd.

1. creates: 64 concurrent HTTP clients POST pods to a real ``hyperkube server`` (SQLite store);
   creates/s and p50/p99 latency. Baseline in the same run: the same 64 clients writing the same
   objects as puts to a real etcd over its HTTP gateway.
2. list: 150,000 pods written straight into the SQLite store, then listed through the API server
   (one unpaginated list, and paginated with limit=500 as kubectl and informers do); wall time and
   the server's peak RSS. Baseline: listing the same keys from the store directly, in-process.
3. watch fan-out: 10,000 watchers (HTTP watch streams) on one namespace's pods receive 1,000 pod
   updates; deliveries/s and p50/p99 delivery latency (write issued → line read by the client).
   Baseline: the same watchers on the same keys on a real etcd through its JSON gateway
   (``/v3/watch``; etcd's gRPC path would be faster, but the benchmark has no gRPC client), the
   same writes as puts. 16 concurrent writers on both sides; latency counts queueing behind the
   fan-out. Clients count lines and timestamps per read; they do not parse JSON (either side).
   On the 2-core development machine etcd 3.4's gateway could not hold 10,000 watch streams (its
   puts time out); the side-by-side figure is then taken with ``--watchers 2000``.

``python -m benchmarks.apiserver [--quick] [--json FILE] [--only creates,list,watch]``
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import resource
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from benchmarks._common import parser, report

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "", "namespace": "bench", "labels": {"app": "bench", "tier": "web"}},
    "spec": {
        "containers": [
            {
                "name": "c",
                "image": "busybox:1.36",
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
            }
        ]
    },
}


WRITERS = 16  # concurrent writers in the watch benchmark (each on its own object)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else hard
    for target in (max(want, soft), hard):
        try:
            resource.setrlimit(
                resource.RLIMIT_NOFILE,
                (target, max(target, hard) if hard != resource.RLIM_INFINITY else resource.RLIM_INFINITY),
            )
            return
        except (ValueError, OSError):
            continue


def start_server(data_dir: Path) -> Any:
    from tests.integration.conftest import start_apiserver

    return start_apiserver(data_dir)


class Etcd:
    def __init__(self, base: Path) -> None:
        self.port, peer = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                shutil.which("etcd") or "etcd",
                "--data-dir",
                str(base / "etcd"),
                "--listen-client-urls",
                self.url,
                "--advertise-client-urls",
                self.url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-cluster",
                f"default=http://127.0.0.1:{peer}",
                "--quota-backend-bytes",
                str(8 * 1024**3),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def pct(a: list[float] | np.ndarray, q: float) -> float:
    return float(np.percentile(np.asarray(a), q)) if len(a) else float("nan")


# --- 1. creates ---------------------------------------------------------------------------------


async def _run_clients(n: int, clients: int, one: Any) -> tuple[float, list[float]]:
    lat: list[float] = []
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            t0 = time.perf_counter()
            await one(i)
            lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return time.perf_counter() - t0, lat


async def bench_creates(srv: Any, etcd: Etcd, n: int, clients: int) -> list[dict[str, Any]]:
    conn = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=conn) as s:
        async with s.post(f"{srv.url}/api/v1/namespaces", json={"metadata": {"name": "bench"}}) as r:
            assert r.status in (201, 409), await r.text()

        async def create(i: int) -> None:
            body = json.loads(json.dumps(POD))
            body["metadata"]["name"] = f"c-{i}"
            async with s.post(f"{srv.url}/api/v1/namespaces/bench/pods", json=body) as r:
                if r.status != 201:
                    raise RuntimeError(await r.text())
                await r.read()

        wall, lat = await _run_clients(n, clients, create)

        async def put(i: int) -> None:
            body = json.loads(json.dumps(POD))
            body["metadata"]["name"] = f"c-{i}"
            req = {"key": b64(f"/registry/pods/bench/c-{i}"), "value": b64(json.dumps(body))}
            async with s.post(f"{etcd.url}/v3/kv/put", json=req) as r:
                if r.status != 200:
                    raise RuntimeError(await r.text())
                await r.read()

        ewall, elat = await _run_clients(n, clients, put)
    return [
        {
            "metric": f"creates/s ({clients} clients)",
            "value": n / wall,
            "unit": "creates/s",
            "ratio": (n / wall) / (n / ewall),
            "baseline": "etcd puts/s",
        },
        {"metric": "create p50", "value": pct(lat, 50) * 1000, "unit": "ms", "ratio": None},
        {"metric": "create p99", "value": pct(lat, 99) * 1000, "unit": "ms (target <= 100)", "ratio": None},
        {"metric": "etcd put/s (baseline)", "value": n / ewall, "unit": "puts/s", "ratio": None},
        {"metric": "etcd put p99 (baseline)", "value": pct(elat, 99) * 1000, "unit": "ms", "ratio": None},
    ]


# --- 2. list --------------------------------------------------------------------------------------


async def fill_store(db: Path, n: int) -> float:
    from hyperkube.api.defaults import apply
    from hyperkube.api.meta import new_uid, now
    from hyperkube.api.serialization import encode
    from hyperkube.storage import open_store

    store = open_store(f"sqlite://{db}")
    await store.start()
    t0 = time.perf_counter()
    ts = now()
    base = json.loads(json.dumps(POD))
    apply("", "Pod", base)
    ns_obj = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "bench", "uid": new_uid(), "creationTimestamp": ts},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }
    await store.create("/registry/namespaces/bench", encode(ns_obj))
    chunk = 2000
    for start in range(0, n, chunk):
        coros = []
        for i in range(start, min(n, start + chunk)):
            o = json.loads(json.dumps(base))
            md = o["metadata"]
            md["name"], md["uid"], md["creationTimestamp"] = f"p-{i:06d}", new_uid(), ts
            coros.append(store.create(f"/registry/pods/bench/p-{i:06d}", encode(o)))
        await asyncio.gather(*coros)
    fill = time.perf_counter() - t0
    await store.close()
    return fill


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


async def bench_list(base: Path, n: int) -> list[dict[str, Any]]:
    data = base / "list"
    data.mkdir()
    await fill_store(data / "state.db", n)
    from hyperkube.storage import open_store

    store = open_store(f"sqlite://{data / 'state.db'}")
    await store.start()
    t0 = time.perf_counter()
    r = await store.list("/registry/pods/bench/")
    t_store = time.perf_counter() - t0
    assert len(r.items) == n
    await store.close()
    srv = start_server(data)
    try:
        rss0 = rss_kib(srv.pid, "VmRSS")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as s:
            t0 = time.perf_counter()
            async with s.get(f"{srv.url}/api/v1/pods") as resp:
                body = await resp.read()
            t_full = time.perf_counter() - t0
            items = json.loads(body)["items"]
            assert len(items) == n, len(items)
            del items
            t0 = time.perf_counter()
            cont, got = "", 0
            while True:
                async with s.get(
                    f"{srv.url}/api/v1/pods", params={"limit": "500", **({"continue": cont} if cont else {})}
                ) as resp:
                    page = json.loads(await resp.read())
                got += len(page["items"])
                cont = page["metadata"].get("continue", "")
                if not cont:
                    break
            t_pages = time.perf_counter() - t0
            assert got == n
        peak = rss_kib(srv.pid, "VmHWM")
    finally:
        srv.stop()
    return [
        {
            "metric": f"list {n:,} pods (one response)",
            "value": t_full * 1000,
            "unit": f"ms ({len(body) / 2**20:.0f} MiB JSON)",
            "ratio": t_store / t_full,
            "baseline": "store-only list time",
        },
        {
            "metric": f"list {n:,} pods (limit=500 pages)",
            "value": t_pages * 1000,
            "unit": "ms",
            "ratio": None,
        },
        {"metric": "store list alone (baseline)", "value": t_store * 1000, "unit": "ms", "ratio": None},
        {
            "metric": "apiserver peak RSS",
            "value": peak / 1024,
            "unit": f"MiB (idle before lists: {rss0 / 1024:.0f} MiB)",
            "ratio": None,
        },
    ]


# --- 3. watch fan-out -----------------------------------------------------------------------------


class LineCounter:
    """Reads a stream, counting lines; records (arrival time, first line index, count) per read."""

    def __init__(self, skip: int = 0) -> None:
        self.lines = -skip
        self.marks: list[tuple[float, int, int]] = []

    def feed(self, chunk: bytes) -> None:
        n = chunk.count(b"\n")
        if n:
            first = self.lines
            self.lines += n
            if self.lines > 0:
                self.marks.append((time.perf_counter(), max(first, 0), self.lines - max(first, 0)))


async def _stream(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    counter: LineCounter,
    ready: asyncio.Event,
    opened: list[int],
    total: int,
    **kw: Any,
) -> None:
    async with session.request(method, url, **kw) as r:
        assert r.status == 200, await r.text()
        opened[0] += 1
        if opened[0] == total:
            ready.set()
        async for chunk in r.content.iter_any():
            counter.feed(chunk)


async def _watch_side(
    name: str, open_watch: Any, write: Any, watchers: int, events: int, skip: int
) -> dict[str, Any]:
    conn = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as s:
        counters = [LineCounter(skip) for _ in range(watchers)]
        ready = asyncio.Event()
        opened = [0]
        tasks = [asyncio.create_task(open_watch(s, c, ready, opened, watchers)) for c in counters]
        await asyncio.wait_for(ready.wait(), 300)
        await asyncio.sleep(1.0)
        issued: list[float] = []
        seq = iter(range(events))

        async def writer() -> None:
            for i in seq:
                issued.append(time.perf_counter())
                await write(s, i)

        t0 = time.perf_counter()
        await asyncio.gather(*(writer() for _ in range(WRITERS)))
        # the k-th line a watcher reads is the k-th committed write; it is matched with the k-th
        # issued write (writes are issued in order by WRITERS concurrent clients)
        write_t = np.asarray(issued)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and any(c.lines < events for c in counters):
            await asyncio.sleep(0.05)
        last = max((c.marks[-1][0] for c in counters if c.marks), default=time.perf_counter())
        wall = last - t0
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    delivered = sum(min(c.lines, events) for c in counters)
    lat_parts = []
    for c in counters:
        for t, first, n in c.marks:
            idx = np.arange(first, min(first + n, events))
            if len(idx):
                lat_parts.append(t - write_t[idx])
    lat = np.concatenate(lat_parts) if lat_parts else np.zeros(0)
    return {
        "name": name,
        "deliveries": delivered,
        "expected": watchers * events,
        "wall": wall,
        "rate": delivered / wall,
        "p50": pct(lat, 50),
        "p99": pct(lat, 99),
    }


async def bench_watch(base: Path, etcd: Etcd, watchers: int, events: int) -> list[dict[str, Any]]:
    data = base / "watch"
    srv = start_server(data)
    body = json.loads(json.dumps(POD))
    body["metadata"]["namespace"] = "wbench"
    try:
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{srv.url}/api/v1/namespaces", json={"metadata": {"name": "wbench"}}) as r:
                assert r.status == 201
            for j in range(WRITERS):
                body["metadata"]["name"] = f"w-{j}"
                async with s.post(f"{srv.url}/api/v1/namespaces/wbench/pods", json=body) as r:
                    assert r.status == 201
                    rv = (await r.json())["metadata"]["resourceVersion"]

        async def open_ours(
            sess: aiohttp.ClientSession, c: LineCounter, ready: asyncio.Event, opened: list[int], total: int
        ) -> None:
            await _stream(
                sess,
                "GET",
                f"{srv.url}/api/v1/namespaces/wbench/pods",
                c,
                ready,
                opened,
                total,
                params={"watch": "1", "resourceVersion": rv},
            )

        async def write_ours(sess: aiohttp.ClientSession, i: int) -> None:
            async with sess.patch(
                f"{srv.url}/api/v1/namespaces/wbench/pods/w-{i % WRITERS}",
                data=json.dumps({"metadata": {"labels": {"seq": str(i)}}}),
                headers={"Content-Type": "application/merge-patch+json"},
            ) as r:
                assert r.status == 200, await r.text()
                await r.read()

        ours = await _watch_side("hyperkube", open_ours, write_ours, watchers, events, 0)
        rss = rss_kib(srv.pid, "VmHWM")
    finally:
        srv.stop()

    prefix = "/registry/pods/wbench/"
    value = json.dumps(body)

    async def open_etcd(
        sess: aiohttp.ClientSession, c: LineCounter, ready: asyncio.Event, opened: list[int], total: int
    ) -> None:
        req = {"create_request": {"key": b64(prefix), "range_end": b64(prefix[:-1] + "0")}}
        await _stream(sess, "POST", f"{etcd.url}/v3/watch", c, ready, opened, total, json=req)

    async def write_etcd(sess: aiohttp.ClientSession, i: int) -> None:
        req = {
            "key": b64(f"{prefix}w-{i % WRITERS}"),
            "value": b64(value.replace('"app"', f'"seq":"{i}","app"')),
        }
        for attempt in range(20):
            async with sess.post(f"{etcd.url}/v3/kv/put", json=req) as r:
                text = await r.read()
                if r.status == 200:
                    return
            await asyncio.sleep(0.05 * (attempt + 1))
        raise RuntimeError(f"etcd put failed: {r.status} {text[:200]!r}")

    # etcd's gateway sends one "created" line per watch before any event
    print(f"hyperkube side: {ours}", flush=True)
    try:
        theirs = await _watch_side("etcd", open_etcd, write_etcd, watchers, events, 1)
    except Exception as e:  # report ours even when the baseline cannot run at this size
        print(f"etcd side failed: {e}", flush=True)
        theirs = {
            "rate": float("nan"),
            "p50": float("nan"),
            "p99": float("nan"),
            "deliveries": 0,
            "expected": watchers * events,
        }
    rows = [
        {
            "metric": f"hyperkube watch deliveries/s ({watchers:,} watchers x {events:,} events)",
            "value": ours["rate"],
            "unit": "deliveries/s",
            "ratio": ours["rate"] / theirs["rate"],
            "baseline": "etcd",
        },
        {"metric": "hyperkube delivery p50", "value": ours["p50"] * 1000, "unit": "ms", "ratio": None},
        {
            "metric": "hyperkube delivery p99",
            "value": ours["p99"] * 1000,
            "unit": "ms",
            "ratio": theirs["p99"] / ours["p99"] if ours["p99"] else None,
            "baseline": "etcd p99 / ours",
        },
        {
            "metric": "hyperkube deliveries received",
            "value": ours["deliveries"],
            "unit": f"of {ours['expected']:,}",
            "ratio": None,
        },
        {"metric": "hyperkube apiserver peak RSS (watch)", "value": rss / 1024, "unit": "MiB", "ratio": None},
        {
            "metric": "etcd watch deliveries/s (baseline)",
            "value": theirs["rate"],
            "unit": "deliveries/s",
            "ratio": None,
        },
        {"metric": "etcd delivery p50", "value": theirs["p50"] * 1000, "unit": "ms", "ratio": None},
        {"metric": "etcd delivery p99", "value": theirs["p99"] * 1000, "unit": "ms", "ratio": None},
        {
            "metric": "etcd deliveries received",
            "value": theirs["deliveries"],
            "unit": f"of {theirs['expected']:,}",
            "ratio": None,
        },
    ]
    return rows


async def amain(args: Any) -> list[dict[str, Any]]:
    only = set((args.only or "creates,list,watch").split(","))
    q = args.quick
    base = Path(tempfile.mkdtemp(prefix="hk-bench-api-"))
    rows: list[dict[str, Any]] = []
    etcd = Etcd(base)
    try:
        if "creates" in only:
            srv = start_server(base / "creates")
            try:
                rows += await bench_creates(srv, etcd, 1000 if q else 10_000, 64)
            finally:
                srv.stop()
        if "list" in only:
            rows += await bench_list(base, 10_000 if q else 150_000)
        if "watch" in only:
            rows += await bench_watch(
                base, etcd, args.watchers or (500 if q else 10_000), args.events or (100 if q else 1_000)
            )
    finally:
        etcd.stop()
        shutil.rmtree(base, ignore_errors=True)
    return rows


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--only", help="comma-separated parts: creates,list,watch")
    p.add_argument("--watchers", type=int, default=0)
    p.add_argument("--events", type=int, default=0)
    args = p.parse_args()
    raise_nofile()
    os.environ.setdefault("HYPERKUBE_LOG", "ERROR")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    rows = asyncio.run(amain(args))
    report("apiserver", rows, args.json)


if __name__ == "__main__":
    main()
