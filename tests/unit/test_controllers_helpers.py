"""Pure parts of the controllers: deletion ranking, template hashing, surge/unavailable arithmetic,
toleration matching and eviction deadlines, CIDR allocation, endpoint subsets, the registry and
the controller-manager's duration flags."""

from __future__ import annotations

import argparse

import pytest

from hyperkube.cli.controller_manager_cmd import duration
from hyperkube.controllers import registry
from hyperkube.controllers.deployment import (
    equal_ignore_hash,
    resolve,
    surge_and_unavailable,
    template_hash,
)
from hyperkube.controllers.endpoints import build_subsets, resolve_port
from hyperkube.controllers.nodeipam import CidrSet
from hyperkube.controllers.nodelifecycle import UNREACHABLE, eviction_deadline, tolerates
from hyperkube.controllers.replicaset import deletion_order


def pod(
    name: str,
    node: str = "",
    phase: str = "Running",
    ready: bool = True,
    created: str = "2026-01-01T00:00:00Z",
    restarts: int = 0,
    ready_at: str = "2026-01-01T00:00:00Z",
    labels: dict | None = None,
    ip: str = "",
    ports: list | None = None,
) -> dict:
    conds = [{"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": ready_at}]
    st = {"phase": phase, "conditions": conds, "containerStatuses": [{"name": "c", "restartCount": restarts}]}
    if ip:
        st["podIP"] = ip
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"u-{name}",
            "creationTimestamp": created,
            "labels": labels or {},
        },
        "spec": {"nodeName": node, "containers": [{"name": "c", "ports": ports or []}]},
        "status": st,
    }


def test_deletion_order_matches_upstream_ranking() -> None:
    pods = [
        pod("running-old", node="n1", created="2026-01-01T00:00:00Z"),
        pod("running-new", node="n2", created="2026-01-02T00:00:00Z"),
        pod("unscheduled", phase="Pending", ready=False),
        pod("pending", node="n3", phase="Pending", ready=False),
        pod("not-ready", node="n4", ready=False),
        pod("restarty", node="n5", restarts=5),
        pod("doubled-1", node="n6", created="2025-01-01T00:00:00Z"),
        pod("doubled-2", node="n6", created="2025-01-01T00:00:00Z"),
    ]
    names = [p["metadata"]["name"] for p in deletion_order(pods)]
    assert names[:3] == ["unscheduled", "pending", "not-ready"]
    assert set(names[3:5]) == {"doubled-1", "doubled-2"}  # two on one node go before singletons
    assert names[5] == "restarty"
    assert names[-2:] == ["running-new", "running-old"]


def test_ready_more_recently_goes_first() -> None:
    a = pod("a", node="n1", ready_at="2026-01-01T00:00:00Z")
    b = pod("b", node="n2", ready_at="2026-01-05T00:00:00Z")
    assert [p["metadata"]["name"] for p in deletion_order([a, b])] == ["b", "a"]


def test_template_hash_is_stable_and_ignores_its_own_label() -> None:
    t = {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "a"}]}}
    h = template_hash(t)
    assert h == template_hash({"spec": t["spec"], "metadata": {"labels": {"app": "x"}}})
    assert h != template_hash(t, 1)
    assert set(h) <= set("bcdfghjklmnpqrstvwxz2456789")
    labelled = {"metadata": {"labels": {"app": "x", "pod-template-hash": h}}, "spec": t["spec"]}
    assert equal_ignore_hash(t, labelled)
    other = {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "b"}]}}
    assert not equal_ignore_hash(t, other)


def test_surge_and_unavailable_rounding() -> None:
    assert resolve("25%", 5, True) == 2 and resolve("25%", 5, False) == 1
    assert resolve(3, 10, True) == 3 and resolve("3", 10, False) == 3
    d = {
        "spec": {
            "replicas": 10,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}},
        }
    }
    assert surge_and_unavailable(d) == (0, 1)  # never both zero
    d = {"spec": {"replicas": 10}}
    assert surge_and_unavailable(d) == (3, 2)
    assert surge_and_unavailable({"spec": {"replicas": 10, "strategy": {"type": "Recreate"}}}) == (0, 0)


