"""Kubelet benchmarks: pod startup latency on a runc node, and hollow-node density.

1. **Pod startup latency** (root + runc): a real ``hyperkube server`` (SQLite), one kubelet in this
   process with the runc runtime and CNI inside a network namespace made for the run; N pods (busybox,
   ``sleep``) are created bound to the node; latency = pod created -> status Running seen by a watch.
   Baseline in the same run: the runtime alone (netns + CNI ADD + create + start of the same containers,
   no API server), i.e. the floor the kubelet adds its overhead to. Upstream's SLO: p99 <= 5 s.
2. **Hollow nodes**: N hollow kubelets in this process against the same server; after registration, the
   process's RSS growth per node and its CPU time per node over a steady-state window (leases every 10 s,
   status checks) are reported. kubemark's rule of thumb is ~10 hollow nodes per core.
3. **Hollow cluster** (issue 7's integration at full size): the real API server, ``hyperkube scheduler``,
   ``hyperkube controller-manager`` and ``hyperkube kubelet --hollow N`` as separate processes; a Deployment
   of M replicas; reported: time from the Deployment's create to M pods Running, as pods/s, and whether
   every node stayed Ready. Baseline in the same run: the API server alone creating the same M pods
   (already bound, no controllers), i.e. the store's write floor. Default 1,000 nodes / 30,000 pods
   (``--quick``: 100 / 1,000).

    python -m benchmarks.kubelet [--quick] [--pods 100] [--hollow 5000] [--window 30] [--only startup|hollow|cluster]
                                 [--cluster-nodes 1000] [--cluster-pods 30000] [--json FILE]
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


def _spawn(tmp: str, name: str, *args: str) -> subprocess.Popen[bytes]:
    log = open(os.path.join(tmp, f"{name}.log"), "wb")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(
        [sys.executable, "-m", "hyperkube.cli.main", *args], stdout=log, stderr=subprocess.STDOUT
    )


def _ready(node: dict[str, Any]) -> bool:
    conds = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


async def _count_running(client: Any, ns: str) -> int:
    from hyperkube.client import PODS

    n = 0
    async for page in client.iter_pages(PODS, ns, page_size=5000):
        n += sum(1 for p in page["items"] if (p.get("status") or {}).get("phase") == "Running")
    return n


async def hollow_cluster(nodes: int, pods: int, tmp: str) -> list[dict[str, Any]]:
    from hyperkube.client import DEPLOYMENTS, NAMESPACES, NODES, PODS, Client

    d = os.path.join(tmp, "capi")
    os.makedirs(d)
    proc, url, kubeconfig = start_server(d)
    procs = [
        _spawn(tmp, "controller-manager", "controller-manager", "--kubeconfig", kubeconfig, "--secure-port", "0",
               "--node-monitor-grace-period", "40s"),
        _spawn(tmp, "scheduler", "scheduler", "--kubeconfig", kubeconfig, "--secure-port", "0", "--leader-elect",
               "false"),
        _spawn(tmp, "hollow", "kubelet", "--hollow", str(nodes), "--kubeconfig", kubeconfig, "--data-dir",
               os.path.join(tmp, "hollow-cluster"), "--quiet"),
    ]  # fmt: skip
    client = Client.from_kubeconfig(kubeconfig, max_connections=16)
    try:
        deadline = time.monotonic() + 600
        while True:
            items = (await client.list(NODES))["items"]
            if len(items) == nodes and all(_ready(n) for n in items):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(items)} of {nodes} hollow nodes registered")
            await asyncio.sleep(1)
        # baseline: the API server alone writing the same number of (already bound) pods
        await client.create(NAMESPACES, {"metadata": {"name": "floor"}})
        sem = asyncio.Semaphore(16)

        async def one(i: int) -> None:
            async with sem:
                await client.create(PODS, {"metadata": {"name": f"f-{i}"}, "spec": {
                    "nodeName": "no-such-node", "containers": [{"name": "c", "image": "busybox"}]}}, "floor")  # fmt: skip

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(pods)))
        floor = time.perf_counter() - t0
        deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "load"}, "spec": {
            "replicas": pods, "selector": {"matchLabels": {"app": "load"}}, "template": {
                "metadata": {"labels": {"app": "load"}}, "spec": {"containers": [{"name": "c", "image": "busybox",
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}}}  # fmt: skip
        t0 = time.perf_counter()
        await client.create(DEPLOYMENTS, deploy, "default")
        deadline = time.monotonic() + 3600
        while (running := await _count_running(client, "default")) < pods:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {running} of {pods} pods Running after an hour")
            await asyncio.sleep(2)
        took = time.perf_counter() - t0
        items = (await client.list(NODES))["items"]
        not_ready = [n["metadata"]["name"] for n in items if not _ready(n)]
    finally:
        await client.close()
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(60)
        proc.terminate()
        proc.wait(30)
    return [
        {"metric": f"Deployment of {pods} pods on {nodes} hollow nodes: all Running", "value": took, "unit": "s"},
        {"metric": "pods Running per second (controller-manager + scheduler + hollow kubelets)",
         "value": pods / took, "unit": "pods/s", "ratio": floor / took,
         "baseline": f"of the API server alone creating {pods} bound pods ({pods / floor:.0f}/s)"},
        {"metric": "nodes not Ready after the run", "value": len(not_ready), "unit": "nodes"},
    ]  # fmt: skip


def main() -> int:
    p = parser(__doc__ or "")
    p.add_argument("--pods", type=int, default=None)
    p.add_argument("--hollow", type=int, default=None)
    p.add_argument("--window", type=float, default=None)
    p.add_argument(
        "--only", choices=["startup", "hollow", "cluster"], default=None, help="run one of the parts"
    )
    p.add_argument("--cluster-nodes", type=int, default=None, help="hollow nodes of the cluster run (1000)")
    p.add_argument(
        "--cluster-pods", type=int, default=None, help="Deployment replicas of the cluster run (30000)"
    )
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
            if args.only in (None, "startup"):
                if os.geteuid() == 0 and shutil.which("runc"):
                    rows += runner.run(startup_latency(pods, tmp))
                else:
                    print("# pod startup latency skipped: needs root and runc", file=sys.stderr)
            if args.only in (None, "hollow"):
                rows += runner.run(hollow_density(hollow, window, tmp))
            if args.only in (None, "cluster"):
                cn = args.cluster_nodes or (100 if args.quick else 1000)
                cp = args.cluster_pods or (1000 if args.quick else 30000)
                rows += runner.run(hollow_cluster(cn, cp, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report("kubelet", rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
