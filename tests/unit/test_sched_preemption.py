"""DefaultPreemption's victim search and node choice (hyperkube.scheduler.preemption) on a real
engine Cluster."""

from __future__ import annotations

from typing import Any

from hyperkube.scheduler import Cluster
from hyperkube.scheduler.preemption import (
    NO_VICTIMS,
    NOT_HELPFUL,
    POLICY_NEVER,
    pick_node,
    preempt,
    select_victims,
)
from hyperkube.scheduler.queue import pod_key


def node(name: str, cpu: str = "2") -> dict[str, Any]:
    alloc = {"cpu": cpu, "memory": "8Gi", "pods": "110"}
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {"allocatable": alloc},
    }


def pod(name: str, cpu: str, prio: int, node_name: str = "", start: str = "", **spec: Any) -> dict[str, Any]:
    p: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "priority": prio,
            "containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": cpu}}}],
            **spec,
        },
    }
    if node_name:
        p["spec"]["nodeName"] = node_name
    if start:
        p["status"] = {"startTime": start}
    return p


def setup(nodes: list[dict[str, Any]], pods: list[dict[str, Any]]) -> tuple[Cluster, Any]:
    c = Cluster(nodes, pods)

    def on(n: str) -> list[dict[str, Any]]:
        return [p for p in pods if p["spec"]["nodeName"] == n]

    return c, on


def names(pods: list[dict[str, Any]] | None) -> list[str]:
    return sorted(p["metadata"]["name"] for p in pods or [])


def test_reprieve_keeps_higher_priority_pods_and_leaves_cluster_unchanged() -> None:
    pods = [
        pod("a", "500m", 1, "n0"),
        pod("b", "500m", 5, "n0"),
        pod("c", "500m", 3, "n0"),
        pod("d", "500m", 100, "n0"),
    ]
    c, on = setup([node("n0")], pods)
    before = c.columns()["requested_cpu"].tolist()
    new = pod("new", "1", 10)
    victims = select_victims(c, c.pod_spec(new), 10, "n0", on("n0"))
    # 1 cpu needed, a, b, c removed: b (5) is put back first and still fits, then c (3) does
    # not, nor a (1): victims a and c; d (priority 100) is never considered
    assert names(victims) == ["a", "c"]
    assert all(c.pod_node(pod_key(p)) == "n0" for p in pods)
    assert c.columns()["requested_cpu"].tolist() == before
    assert c.place_one(new, assume=False).node is None


def test_no_lower_priority_pods_no_victims() -> None:
    pods = [pod("a", "1", 10, "n0"), pod("b", "1", 20, "n0")]
    c, on = setup([node("n0")], pods)
    assert select_victims(c, c.pod_spec(pod("new", "1", 10)), 10, "n0", on("n0")) is None
    r = preempt(c, pod("new", "1", 10), on)
    assert r.node is None and r.message == f"0/1 nodes are available: 1 {NO_VICTIMS}."


def test_removing_all_lower_pods_not_enough() -> None:
    pods = [pod("a", "1", 1, "n0"), pod("b", "1", 50, "n0")]
    c, on = setup([node("n0")], pods)
    assert select_victims(c, c.pod_spec(pod("new", "2", 10)), 10, "n0", on("n0")) is None
    assert c.pod_node("default/a") == "n0"


def test_policy_never() -> None:
    pods = [pod("a", "2", 1, "n0")]
    c, on = setup([node("n0")], pods)
    r = preempt(c, pod("new", "1", 10, preemptionPolicy="Never"), on)
    assert r.node is None and r.message == POLICY_NEVER
    r = preempt(c, pod("new", "1", 10, preemptionPolicy="PreemptLowerPriority"), on)
    assert r.node == "n0" and names(r.victims) == ["a"]


def test_node_choice_order() -> None:
    # lowest highest-victim priority wins over fewer victims
    pods = [
        pod("x1", "2", 5, "n0"),
        pod("y1", "1", 1, "n1"),
        pod("y2", "1", 2, "n1"),
    ]
    c, on = setup([node("n0"), node("n1")], pods)
    r = preempt(c, pod("new", "2", 10), on)
    assert r.node == "n1" and names(r.victims) == ["y1", "y2"]

    # same highest priority: smaller sum wins; same sums: fewer victims
    v = lambda n, p, s="": pod(n, "1", p, "x", s)  # noqa: E731
    assert pick_node([("a", [v("1", 3), v("2", 3)]), ("b", [v("3", 3), v("4", 1)])])[0] == "b"
    assert pick_node([("a", [v("1", 3), v("2", 3)]), ("b", [v("3", 3)])])[0] == "b"
    # all equal: the node whose highest-priority victims started latest
    early, late = "2026-01-01T00:00:00Z", "2026-06-01T00:00:00Z"
    assert pick_node([("a", [v("1", 3, early)]), ("b", [v("2", 3, late)])])[0] == "b"
    # all equal: first in cluster order
    assert pick_node([("a", [v("1", 3, late)]), ("b", [v("2", 3, late)])])[0] == "a"


def test_respects_filters() -> None:
    # the pod only tolerates nothing: a tainted node is never a candidate even with victims
    tainted = node("n1")
    tainted["spec"] = {"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]}
    pods = [pod("a", "2", 1, "n0"), pod("b", "2", 0, "n1", tolerations=[{"operator": "Exists"}])]
    c, on = setup([node("n0"), tainted], pods)
    r = preempt(c, pod("new", "2", 10), on)
    assert r.node == "n0" and names(r.victims) == ["a"]
    # nothing lower on n0 now: n1 is "not helpful", n0 has no victims
    r = preempt(c, pod("new", "2", 1), on)
    assert r.node is None
    assert r.message == f"0/2 nodes are available: 1 {NO_VICTIMS}, 1 {NOT_HELPFUL}."
    # the daemon passes the FitError message: same answer, counted from its reasons
    fit = c.place_one(pod("new", "2", 1), assume=False).message
    assert fit is not None and "untolerated taint" in fit
    assert preempt(c, pod("new", "2", 1), on, fit_message=fit).message == r.message
