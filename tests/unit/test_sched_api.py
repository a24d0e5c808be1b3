"""The embedding API (hyperkube.scheduler) and ``hyperkube schedule``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hyperkube import _native
from hyperkube.cli.main import main
from hyperkube.scheduler import Cluster, SpecError, node_spec, pod_spec, profile_from_config
from tests.reference.sched import RefCluster


def node(
    name: str, cpu: str = "4", mem: str = "32Gi", labels: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": spec,
        "status": {"allocatable": {"cpu": cpu, "memory": mem, "pods": "110"}},
    }


def pod(
    name: str, cpu: str | None = "100m", labels: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    c: dict[str, Any] = {"name": "c", "image": "pause"}
    if cpu:
        c["resources"] = {"requests": {"cpu": cpu, "memory": "64Mi"}}
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": {"containers": [c], **spec}}


GPU_TAINT = [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]


def test_fit_error_message_counts_and_sorts_reasons_as_upstream() -> None:
    # upstream sorts the "<count> <reason>" strings (sort.Strings), so "2 node(s)" < "3 Insufficient"
    nodes = [node(f"small-{i}", cpu="1") for i in range(3)] + [
        node(f"gpu-{i}", taints=GPU_TAINT) for i in range(2)
    ]
    c = Cluster(nodes)
    p = c.place_one(pod("big", cpu="2"))
    assert p.node is None
    assert p.message == (
        "0/5 nodes are available: 2 node(s) had untolerated taint {dedicated: gpu}, 3 Insufficient cpu."
    )
    tolerating = pod("big2", cpu="2", tolerations=[{"key": "dedicated", "operator": "Exists"}])
    assert c.place_one(tolerating).node in {"gpu-0", "gpu-1"}


def test_each_pod_sees_previous_placements_and_remove_pod_frees_room() -> None:
    c = Cluster([node("a", cpu="1"), node("b", cpu="1")], seed=3)
    res = c.place([pod(f"p{i}", cpu="600m") for i in range(3)])
    assert sorted(r.node or "" for r in res[:2]) == ["a", "b"]
    assert res[2].node is None and "2 Insufficient cpu" in (res[2].message or "")
    assert c.remove_pod(res[0].pod)
    assert c.place_one(pod("p3", cpu="600m")).node == res[0].node
    cols = c.columns()
    assert cols["requested_cpu"].tolist() == [600, 600]
    assert cols["allocatable_cpu"].tolist() == [1000, 1000]


def test_least_allocated_spreads_and_most_allocated_packs() -> None:
    nodes = [node(f"n{i}") for i in range(4)]
    spread = Cluster(nodes, seed=1).place([pod(f"p{i}", cpu="500m") for i in range(4)])
    assert len({r.node for r in spread}) == 4
    cfg = {
        "profiles": [
            {
                "pluginConfig": [
                    {"name": "NodeResourcesFit", "args": {"scoringStrategy": {"type": "MostAllocated"}}}
                ]
            }
        ]
    }
    # requests in the nodes' cpu:memory proportion keep BalancedAllocation equal everywhere
    packed = Cluster(nodes, config=cfg, seed=1).place([pod(f"p{i}", cpu="1", mem="8Gi") for i in range(4)])
    assert len({r.node for r in packed}) == 1


def test_seed_makes_ties_reproducible_and_first_is_deterministic() -> None:
    nodes = [node(f"n{i}") for i in range(50)]
    pods = [pod(f"p{i}", cpu=None) for i in range(20)]
    a = [r.node for r in Cluster(nodes, seed=42).place(pods)]
    b = [r.node for r in Cluster(nodes, seed=42).place(pods)]
    assert a == b and len(set(a)) > 1
    first = Cluster(nodes).place_one(pods[0], tie_break="first")
    assert first.node == "n0"


def test_generate_name_yaml_and_arrays() -> None:
    c = Cluster.from_yaml(
        "apiVersion: v1\nkind: List\nitems:\n- metadata: {name: x}\n  status: {capacity: {cpu: '2', memory: 1Gi, pods: '3'}}\n"
    )
    r = c.place([{"metadata": {"generateName": "web-"}, "spec": {"containers": [{"name": "c"}]}}] * 4)
    assert [x.node for x in r] == ["x", "x", "x", None]
    assert r[0].pod.startswith("default/web-") and r[0].pod != r[1].pod
    assert r[3].message == "0/1 nodes are available: 1 Too many pods."
    arr = Cluster.from_arrays(
        ["a", "b"], np.array([1000, 2000]), np.array([2**30, 2**30]), np.array([10, 10]), seed=0
    )
    assert arr.node_names == ["a", "b"]
    assert arr.place_one(pod("p", cpu="1500m")).node == "b"


def test_weights_config_and_errors() -> None:
    prof = profile_from_config(
        {
            "profiles": [
                {
                    "plugins": {
                        "score": {
                            "disabled": [{"name": "*"}],
                            "enabled": [{"name": "ImageLocality", "weight": 5}],
                        }
                    }
                }
            ]
        }
    )
    assert prof["weights"]["ImageLocality"] == 5 and prof["weights"]["TaintToleration"] == 0
    with pytest.raises(SpecError, match="unknown plugin"):
        profile_from_config({"weights": {"Bogus": 1}})
    with pytest.raises(SpecError, match="Unsupported value"):
        profile_from_config(
            {
                "profiles": [
                    {
                        "pluginConfig": [
                            {"name": "NodeResourcesFit", "args": {"scoringStrategy": {"type": "X"}}}
                        ]
                    }
                ]
            }
        )
    with pytest.raises(SpecError, match=r"spec.containers\[0\].resources.requests\[cpu\]"):
        Cluster([node("a")]).place_one(pod("bad", cpu="lots"))
    bad = Cluster([node("a")]).place_one(
        pod(
            "bad2",
            affinity={
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [{"key": "a", "operator": "Near"}]}]
                    }
                }
            },
        )
    )
    assert bad.node is None
    assert bad.message == 'invalid pod default/bad2: "Near" is not a valid operator'


def _agree(
    nodes: list[dict[str, Any]], running: list[tuple[dict[str, Any], str]], incoming: list[dict[str, Any]]
) -> None:
    engine = _native.SchedCluster(None, 5)
    ref = RefCluster()
    engine.upsert_nodes([node_spec(n) for n in nodes])
    for n in nodes:
        ref.add_node(node_spec(n))
    specs = [(pod_spec(p), n) for p, n in running]
    engine.add_pods(specs)
    for s, n in specs:
        ref.add_pod(s, n)
    for p in incoming:
        s = pod_spec(p)
        ev, rv = engine.scores(s), ref.evaluate(s)
        assert "error" not in rv
        assert list(ev["nodes"]) == rv["nodes"]
        for k, v in rv["plugins"].items():
            assert ev["plugins"][k].tolist() == v, k
        best, _ = ref.best(s)
        chosen, _ = engine.place([s])
        assert chosen[0] in best
        ref.add_pod(s, chosen[0])


def test_soft_spread_preferred_affinities_match_reference() -> None:
    zones = ["z1", "z1", "z2", "z2", "z3", "z3"]
    nodes = [
        node(f"n{i}", labels={"zone": z, "disk": "ssd" if i % 2 else "hdd"}) for i, z in enumerate(zones)
    ]
    running = [(pod(f"r{i}", labels={"app": "web"}), f"n{i % 3}") for i in range(5)]
    spread = {
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app": "web"}},
            },
            {
                "maxSkew": 2,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app": "web"}},
            },
        ]
    }
    affinity = {
        "affinity": {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 30,
                        "preference": {
                            "matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]
                        },
                    }
                ]
            },
            "podAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 10,
                        "podAffinityTerm": {
                            "labelSelector": {"matchLabels": {"app": "web"}},
                            "topologyKey": "zone",
                        },
                    }
                ]
            },
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 50,
                        "podAffinityTerm": {
                            "labelSelector": {"matchLabels": {"app": "web"}},
                            "topologyKey": "kubernetes.io/hostname",
                        },
                    }
                ]
            },
        }
    }
    _agree(
        nodes,
        running,
        [pod(f"s{i}", labels={"app": "web"}, **spread) for i in range(6)]
        + [pod(f"a{i}", labels={"app": "web"}, **affinity) for i in range(6)],
    )


def test_hard_spread_and_anti_affinity_place_as_upstream() -> None:
    nodes = [node(f"n{i}", labels={"zone": f"z{i % 3}"}) for i in range(9)]
    hard = {
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "zone",
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app": "db"}},
            }
        ]
    }
    c = Cluster(nodes, seed=9)
    res = c.place([pod(f"d{i}", labels={"app": "db"}, **hard) for i in range(9)])
    per_zone = {
        z: sum(1 for r in res if r.node and int(r.node[1:]) % 3 == int(z[1])) for z in ("z0", "z1", "z2")
    }
    assert per_zone == {"z0": 3, "z1": 3, "z2": 3}
    anti = {
        "affinity": {
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "solo"}}, "topologyKey": "zone"}
                ]
            }
        }
    }
    res = c.place([pod(f"s{i}", labels={"app": "solo"}, **anti) for i in range(4)])
    assert len({int((r.node or "n-1")[1:]) % 3 for r in res[:3]}) == 3
    assert res[3].message == "0/9 nodes are available: 9 node(s) didn't match pod anti-affinity rules."
    # a pod that the existing pods' anti-affinity rejects
    res = c.place_one(pod("intruder", labels={"app": "solo"}))
    assert (
        res.message == "0/9 nodes are available: 9 node(s) didn't satisfy existing pods anti-affinity rules."
    )
    _agree(nodes, [], [pod(f"x{i}", labels={"app": "db"}, **hard) for i in range(5)])


def test_schedule_command_prints_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    nodes = tmp_path / "nodes.yaml"
    pods = tmp_path / "pods.yaml"
    nodes.write_text(yaml.safe_dump_all([node("worker-1", cpu="1"), node("gpu-1", taints=GPU_TAINT)]))
    pods.write_text(yaml.safe_dump_all([pod("web-1", cpu="500m"), pod("huge", cpu="3")]))
    rc = main(["schedule", "--nodes", str(nodes), "--pods", str(pods), "--seed", "1"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 1
    assert out[0].split() == ["NAMESPACE", "POD", "NODE"]
    assert out[1].split() == ["default", "web-1", "worker-1"]
    assert out[2].split()[:3] == ["default", "huge", "<none>"]
    assert out[2].endswith(
        "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}."
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("metadata: {name: n}\nstatus: {allocatable: {cpu: nope}}\n")
    assert main(["schedule", "--nodes", str(bad), "--pods", str(pods)]) == 2
    assert "status.allocatable[cpu]" in capsys.readouterr().err


def test_scheduler_command_rejects_a_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("profiles:\n- plugins:\n    score:\n      enabled:\n      - name: NoSuchPlugin\n")
    assert main(["scheduler", "--kubeconfig", str(tmp_path / "kc"), "--config", str(cfg)]) == 2
    assert "unknown plugin 'NoSuchPlugin'" in capsys.readouterr().err
    assert main(["scheduler"]) == 2


def test_requests_fast_path_matches_pod_requests() -> None:
    from hyperkube.scheduler.specs import pod_requests, requests_and_nonzero

    specs = [
        {
            "containers": [
                {"name": "a"},
                {"name": "b", "resources": {"requests": {"cpu": "250m", "nvidia.com/gpu": "1"}}},
            ]
        },
        {"containers": [{"name": "a", "resources": {"requests": {"memory": "1Gi", "cpu": "0"}}}]},
        {
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}],
            "initContainers": [
                {"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "500m"}}},
                {"name": "i", "resources": {"requests": {"cpu": "2", "memory": "1Gi"}}},
            ],
            "overhead": {"cpu": "10m"},
        },
    ]
    for spec in specs:
        reqs, nonzero = requests_and_nonzero(spec)
        assert reqs == pod_requests(spec, False)
        full = pod_requests(spec, True)
        assert (nonzero["cpu"], nonzero["memory"]) == (full["cpu"], full["memory"])
    # sidecar + init container: max(1 + 0.5, 2 + 0.5) + overhead
    assert pod_requests(specs[2], False)["cpu"] == 2510
