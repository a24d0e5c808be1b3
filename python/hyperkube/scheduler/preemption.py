"""DefaultPreemption: upstream's PostFilter plugin, over the engine's :class:`Cluster`.

When a pod with priority P fits nowhere, :func:`preempt` looks for nodes where removing pods of
priority < P makes it fit, by simulation on the live cluster (the candidate's lower-priority pods
are forgotten, the pod is filtered against that node alone with ``node_name`` set, and everything
is put back before returning, so the cluster is unchanged):

* **victims per node** (``selectVictimsOnNode``): remove every lower-priority pod; if the pod
  still does not fit, the node is no candidate. Otherwise *reprieve*: put the removed pods back,
  most important first (higher priority, then the earlier start), keeping each one whose return
  still lets the pod fit; the others are the victims (a minimal set, not the minimum one);
* **node choice** (``pickOneNodeForPreemption``), in upstream's order: fewest PDB violations
  (PDBs are not modelled: always 0), the lowest highest-victim priority, the smallest sum of
  victim priorities (each offset by 2^31 as upstream does, so more victims weigh more), the
  fewest victims, the latest start time of the highest-priority victims, then cluster order;
* **eligibility** (``PodEligibleToPreemptOthers``): ``preemptionPolicy: Never`` does not preempt.

Nodes failing for a reason removing pods cannot fix (upstream's UnschedulableAndUnresolvable:
taints, node affinity, nodeName, unschedulable, required pod affinity, a missing topology label)
are skipped. The result carries the message that upstream appends to the FitError when
preemption finds nothing (``preemption: 0/3 nodes are available: 1 Preemption is not helpful
for scheduling, 2 No preemption victims found for incoming pod.``). Not modelled:
PodDisruptionBudgets, nominated pods reserved on their node for other pods' filtering, and
extenders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hyperkube.scheduler import Cluster
from hyperkube.scheduler.queue import pod_key, pod_priority

Obj = dict[str, Any]
NO_VICTIMS = "No preemption victims found for incoming pod"
NOT_HELPFUL = "Preemption is not helpful for scheduling"
# the filter failures upstream marks UnschedulableAndUnresolvable: removing pods cannot fix them
_UNRESOLVABLE = (
    "node(s) were unschedulable",
    "node(s) didn't match the requested node name",
    "node(s) had untolerated taint",
    "node(s) didn't match Pod's node affinity/selector",
    "node(s) didn't match pod affinity rules",
    "node(s) didn't match pod topology spread constraints (missing required label)",
)
POLICY_NEVER = "not eligible due to preemptionPolicy=Never."
_OFFSET = 2**31  # upstream: MaxInt32 + 1, so the sum of priorities is >= 0 and grows with the count
_NO_START = "9999-12-31T23:59:59Z"  # a pod without status.startTime counts as started now (latest)


@dataclass
class Preemption:
    """The outcome: ``node`` and its ``victims`` when preemption can help, else ``message``
    (to append to the FitError as upstream's PostFilter message)."""

    node: str | None = None
    victims: list[Obj] = field(default_factory=list)
    message: str = ""


def eligible(pod: Mapping[str, Any]) -> tuple[bool, str]:
    if ((pod.get("spec") or {}).get("preemptionPolicy") or "PreemptLowerPriority") == "Never":
        return False, POLICY_NEVER
    return True, ""


def _start(pod: Mapping[str, Any]) -> str:
    return str((pod.get("status") or {}).get("startTime") or _NO_START)


def _more_important_first(pods: Iterable[Obj]) -> list[Obj]:
    # upstream's MoreImportantPod: higher priority first, then the one that started earlier
    return sorted(pods, key=lambda p: (-pod_priority(p), _start(p)))


def _fits(cluster: Cluster, spec: Mapping[str, Any], node: str) -> bool:
    r = cluster.place_specs([{**spec, "node_name": node}], assume=False, tie_break="first")[0]
    return r.node == node


def _unresolvable_counts(message: str) -> int:
    """How many nodes a FitError message counts under unresolvable reasons (a filter that fails
    that way stops the node's filtering, so each such node is counted once)."""
    _, _, reasons = message.partition(": ")
    total = 0
    for reason in reasons.rstrip(".").split(", "):
        count, _, text = reason.partition(" ")
        if text.startswith(_UNRESOLVABLE) and count.isdigit():
            total += int(count)
    return total


def unresolvable(cluster: Cluster, spec: Mapping[str, Any], node: str) -> bool:
    """Whether ``node`` fails the pod for a reason removing pods cannot fix (upstream's
    UnschedulableAndUnresolvable: preemption "is not helpful" there)."""
    pinned = spec.get("node_name")
    if pinned and pinned != node:
        return True
    r = cluster.place_specs([{**spec, "node_name": node}], assume=False, tie_break="first")[0]
    if r.node is not None or not r.message:
        return False
    # the other nodes fail on the pinning we added; what is left is this node's reason
    msg = r.message.replace("didn't match the requested node name", "")
    return _unresolvable_counts(msg) > 0


def select_victims(
    cluster: Cluster, spec: Mapping[str, Any], priority: int, node: str, pods: Sequence[Obj]
) -> list[Obj] | None:
    """The victims on ``node`` (whose recorded pods are ``pods``) for a pod of ``priority``
    (engine ``spec``), or None when removing every lower-priority pod does not make it fit.
    The cluster is left as it was."""
    lower = [p for p in pods if pod_priority(p) < priority and cluster.pod_node(pod_key(p)) == node]
    if not lower:
        return None
    for p in lower:
        cluster.remove_pod(pod_key(p))
    victims: list[Obj] = []
    try:
        if not _fits(cluster, spec, node):
            victims = lower
            return None
        for p in _more_important_first(lower):
            cluster.add_pods([p])
            if not _fits(cluster, spec, node):
                cluster.remove_pod(pod_key(p))
                victims.append(p)
        return victims
    finally:
        if victims:
            cluster.add_pods(victims)


def _rank(node_order: int, victims: Sequence[Obj]) -> tuple[Any, ...]:
    prios = [pod_priority(v) for v in victims]
    top = max(prios)
    earliest_top = min(_start(v) for v in victims if pod_priority(v) == top)
    # latest start time wins: negate by sorting on the inverted string below
    inv = tuple(-ord(c) for c in earliest_top)
    return (0, top, sum(p + _OFFSET for p in prios), len(victims), inv, node_order)


def pick_node(candidates: Sequence[tuple[str, list[Obj]]]) -> tuple[str, list[Obj]]:
    """Upstream's pickOneNodeForPreemption over (node, victims) in cluster order."""
    best = min(range(len(candidates)), key=lambda i: _rank(i, candidates[i][1]))
    return candidates[best]


def preempt(
    cluster: Cluster,
    pod: Mapping[str, Any],
    pods_on_node: Callable[[str], Sequence[Obj]],
    spec: Mapping[str, Any] | None = None,
    fit_message: str | None = None,
) -> Preemption:
    """Find the node and victims that let ``pod`` (which fits nowhere) schedule.

    ``fit_message``: the pod's FitError message; when given, the nodes where preemption is not
    helpful are counted from it instead of filtering each node again. Either way only nodes with
    lower-priority pods are simulated (an unresolvable node fails that simulation too)."""
    ok, msg = eligible(pod)
    if not ok:
        return Preemption(message=msg)
    spec = spec if spec is not None else cluster.pod_spec(pod)
    priority = pod_priority(dict(pod))
    nodes = cluster.node_names
    candidates: list[tuple[str, list[Obj]]] = []
    not_helpful = 0
    for n in nodes:
        if fit_message is None and unresolvable(cluster, spec, n):
            not_helpful += 1
            continue
        victims = select_victims(cluster, spec, priority, n, pods_on_node(n))
        if victims:
            candidates.append((n, victims))
    if not candidates:
        if fit_message is not None:
            not_helpful = min(_unresolvable_counts(fit_message), len(nodes))
        # upstream's FitError histogram: the "<count> <reason>" strings, sorted
        counts = {NOT_HELPFUL: not_helpful, NO_VICTIMS: len(nodes) - not_helpful}
        parts = ", ".join(sorted(f"{c} {r}" for r, c in counts.items() if c))
        return Preemption(message=f"0/{len(nodes)} nodes are available: {parts}.")
    node, victims = pick_node(candidates)
    return Preemption(node=node, victims=victims)
