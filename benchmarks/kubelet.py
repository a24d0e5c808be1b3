"""Kubelet benchmarks: pod startup latency on a runc node, and hollow-node density.

1. **Pod startup latency** (root + runc): a real ``hyperkube server`` (SQLite), one kubelet in this
   process with the runc runtime and CNI inside a network namespace made for the run; N pods (busybox,
   ``sleep``) are created bound to the node; latency = pod created -> status Running seen by a watch.
   Baseline in the same run: the runtime alone (netns + CNI ADD + create + start of the same containers,
   no API server), i.e. the floor the kubelet adds its overhead to. Upstream's SLO: p99 <= 5 s.
2. **Hollow nodes**: N hollow kubelets in this process against the same server; after registration, the
   process's RSS growth per node and its CPU time per node over a steady-state window (leases every 10 s,
   status checks) are reported. kubemark's rule of thumb is ~10 hollow nodes per core.

    python -m benchmarks.kubelet [--quick] [--pods 100] [--hollow 5000] [--window 30] [--only startup|hollow] [--json FILE]
"""

from __future__ import annotations

import asyncio
import os
import resource
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

from benchmarks._common import parser, report


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data_dir: str) -> tuple[subprocess.Popen[bytes], str, str]:
    port = _free_port()
    cmd = [sys.executable, "-m", "hyperkube.cli.main", "server", "--data-dir", data_dir, "--port", str(port),
           "--bind-address", "127.0.0.1", "--insecure-http"]  # fmt: skip
    log = open(os.path.join(data_dir, "apiserver.log"), "wb")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as r:
                if r.status == 200 and os.path.exists(os.path.join(data_dir, "kubeconfig")):
                    return proc, url, os.path.join(data_dir, "kubeconfig")
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("hyperkube server did not start")


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


