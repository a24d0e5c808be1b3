"""Controller manager: Deployment fan-out time and steady-state CPU.

1. **Fan-out.** A real ``hyperkube server`` (memory storage) and ``hyperkube controller-manager``
   run as subprocesses; nodes exist as objects. The script creates D Deployments × R replicas
   (100 × 100 = 10,000 pods at full size) and measures the time until every ReplicaSet reports
   ``status.replicas == R`` (all pods created by the controllers through the API server).
   Baseline, same run: the time one client with the same concurrency (64 connections) takes to
   POST the same number of pods directly, i.e. the API server's own create throughput; the ratio
   is how much slower going through Deployment → ReplicaSet → pods is than raw creates.
2. **Steady state.** With P pods in the cluster (150,000 at full size: the fan-out's plus bare
   pods created directly) and nothing changing, the controller-manager's CPU use over a window,
   from /proc (user + system time), next to the API server's in the same window.

``--quick``: 10 × 20 and 3,000 pods.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks._common import parser, report
from hyperkube.client import DEPLOYMENTS, NAMESPACES, NODES, PODS, REPLICASETS, Client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def start(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)


def stop(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        os.kill(p.pid, signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(5)


def pod(name: str, app: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }


def deployment(name: str, replicas: int) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }


async def bounded(n: int, limit: int, make) -> None:
    sem = asyncio.Semaphore(limit)

    async def one(i: int) -> None:
        async with sem:
            await make(i)

    await asyncio.gather(*(one(i) for i in range(n)))


async def run(args) -> list[dict]:
    quick = args.quick
    n_dep, n_rep = (10, 20) if quick else (args.deployments, args.replicas)
    steady_pods = 3000 if quick else args.steady_pods
    tmp = Path(tempfile.mkdtemp(prefix="hk-bench-ctrl-"))
    port = free_port()
    api = start(
        [
            sys.executable,
            "-m",
            "hyperkube.cli.main",
            "server",
            "--data-dir",
            str(tmp),
            "--port",
            str(port),
            "--storage",
            "memory://",
        ],
        tmp / "apiserver.log",
    )
    cm = None
    url = f"http://127.0.0.1:{port}"
    client = Client(url, max_connections=64)
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        for i in range(10):
            await client.create(
                NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"node-{i}"}}
            )
        total = n_dep * n_rep

        # baseline: raw pod creates with the same concurrency
        await client.create(
            NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "raw"}}
        )
        t0 = time.perf_counter()
        await bounded(total, 64, lambda i: client.create(PODS, pod(f"raw-{i}", "raw"), "raw"))
        t_raw = time.perf_counter() - t0

        cm = start(
            [
                sys.executable,
                "-m",
                "hyperkube.cli.main",
                "controller-manager",
                "--server",
                url,
                "--secure-port",
                "0",
                "--leader-elect=false",
                *args.cm_flags.split(),
            ],
            tmp / "controller-manager.log",
        )
        await client.create(
            NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}
        )
        await asyncio.sleep(2.0)  # let the controller-manager list and start its watches
        cm_cpu0 = cpu_seconds(cm.pid)
        t0 = time.perf_counter()
        await bounded(n_dep, 16, lambda i: client.create(DEPLOYMENTS, deployment(f"d{i}", n_rep), "bench"))
        while True:
            rss = (await client.list(REPLICASETS, "bench"))["items"]
            done = sum(1 for rs in rss if (rs.get("status") or {}).get("replicas") == n_rep)
            if len(rss) == n_dep and done == n_dep:
                break
            if time.perf_counter() - t0 > 1800:
                raise RuntimeError(f"timed out: {done}/{n_dep} ReplicaSets complete")
            await asyncio.sleep(0.2)
        t_fan = time.perf_counter() - t0
        cm_cpu_fan = cpu_seconds(cm.pid) - cm_cpu0

        # steady state: top up with bare pods, then measure an idle window
        extra = max(0, steady_pods - 2 * total)
        if extra:
            await client.create(
                NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "filler"}}
            )
            await bounded(extra, 64, lambda i: client.create(PODS, pod(f"f-{i}", f"f{i % 1000}"), "filler"))
        n_pods = 2 * total + extra
        await asyncio.sleep(5.0)  # let the controllers digest the filler pods
        window = 5.0 if quick else args.window
        c0, a0, w0 = cpu_seconds(cm.pid), cpu_seconds(api.pid), time.perf_counter()
        await asyncio.sleep(window)
        c1, a1, w1 = cpu_seconds(cm.pid), cpu_seconds(api.pid), time.perf_counter()
        cm_rss = rss_mib(cm.pid)
        cm_mc = 1000 * (c1 - c0) / (w1 - w0)  # millicores
        api_mc = 1000 * (a1 - a0) / (w1 - w0)
    finally:
        await client.close()
        if cm is not None:
            stop(cm)
        stop(api)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return [
        {
            "metric": f"{n_dep} Deployments x {n_rep} replicas -> all ReplicaSets at {n_rep} ({total:,} pods)",
            "value": t_fan * 1000,
            "unit": "ms",
            "ratio": t_fan / t_raw,
            "baseline": f"of {total:,} raw pod POSTs ({t_raw * 1000:,.0f} ms)",
        },
        {
            "metric": "  pods created per second via controllers",
            "value": total / t_fan,
            "unit": "pods/s",
            "ratio": None,
        },
        {
            "metric": "  controller-manager CPU during fan-out",
            "value": cm_cpu_fan * 1000,
            "unit": "ms",
            "ratio": None,
        },
        {
            "metric": f"steady-state controller-manager CPU with {n_pods:,} pods, no changes",
            "value": cm_mc,
            "unit": "millicores",
            "ratio": None,
        },
        {
            "metric": "  API server CPU in the same window",
            "value": api_mc,
            "unit": "millicores",
            "ratio": None,
        },
        {"metric": "  controller-manager resident memory", "value": cm_rss, "unit": "MiB", "ratio": None},
    ]


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--deployments", type=int, default=100)
    p.add_argument("--replicas", type=int, default=100)
    p.add_argument("--steady-pods", type=int, default=150_000)
    p.add_argument("--window", type=float, default=20.0, help="seconds of the steady-state CPU window")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    p.add_argument(
        "--cm-flags", default="", help="extra controller-manager flags, e.g. '--concurrent-syncs 10'"
    )
    args = p.parse_args()
    rows = asyncio.run(run(args))
    report("controllers", rows, args.json)


if __name__ == "__main__":
    main()
