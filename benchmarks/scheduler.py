"""Scheduler engine throughput on scheduler_perf's workloads (test/integration/scheduler_perf).

Each workload builds nodes and pods from scheduler_perf's templates (node-default.yaml: 4 cpu,
32Gi, 110 pods; pod-default.yaml: 100m / 500Mi; the topology-spreading, anti-affinity and
node-affinity pod templates), places the ``init`` pods, then times placing the ``measured`` pods
in one batch: every feasible node is filtered and scored for every pod (upstream's CI scores 10%
of 5,000 nodes). Two engine figures: ``engine`` places a prepared PodBatch (the compiled path);
``api`` includes turning Pod dicts into specs (``Cluster.place(dicts)``).

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
    t0 = time.perf_counter()
    res = cluster.place(batch)
    t_engine = time.perf_counter() - t0
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
        "api": n_measure / t_api,
        "reference": k / t_ref,
        "reference_pods": k,
        "upstream": upstream,
    }


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--only", help="run only workloads whose name contains this")
    p.add_argument("--ref-pods", type=int, default=5, help="measured pods timed on the reference (default 5)")
    args = p.parse_args()
    rows = []
    for w in workloads(args.quick):
        if args.only and args.only not in w[0]:
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
    report("scheduler (scheduler_perf workloads, every node scored)", rows, args.json)


if __name__ == "__main__":
    main()
