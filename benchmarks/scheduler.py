"""Scheduler engine throughput on scheduler_perf's workloads (test/integration/scheduler_perf).

Each workload builds nodes and pods from scheduler_perf's templates (node-default.yaml: 4 cpu,
32Gi, 110 pods; pod-default.yaml: 100m / 500Mi; the topology-spreading, anti-affinity and
node-affinity pod templates), places the ``init`` pods, then times placing the ``measured`` pods
in one batch: every feasible node is filtered and scored for every pod (upstream's CI scores 10%
of 5,000 nodes). Two engine figures: ``engine`` places a prepared PodBatch (the compiled path);
``api`` includes turning Pod dicts into specs (``Cluster.place(dicts)``).

``--e2e`` adds SchedulingBasic end to end: a real ``hyperkube server`` and ``hyperkube scheduler``,
nodes as API objects (no kubelets, as scheduler_perf), pods created concurrently; pods bound per
second from the first create to the last binding.

Wall-clock figures depend on what else the machine runs; the engine is single-threaded, so its
rate per CPU-second (process time) is printed too.

Baseline in the same run: the plain-Python reference scheduler (tests/reference/sched.py) on the
same cluster, timed on the first few measured pods only (it is too slow for all of them; the
count is printed). Upstream's figures are kube-scheduler's scheduler_perf CI results (pods/s).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from benchmarks._common import parser, report
from hyperkube.scheduler import Cluster, node_spec, pod_spec
from tests.reference.sched import RefCluster

PAUSE = "registry.k8s.io/pause:3.10"


def node_default(i: int, labels: dict[str, str] | None = None) -> dict[str, Any]:
    name = f"scheduler-perf-{i}"
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {},
        "status": {
            "capacity": {"pods": "110", "cpu": "4", "memory": "32Gi"},
            "allocatable": {"pods": "110", "cpu": "4", "memory": "32Gi"},
        },
    }


def _container() -> dict[str, Any]:
    res = {"cpu": "100m", "memory": "500Mi"}
    return {
        "image": PAUSE,
        "name": "pause",
        "ports": [{"containerPort": 80}],
        "resources": {"limits": res, "requests": res},
    }


def pod_default(name: str, ns: str = "default") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"containers": [_container()]}}


def pod_spreading(name: str, ns: str = "default") -> dict[str, Any]:
    p = pod_default(name, ns)
    p["metadata"]["labels"] = {"color": "blue"}
    p["spec"]["topologySpreadConstraints"] = [
        {
            "maxSkew": 5,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"color": "blue"}},
        }
    ]
    return p


def pod_anti_affinity(name: str, ns: str) -> dict[str, Any]:
    p = pod_default(name, ns)
    p["metadata"]["labels"] = {"color": "green", "name": "test"}
    p["spec"]["affinity"] = {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": {"color": "green"}},
                    "topologyKey": "kubernetes.io/hostname",
                    "namespaces": ["sched-1", "sched-0"],
                }
            ]
        }
    }
    return p


def pod_node_affinity(name: str, ns: str = "default") -> dict[str, Any]:
    p = pod_default(name, ns)
    p["spec"]["affinity"] = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {
                                "key": "topology.kubernetes.io/zone",
                                "operator": "In",
                                "values": ["zone1", "zone2"],
                            }
                        ]
                    }
                ]
            }
        }
    }
    return p


Workload = tuple[
    str,
    int,
    int,
    int,
    Callable[[int], dict[str, Any]],
    Callable[[int], dict[str, Any]],
    Callable[[int], dict[str, Any]],
    float,
]

ZONES = ["moon-1", "moon-2", "moon-3"]


def workloads(quick: bool) -> list[Workload]:
    s = 10 if quick else 1
    return [
        (
            "SchedulingBasic",
            5000 // s,
            1000 // s,
            10000 // s,
            node_default,
            lambda i: pod_default(f"init-{i}"),
            lambda i: pod_default(f"pod-{i}"),
            270,
        ),
        (
            "SchedulingBasic",
            15000 // s,
            1000 // s,
            30000 // s,
            node_default,
            lambda i: pod_default(f"init-{i}"),
            lambda i: pod_default(f"pod-{i}"),
            390,
        ),
        (
            "TopologySpreading",
            5000 // s,
            5000 // s,
            5000 // s,
            lambda i: node_default(i, {"topology.kubernetes.io/zone": ZONES[i % 3]}),
            lambda i: pod_default(f"init-{i}"),
            lambda i: pod_spreading(f"spreading-pod-{i}"),
            85,
        ),
        (
            "PodAntiAffinity",
            5000 // s,
            1000 // s,
            2000 // s,
            node_default,
            lambda i: pod_anti_affinity(f"init-{i}", "sched-0"),
            lambda i: pod_anti_affinity(f"anti-affinity-pod-{i}", "sched-1"),
            60,
        ),
        (
            "NodeAffinity",
            5000 // s,
            5000 // s,
            10000 // s,
            lambda i: node_default(i, {"topology.kubernetes.io/zone": "zone1"}),
            lambda i: pod_default(f"init-{i}"),
            lambda i: pod_node_affinity(f"node-affinity-{i}"),
            220,
        ),
    ]


def run_workload(w: Workload, ref_pods: int) -> dict[str, Any]:
    name, n_nodes, n_init, n_measure, mk_node, mk_init, mk_pod, upstream = w
    nodes = [mk_node(i) for i in range(n_nodes)]
    init = [mk_init(i) for i in range(n_init)]
    measured = [mk_pod(i) for i in range(n_measure)]

    cluster = Cluster(nodes, seed=1)
    assert all(r.node for r in cluster.place(init)), "init pods must fit"
    batch = cluster.prepare(measured)
    t0, c0 = time.perf_counter(), time.process_time()
    res = cluster.place(batch)
    t_engine = time.perf_counter() - t0
    c_engine = time.process_time() - c0
    placed = sum(1 for r in res if r.node)
    assert placed == n_measure, (
        f"{name}: {n_measure - placed} pods unschedulable: {next(r.message for r in res if not r.node)}"
    )

    cluster2 = Cluster(nodes, seed=1)
    cluster2.place(init)
    t0 = time.perf_counter()
    cluster2.place(measured)
    t_api = time.perf_counter() - t0

    ref = RefCluster()
    for n in nodes:
        ref.add_node(node_spec(n))
    # Running pods for the reference are taken from the engine's placements (same cluster state).
    cluster3 = Cluster(nodes, seed=1)
    for r, p in zip(cluster3.place(init), init, strict=True):
        ref.add_pod(pod_spec(p), r.node or "")
    k = min(ref_pods, n_measure)
    specs = [pod_spec(p) for p in measured[:k]]
    t0 = time.perf_counter()
    for s in specs:
        node, err = ref.place(s)
        assert err is None, err
    t_ref = time.perf_counter() - t0
    return {
        "workload": f"{name} {n_nodes:,} nodes / {n_measure:,} pods",
        "engine": n_measure / t_engine,
        "engine_cpu": n_measure / c_engine,
        "api": n_measure / t_api,
        "reference": k / t_ref,
        "reference_pods": k,
        "upstream": upstream,
    }


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--only", help="run only workloads whose name contains this")
    p.add_argument("--ref-pods", type=int, default=5, help="measured pods timed on the reference (default 5)")
    p.add_argument(
        "--e2e", action="store_true", help="also run SchedulingBasic end to end through the API server"
    )
    p.add_argument("--e2e-only", action="store_true", help="only the end-to-end run")
    args = p.parse_args()
    rows = []
    for w in workloads(args.quick):
        if args.e2e_only or (args.only and args.only not in w[0]):
            continue
        r = run_workload(w, args.ref_pods)
        rows.append(
            {
                "metric": f"{r['workload']}: python reference ({r['reference_pods']} pods)",
                "value": r["reference"],
                "unit": "pods/s",
                "ratio": None,
            }
        )
        rows.append(
            {
                "metric": f"{r['workload']}: engine (PodBatch)",
                "value": r["engine"],
                "unit": "pods/s",
                "ratio": r["engine"] / r["reference"],
                "baseline": "reference",
            }
        )
        rows.append(
            {
                "metric": f"{r['workload']}: engine (PodBatch), per CPU-second",
                "value": r["engine_cpu"],
                "unit": "pods/s",
                "ratio": None,
            }
        )
        rows.append(
            {
                "metric": f"{r['workload']}: api (Pod dicts)",
                "value": r["api"],
                "unit": "pods/s",
                "ratio": r["api"] / r["reference"],
                "baseline": "reference",
            }
        )
        rows.append(
            {
                "metric": f"{r['workload']}: upstream kube-scheduler CI",
                "value": r["upstream"],
                "unit": "pods/s",
                "ratio": r["engine"] / r["upstream"],
                "baseline": "engine vs upstream",
            }
        )
    if args.e2e or args.e2e_only:
        n_nodes, n_pods = (500, 1000) if args.quick else (5000, 10000)
        e = run_e2e(n_nodes, n_pods)
        w = f"SchedulingBasic end to end (API server + scheduler) {n_nodes:,} nodes / {n_pods:,} pods"
        rows.append(
            {
                "metric": f"{w}: pods created (client, 64 in flight)",
                "value": e["created"],
                "unit": "pods/s",
                "ratio": None,
            }
        )
        rows.append(
            {
                "metric": f"{w}: backlog of pending pods bound",
                "value": e["backlog"],
                "unit": "pods/s",
                "ratio": e["backlog"] / 270,
                "baseline": "vs upstream CI 270 pods/s",
            }
        )
        rows.append(
            {
                "metric": f"{w}: pods bound while being created",
                "value": e["bound"],
                "unit": "pods/s",
                "ratio": e["bound"] / 270,
                "baseline": "vs upstream CI 270 pods/s",
            }
        )
    report("scheduler (scheduler_perf workloads, every node scored)", rows, args.json)


# ---- end to end: the daemon through the API server ---------------------------------------------


def run_e2e(n_nodes: int, n_pods: int) -> dict[str, Any]:
    """SchedulingBasic through a real ``hyperkube server`` (SQLite) and ``hyperkube scheduler``:
    nodes are API objects (no kubelets, as in scheduler_perf); pods are created concurrently
    while the scheduler runs; the figure is pods bound per second from the first create to the
    last binding."""
    import asyncio
    import re
    import subprocess
    import sys
    import tempfile
    import urllib.request
    from pathlib import Path

    from hyperkube.client import NODES, PODS, Client
    from tests.integration.conftest import start_apiserver

    tmp = Path(tempfile.mkdtemp(prefix="hk-sched-bench-"))
    srv = start_apiserver(tmp / "hk")
    sched = None
    try:

        async def setup() -> None:
            async with Client.from_kubeconfig(srv.kubeconfig) as c:
                sem = asyncio.Semaphore(64)

                async def one(i: int) -> None:
                    async with sem:
                        body = node_default(i)
                        body.update({"apiVersion": "v1", "kind": "Node"})
                        await c.create(NODES, body)

                await asyncio.gather(*(one(i) for i in range(n_nodes)))

        asyncio.run(setup())

        def start_scheduler(tag: str) -> tuple[subprocess.Popen[bytes], str]:
            path = tmp / f"scheduler-{tag}.log"
            proc = subprocess.Popen(
                [sys.executable, "-m", "hyperkube.cli.main", "scheduler", "--kubeconfig", srv.kubeconfig]
                + ["--port", "0", "--leader-elect", "false"],
                stdout=open(path, "wb"),  # noqa: SIM115
                stderr=subprocess.STDOUT,
            )
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                m = re.search(r"on (http://[0-9.:]+)", path.read_text())
                if m:
                    return proc, m.group(1)
                time.sleep(0.1)
            raise RuntimeError("scheduler did not start: " + path.read_text())

        def bound(url: str) -> int:
            with urllib.request.urlopen(url + "/metrics", timeout=30) as r:
                m = re.search(r'scheduler_bindings_total\{result="ok"\} (\d+)', r.read().decode())
            return int(m.group(1)) if m else 0

        def wait_ready(url: str) -> None:
            while True:
                try:
                    with urllib.request.urlopen(url + "/readyz", timeout=30) as r:
                        if r.status == 200:
                            return
                except OSError:
                    pass
                time.sleep(0.05)

        def wait_bound(url: str, n: int, t0: float) -> float:
            while bound(url) < n:
                if time.perf_counter() - t0 > 900:
                    raise RuntimeError(f"only {bound(url)} of {n} pods bound in 900 s")
                time.sleep(0.05)
            return time.perf_counter() - t0

        async def create(prefix: str) -> float:
            async with Client.from_kubeconfig(srv.kubeconfig) as c:
                sem = asyncio.Semaphore(64)

                async def one(i: int) -> None:
                    async with sem:
                        body = pod_default(f"{prefix}-{i}")
                        body.update({"apiVersion": "v1", "kind": "Pod"})
                        await c.create(PODS, body, "default")

                t0 = time.perf_counter()
                await asyncio.gather(*(one(i) for i in range(n_pods)))
                return time.perf_counter() - t0

        # 1. pods created while the scheduler runs (as scheduler_perf does)
        sched, url = start_scheduler("live")
        wait_ready(url)
        t0 = time.perf_counter()
        t_created = asyncio.run(create("live"))
        live = n_pods / wait_bound(url, n_pods, t0)
        sched.terminate()
        sched.wait(10)
        # 2. a backlog of pending pods, then the scheduler: its own rate, from informers synced
        asyncio.run(create("backlog"))
        sched, url = start_scheduler("backlog")
        wait_ready(url)
        backlog = n_pods / wait_bound(url, n_pods, time.perf_counter())
        return {"created": n_pods / t_created, "bound": live, "backlog": backlog}
    finally:
        if sched is not None:
            sched.terminate()
            sched.wait(10)
        srv.stop()


if __name__ == "__main__":
    main()