async def startup_latency(n: int, tmp: str) -> list[dict[str, Any]]:
    from hyperkube.client import PODS, Client
    from hyperkube.kubelet.agent import Kubelet
    from hyperkube.kubelet.cni import CNI, PodNetworks, bridge_conflist
    from hyperkube.kubelet.images import ImageStore, build_busybox_image
    from hyperkube.kubelet.runtime import ContainerSpec
    from hyperkube.kubelet.runtime.runc import RuncRuntime

    tag = secrets.token_hex(3)
    netns = f"hk-kl-bn{tag}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
    build_busybox_image(os.path.join(tmp, "bb.tar"))
    ImageStore(os.path.join(tmp, "images")).import_archive(os.path.join(tmp, "bb.tar"))
    os.makedirs(os.path.join(tmp, "api"))
    proc, url, kubeconfig = start_server(os.path.join(tmp, "api"))
    client = Client.from_kubeconfig(kubeconfig)
    rows: list[dict[str, Any]] = []
    try:

        def networks(root: str, name: str) -> PodNetworks:
            conf = bridge_conflist(name, f"hk-kl-bb{tag}", "10.250.0.0/22", os.path.join(root, "ipam"))
            return PodNetworks(
                CNI(conf, os.path.join(root, "cni"), host_netns=f"/run/netns/{netns}"), f"hk-kl-b{tag}-"
            )

        # Baseline: the runtime + CNI alone, same containers, sequential like the kubelet's first sync.
        broot = os.path.join(tmp, "baseline")
        rt = RuncRuntime(broot, ImageStore(os.path.join(tmp, "images")))
        pn = networks(broot, "hk-kl-base")
        base: list[float] = []
        for i in range(min(n, 30)):
            t0 = time.perf_counter()
            net = await pn.setup(f"b{i}", "default", f"b{i}")
            cid = await rt.create(
                ContainerSpec(name="c", image="busybox", command=["sleep", "3600"], netns=net.netns)
            )
            await rt.start(cid)
            base.append(time.perf_counter() - t0)
        for c in await rt.list():
            await rt.remove(c.id)
        for i in range(min(n, 30)):
            await pn.teardown(f"b{i}")

        root = os.path.join(tmp, "node")
        kl = Kubelet(client, "bench-node", RuncRuntime(root, ImageStore(os.path.join(tmp, "images"))), root_dir=root,
                     pod_networks=networks(root, "hk-kl-node"), node_ip="127.0.0.1")  # fmt: skip
        await kl.start()
        created: dict[str, float] = {}
        running: dict[str, float] = {}

        async def watch() -> None:
            async for ev in client.watch(PODS, "default"):
                name = ev.object["metadata"]["name"]
                if (ev.object.get("status") or {}).get("phase") == "Running" and name not in running:
                    running[name] = time.perf_counter()
                    if len(running) == n:
                        return

        wt = asyncio.create_task(watch())
        await asyncio.sleep(0.5)
        for i in range(n):
            body = {"metadata": {"name": f"p{i}"}, "spec": {"nodeName": "bench-node", "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}}  # fmt: skip
            created[f"p{i}"] = time.perf_counter()
            await client.create(PODS, body, "default")
        await asyncio.wait_for(wt, 600)
        lat = [running[k] - created[k] for k in created]
        rows += [
            {"metric": f"pod startup p50 ({n} pods, runc)", "value": pct(lat, 50) * 1000, "unit": "ms",
             "ratio": pct(lat, 50) / pct(base, 50), "baseline": "x runtime+CNI alone"},
            {"metric": f"pod startup p99 ({n} pods, runc)", "value": pct(lat, 99) * 1000, "unit": "ms",
             "ratio": pct(lat, 99) / 5.0, "baseline": "of upstream's 5 s SLO"},
            {"metric": "runtime+CNI alone p50 (baseline)", "value": pct(base, 50) * 1000, "unit": "ms"},
        ]  # fmt: skip
        await client.delete_collection(PODS, "default")
        deadline = time.monotonic() + 300
        while kl.workers and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        await kl.stop()
    finally:
        await client.close()
        proc.terminate()
        proc.wait(30)
        subprocess.run(["ip", "netns", "delete", netns], capture_output=True)
        for ns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split():
            if ns.startswith(f"hk-kl-b{tag}-"):
                subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
    return rows


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def hollow_density(n: int, window: float, tmp: str) -> list[dict[str, Any]]:
    from hyperkube.client import Client
    from hyperkube.kubelet.hollow import HollowNodes

    os.makedirs(os.path.join(tmp, "hapi"))
    proc, url, kubeconfig = start_server(os.path.join(tmp, "hapi"))
    client = Client.from_kubeconfig(kubeconfig, max_connections=32)
    try:
        rss0 = _rss()
        t0 = time.perf_counter()
        nodes = HollowNodes(client, n, root_dir=os.path.join(tmp, "hollow"))
        await nodes.start()
        reg = time.perf_counter() - t0
        await asyncio.sleep(min(10.0, window))  # first lease round
        rss1 = _rss()
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        r0 = sum(k.lease_renewals for k in nodes.kubelets.values())
        w0 = time.perf_counter()
        await asyncio.sleep(window)
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        elapsed = time.perf_counter() - w0
        renewals = sum(k.lease_renewals for k in nodes.kubelets.values()) - r0
        cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        await nodes.stop()
    finally:
        await client.close()
        proc.terminate()
        proc.wait(30)
    per_node_cpu = cpu / elapsed / n  # cores per node
    return [
        {"metric": f"hollow nodes registered ({n})", "value": n / reg, "unit": "nodes/s"},
        {"metric": "hollow node memory", "value": (rss1 - rss0) / n / 1024, "unit": "KiB/node"},
        {"metric": "lease renewals done", "value": renewals / elapsed, "unit": "per s",
         "ratio": renewals / elapsed / (n / 10.0), "baseline": "of the n/10 s upstream's 10 s period needs"},
        {"metric": "hollow node CPU (steady, leases every 10 s)", "value": per_node_cpu * 1e6, "unit": "µs CPU/s per node",
         "ratio": 0.1 / per_node_cpu if per_node_cpu else None, "baseline": "x denser than kubemark's 10 nodes/core"},
    ]  # fmt: skip


def main() -> int:
    p = parser(__doc__ or "")
    p.add_argument("--pods", type=int, default=None)
    p.add_argument("--hollow", type=int, default=None)
    p.add_argument("--window", type=float, default=None)
    p.add_argument("--only", choices=["startup", "hollow"], default=None, help="run one of the two parts")
    args = p.parse_args()
    pods = args.pods or (20 if args.quick else 100)
    hollow = args.hollow or (200 if args.quick else 5000)
    window = args.window or (10.0 if args.quick else 30.0)
    tmp = tempfile.mkdtemp(prefix="hk-kl-bench-")
    rows: list[dict[str, Any]] = []
    try:
        try:
            import uvloop

            factory = uvloop.new_event_loop
        except ImportError:
            factory = None
        with asyncio.Runner(loop_factory=factory) as runner:
            if args.only != "hollow":
                if os.geteuid() == 0 and shutil.which("runc"):
                    rows += runner.run(startup_latency(pods, tmp))
                else:
                    print("# pod startup latency skipped: needs root and runc", file=sys.stderr)
            if args.only != "startup":
                rows += runner.run(hollow_density(hollow, window, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report("kubelet", rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