def test_tolerations_and_eviction_deadline() -> None:
    taint = {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "2026-01-01T00:00:00Z"}
    assert tolerates({"operator": "Exists"}, taint)
    assert tolerates({"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}, taint)
    assert not tolerates({"key": UNREACHABLE, "operator": "Exists", "effect": "NoSchedule"}, taint)
    assert not tolerates({"key": "other", "operator": "Exists"}, taint)
    assert tolerates({"key": "k", "value": "v"}, {"key": "k", "value": "v", "effect": "NoExecute"})
    assert not tolerates({"key": "k", "value": "w"}, {"key": "k", "value": "v", "effect": "NoExecute"})
    t0 = 1767225600.0  # 2026-01-01T00:00:00Z
    p = {
        "spec": {
            "tolerations": [
                {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 7}
            ]
        }
    }
    assert eviction_deadline(p, [taint], 300) == t0 + 7
    assert eviction_deadline({"spec": {}}, [taint], 300) == t0 + 300  # missing toleration: the default
    forever = {"spec": {"tolerations": [{"operator": "Exists"}]}}
    assert eviction_deadline(forever, [taint], 300) is None
    assert eviction_deadline({"spec": {}}, [{"key": "custom", "effect": "NoExecute"}], 300) == 0.0
    assert eviction_deadline({"spec": {}}, [{"key": "custom", "effect": "NoSchedule"}], 300) is None


def test_cidr_allocation() -> None:
    s = CidrSet("10.244.0.0/16", 24)
    assert s.occupy("10.244.0.0/24")
    assert not s.occupy("10.99.0.0/24") and not s.occupy("10.244.0.0/25")
    assert s.allocate() == "10.244.1.0/24"
    assert s.allocate() == "10.244.2.0/24"
    s.release("10.244.1.0/24")
    small = CidrSet("10.0.0.0/30", 31)
    assert [small.allocate(), small.allocate(), small.allocate()] == ["10.0.0.0/31", "10.0.0.2/31", None]
    with pytest.raises(ValueError):
        CidrSet("10.0.0.0/16", 8)


def test_endpoint_subsets_group_by_resolved_port() -> None:
    svc = {"metadata": {"name": "s"}, "spec": {"ports": [{"name": "web", "port": 80, "targetPort": "http"}]}}
    v1 = pod("v1", node="n", ip="10.0.0.2", ports=[{"name": "http", "containerPort": 8080}])
    v2 = pod("v2", node="n", ip="10.0.0.1", ports=[{"name": "http", "containerPort": 9090}], ready=False)
    noport = pod("x", node="n", ip="10.0.0.3")
    noip = pod("y", node="n", ports=[{"name": "http", "containerPort": 8080}])
    assert resolve_port(v1, svc["spec"]["ports"][0]) == 8080
    subsets = build_subsets(svc, [v1, v2, noport, noip])
    assert subsets == [
        {
            "addresses": [
                {
                    "ip": "10.0.0.2",
                    "targetRef": {"kind": "Pod", "namespace": "ns", "name": "v1", "uid": "u-v1"},
                    "nodeName": "n",
                }
            ],
            "ports": [{"name": "web", "port": 8080, "protocol": "TCP"}],
        },
        {
            "notReadyAddresses": [
                {
                    "ip": "10.0.0.1",
                    "targetRef": {"kind": "Pod", "namespace": "ns", "name": "v2", "uid": "u-v2"},
                    "nodeName": "n",
                }
            ],
            "ports": [{"name": "web", "port": 9090, "protocol": "TCP"}],
        },
    ]


def test_registry_selection() -> None:
    assert registry.select("*") == list(registry.REGISTRY)
    assert "nodeipam" not in registry.select("*,-nodeipam")
    assert registry.select("replicaset,deployment") == ["replicaset", "deployment"]
    with pytest.raises(ValueError, match="unknown controllers: nope"):
        registry.select("*,nope")


def test_durations() -> None:
    assert (
        duration("40s") == 40
        and duration("1m30s") == 90
        and duration("500ms") == 0.5
        and duration("2.5") == 2.5
    )
    with pytest.raises(argparse.ArgumentTypeError):
        duration("forty")
