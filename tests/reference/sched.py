"""Reference scheduler: upstream kube-scheduler's default filters and scores in plain Python.

Works on the engine's spec dicts (``hyperkube.scheduler.specs``), one node at a time, with dicts
and loops as upstream's Go code does (``pkg/scheduler/framework/plugins/*``). It exists to check
the compiled engine (hypothesis tests) and as the baseline of ``benchmarks/scheduler.py``.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

MAX = 100
HOSTNAME = "kubernetes.io/hostname"
MB = 1024 * 1024

PLUGINS = [
    "TaintToleration",
    "NodeAffinity",
    "PodTopologySpread",
    "InterPodAffinity",
    "NodeResourcesFit",
    "NodeResourcesBalancedAllocation",
    "ImageLocality",
]

Spec = dict[str, Any]


def default_profile() -> dict[str, Any]:
    return {
        "weights": {
            "TaintToleration": 3,
            "NodeAffinity": 2,
            "PodTopologySpread": 2,
            "InterPodAffinity": 2,
            "NodeResourcesFit": 1,
            "NodeResourcesBalancedAllocation": 1,
            "ImageLocality": 1,
        },
        "scoring_strategy": "LeastAllocated",
        "fit_resources": [("cpu", 1), ("memory", 1)],
        "balanced_resources": ["cpu", "memory"],
        "hard_pod_affinity_weight": 1,
    }


def _int(s: str) -> int | None:
    try:
        return int(s, 10)
    except ValueError:
        return None


def req_matches(key: str, op: str, values: list[str], labels: dict[str, str]) -> bool:
    has = key in labels
    v = labels.get(key)
    if op in ("In", "="):
        return has and v in values
    if op == "NotIn":
        return not has or v not in values
    if op == "Exists":
        return has
    if op == "DoesNotExist":
        return not has
    if op in ("Gt", "Lt"):
        if not has:
            return False
        a, b = _int(v or ""), _int(values[0])
        if a is None or b is None:
            return False
        return a > b if op == "Gt" else a < b
    raise ValueError(op)


def selector_matches(sel: Any, labels: dict[str, str]) -> bool:
    if sel is None:
        return False
    ml, me = sel
    return all(labels.get(k) == v and k in labels for k, v in ml) and all(
        req_matches(k, op, vals, labels) for k, op, vals in me
    )


def term_matches(term: dict[str, Any], labels: dict[str, str], name: str) -> bool:
    if not term["match_expressions"] and not term["match_fields"]:
        return False
    ok = all(req_matches(k, op, vals, labels) for k, op, vals in term["match_expressions"])
    return ok and all(req_matches("n", op, vals, {"n": name}) for _, op, vals in term["match_fields"])


def tolerates(tol: tuple[str, str, str, str], taint: tuple[str, str, str]) -> bool:
    key, op, value, effect = tol
    tkey, tvalue, teffect = taint
    if effect and effect != teffect:
        return False
    if key and key != tkey:
        return False
    if op in ("", "Equal"):
        return value == tvalue
    return op == "Exists"


def aff_term_matches(term: dict[str, Any], ns: str, labels: dict[str, str]) -> bool:
    ns_ok = ns in term["namespaces"] or (
        term["namespace_selector"] is not None
        and selector_matches(term["namespace_selector"], {"kubernetes.io/metadata.name": ns})
    )
    return ns_ok and selector_matches(term["selector"], labels)


class RefCluster:
    def __init__(self, profile: dict[str, Any] | None = None) -> None:
        self.profile = profile or default_profile()
        self.nodes: dict[str, Spec] = {}
        self.pods: dict[str, tuple[Spec, str]] = {}
        self.by_node: dict[str, dict[str, Spec]] = defaultdict(dict)

    # ---- state
    def add_node(self, spec: Spec) -> None:
        self.nodes[spec["name"]] = spec

    def remove_node(self, name: str) -> None:
        del self.nodes[name]
        for k in list(self.by_node.pop(name, {})):
            del self.pods[k]

    def add_pod(self, spec: Spec, node: str) -> None:
        assert spec["key"] not in self.pods
        self.pods[spec["key"]] = (spec, node)
        self.by_node[node][spec["key"]] = spec

    def remove_pod(self, key: str) -> None:
        _, node = self.pods.pop(key)
        del self.by_node[node][key]

    def pods_on(self, node: str) -> list[Spec]:
        return list(self.by_node.get(node, {}).values())

    def labels(self, node: str) -> dict[str, str]:
        return dict(self.nodes[node]["labels"])

    # ---- node info
    def requested(self, node: str) -> dict[str, int]:
        r: dict[str, int] = defaultdict(int)
        for p in self.pods_on(node):
            r["cpu"] += p["cpu"]
            r["memory"] += p["memory"]
            r["ephemeral-storage"] += p["ephemeral"]
            r["nz_cpu"] += p["nonzero_cpu"]
            r["nz_memory"] += p["nonzero_memory"]
            for k, v in p["scalars"]:
                r[k] += v
        return r

    def allocatable(self, node: str) -> dict[str, int]:
        n = self.nodes[node]
        a = {"cpu": n["cpu"], "memory": n["memory"], "ephemeral-storage": n["ephemeral"], "pods": n["pods"]}
        for k, v in n["scalars"]:
            a[k] = v
        return a

    # ---- filters (each returns a list of reasons; empty = pass)
    def f_unschedulable(self, pod: Spec, node: str) -> list[str]:
        if self.nodes[node]["unschedulable"] and not any(
            tolerates(t, ("node.kubernetes.io/unschedulable", "", "NoSchedule")) for t in pod["tolerations"]
        ):
            return ["node(s) were unschedulable"]
        return []

    def f_node_name(self, pod: Spec, node: str) -> list[str]:
        if pod["node_name"] and pod["node_name"] != node:
            return ["node(s) didn't match the requested node name"]
        return []

    def untolerated(self, pod: Spec, node: str) -> tuple[str, str, str] | None:
        for t in self.nodes[node]["taints"]:
            if t[2] in ("NoSchedule", "NoExecute") and not any(
                tolerates(tol, t) for tol in pod["tolerations"]
            ):
                return tuple(t)  # type: ignore[return-value]
        return None

    def f_taints(self, pod: Spec, node: str) -> list[str]:
        t = self.untolerated(pod, node)
        return [f"node(s) had untolerated taint {{{t[0]}: {t[1]}}}"] if t else []

    def node_affinity_ok(self, pod: Spec, node: str) -> bool:
        labels = self.labels(node)
        if not all(k in labels and labels[k] == v for k, v in pod["node_selector"]):
            return False
        if pod["required_terms"] is None:
            return True
        return any(term_matches(t, labels, node) for t in pod["required_terms"])

    def f_node_affinity(self, pod: Spec, node: str) -> list[str]:
        return (
            [] if self.node_affinity_ok(pod, node) else ["node(s) didn't match Pod's node affinity/selector"]
        )

    def f_ports(self, pod: Spec, node: str) -> list[str]:
        used = [hp for p in self.pods_on(node) for hp in p["host_ports"] if hp[2] > 0]
        for ip, proto, port in pod["host_ports"]:
            if port <= 0:
                continue
            for uip, uproto, uport in used:
                if uport == port and uproto == proto and (ip == "0.0.0.0" or uip == "0.0.0.0" or uip == ip):
                    return ["node(s) didn't have free ports for the requested pod ports"]
        return []

    def f_fit(self, pod: Spec, node: str) -> list[str]:
        out = []
        a, r = self.allocatable(node), self.requested(node)
        if len(self.pods_on(node)) + 1 > a["pods"]:
            out.append("Too many pods")
        scalars = [(k, v) for k, v in pod["scalars"] if v != 0]
        if pod["cpu"] == 0 and pod["memory"] == 0 and pod["ephemeral"] == 0 and not scalars:
            return out
        for name, v in (
            ("cpu", pod["cpu"]),
            ("memory", pod["memory"]),
            ("ephemeral-storage", pod["ephemeral"]),
        ):
            if v > 0 and v > a[name] - r[name]:
                out.append(f"Insufficient {name}")
        for name, v in scalars:
            if v > a.get(name, 0) - r.get(name, 0):
                out.append(f"Insufficient {name}")
        return out

    # PodTopologySpread
    def _spread_node_ok(self, pod: Spec, c: dict[str, Any], node: str) -> bool:
        if c["honor_affinity"] and not self.node_affinity_ok(pod, node):
            return False
        return not (c["honor_taints"] and self.untolerated(pod, node) is not None)

    def _count(self, pod: Spec, c: dict[str, Any], node: str) -> int:
        return sum(
            1
            for p in self.pods_on(node)
            if p["namespace"] == pod["namespace"] and selector_matches(c["selector"], dict(p["labels"]))
        )

    def spread_prefilter(self, pod: Spec) -> list[tuple[dict[str, int], float]]:
        hard = [c for c in pod["spread"] if c["hard"]]
        state = []
        for c in hard:
            counts: dict[str, int] = {}
            for node in self.nodes:
                labels = self.labels(node)
                if not all(h["topology_key"] in labels for h in hard):
                    continue
                if not self._spread_node_ok(pod, c, node):
                    continue
                v = labels[c["topology_key"]]
                counts[v] = counts.get(v, 0) + self._count(pod, c, node)
            mn: float = min(counts.values()) if counts else 2**31 - 1
            if len(counts) < c["min_domains"]:
                mn = 0
            state.append((counts, mn))
        return state

    def f_spread(self, pod: Spec, node: str, state: list[tuple[dict[str, int], float]]) -> list[str]:
        hard = [c for c in pod["spread"] if c["hard"]]
        labels = self.labels(node)
        plabels = dict(pod["labels"])
        for c, (counts, mn) in zip(hard, state, strict=True):
            if c["topology_key"] not in labels:
                return ["node(s) didn't match pod topology spread constraints (missing required label)"]
            self_match = 1 if selector_matches(c["selector"], plabels) else 0
            if counts.get(labels[c["topology_key"]], 0) + self_match - mn > c["max_skew"]:
                return ["node(s) didn't match pod topology spread constraints"]
        return []

    # InterPodAffinity
    def ipa_prefilter(self, pod: Spec) -> dict[str, Any]:
        existing: Counter[tuple[str, str]] = Counter()
        aff: Counter[tuple[str, str]] = Counter()
        anti: Counter[tuple[str, str]] = Counter()
        plabels = dict(pod["labels"])
        for p, node in self.pods.values():
            nl = self.labels(node)
            elabels = dict(p["labels"])
            for t in p["anti_affinity"]:
                if aff_term_matches(t, pod["namespace"], plabels) and t["topology_key"] in nl:
                    existing[(t["topology_key"], nl[t["topology_key"]])] += 1
            if pod["affinity"] and all(aff_term_matches(t, p["namespace"], elabels) for t in pod["affinity"]):
                for t in pod["affinity"]:
                    if t["topology_key"] in nl:
                        aff[(t["topology_key"], nl[t["topology_key"]])] += 1
            for t in pod["anti_affinity"]:
                if aff_term_matches(t, p["namespace"], elabels) and t["topology_key"] in nl:
                    anti[(t["topology_key"], nl[t["topology_key"]])] += 1
        return {"existing": existing, "aff": aff, "anti": anti}

    def f_ipa(self, pod: Spec, node: str, st: dict[str, Any]) -> list[str]:
        labels = self.labels(node)
        if pod["affinity"]:
            exist = True
            for t in pod["affinity"]:
                k = t["topology_key"]
                if k not in labels:
                    return ["node(s) didn't match pod affinity rules"]
                if st["aff"][(k, labels[k])] <= 0:
                    exist = False
            if not exist:
                plabels = dict(pod["labels"])
                self_ok = all(aff_term_matches(t, pod["namespace"], plabels) for t in pod["affinity"])
                if not (sum(st["aff"].values()) == 0 and self_ok):
                    return ["node(s) didn't match pod affinity rules"]
        for t in pod["anti_affinity"]:
            k = t["topology_key"]
            if k in labels and st["anti"][(k, labels[k])] > 0:
                return ["node(s) didn't match pod anti-affinity rules"]
        for k, v in labels.items():
            if st["existing"][(k, v)] > 0:
                return ["node(s) didn't satisfy existing pods anti-affinity rules"]
        return []

    def filter_node(self, pod: Spec, node: str, spread_st: Any, ipa_st: Any) -> list[str]:
        for f in (
            self.f_unschedulable,
            self.f_node_name,
            self.f_taints,
            self.f_node_affinity,
            self.f_ports,
            self.f_fit,
        ):
            r = f(pod, node)
            if r:
                return r
        r = self.f_spread(pod, node, spread_st)
        if r:
            return r
        return self.f_ipa(pod, node, ipa_st)

    # ---- scores (raw; normalized in evaluate)
    def _alloc_req(self, pod: Spec, node: str, res: str, use_requested: bool) -> tuple[int, int]:
        a, r = self.allocatable(node), self.requested(node)
        if res in ("cpu", "memory"):
            if use_requested:
                return a[res], r[res] + pod[res]
            return a[res], r["nz_" + res] + pod["nonzero_" + res]
        if res == "ephemeral-storage":
            return a[res], r[res] + pod["ephemeral"]
        pr = dict(pod["scalars"]).get(res, 0)
        if pr == 0:
            return 0, 0
        return a.get(res, 0), r.get(res, 0) + pr

    def s_fit(self, pod: Spec, node: str) -> int:
        score = wsum = 0
        for res, w in self.profile["fit_resources"]:
            alloc, req = self._alloc_req(pod, node, res, False)
            if alloc == 0:
                continue
            if self.profile["scoring_strategy"] == "MostAllocated":
                s = min(req, alloc) * MAX // alloc
            else:
                s = 0 if req > alloc else (alloc - req) * MAX // alloc
            score += s * w
            wsum += w
        return score // wsum if wsum else 0

    def s_balanced(self, pod: Spec, node: str) -> int:
        fr = []
        for res in self.profile["balanced_resources"]:
            alloc, req = self._alloc_req(pod, node, res, True)
            if alloc == 0:
                continue
            fr.append(min(req / alloc, 1.0))
        if len(fr) == 2:
            std = abs((fr[0] - fr[1]) / 2)
        elif len(fr) > 2:
            mean = sum(fr) / len(fr)
            std = math.sqrt(sum((f - mean) ** 2 for f in fr) / len(fr))
        else:
            std = 0.0
        return int((1 - std) * MAX)

    def s_image(self, pod: Spec, node: str) -> int:
        if not pod["images"]:
            return 0
        have: dict[str, int] = {}
        for names, size in self.nodes[node]["images"]:
            for n in names:
                have.setdefault(n, size)
        total = 0
        for img in pod["images"]:
            if img in have:
                nn = sum(1 for nd in self.nodes.values() if any(img in names for names, _ in nd["images"]))
                total += int(have[img] * (nn / len(self.nodes)))
        lo, hi = 23 * MB, 1000 * MB * len(pod["images"])
        total = min(max(total, lo), hi)
        return MAX * (total - lo) // (hi - lo)

    def taint_raw(self, pod: Spec, node: str) -> int:
        tols = [t for t in pod["tolerations"] if t[3] in ("", "PreferNoSchedule")]
        return sum(
            1
            for t in self.nodes[node]["taints"]
            if t[2] == "PreferNoSchedule" and not any(tolerates(x, t) for x in tols)
        )

    def naff_raw(self, pod: Spec, node: str) -> int:
        labels = self.labels(node)
        return sum(w for w, t in pod["preferred_terms"] if w != 0 and term_matches(t, labels, node))

    def s_spread(self, pod: Spec, feasible: list[str]) -> list[int]:
        soft = [c for c in pod["spread"] if not c["hard"]]
        if not soft:
            return [0] * len(feasible)
        keys = [c["topology_key"] for c in soft]
        ignored = {n for n in feasible if not all(k in self.labels(n) for k in keys)}
        scored = [n for n in feasible if n not in ignored]
        raw: dict[str, float] = {n: 0.0 for n in scored}
        for c in soft:
            k = c["topology_key"]
            if k == HOSTNAME:
                w = math.log(len(scored) + 2)
                for n in scored:
                    raw[n] += self._count(pod, c, n) * w + (c["max_skew"] - 1)
                continue
            values = {self.labels(n)[k] for n in scored}
            w = math.log(len(values) + 2)
            counts: Counter[str] = Counter()
            for node in self.nodes:
                labels = self.labels(node)
                if not all(kk in labels for kk in keys) or labels[k] not in values:
                    continue
                if not self._spread_node_ok(pod, c, node):
                    continue
                counts[labels[k]] += self._count(pod, c, node)
            for n in scored:
                raw[n] += counts[self.labels(n)[k]] * w + (c["max_skew"] - 1)
        ints = {n: math.floor(v + 0.5) for n, v in raw.items()}
        mn = min(ints.values(), default=0)
        mx = max([0, *ints.values()])
        out = []
        for n in feasible:
            if n in ignored:
                out.append(0)
            elif mx == 0:
                out.append(MAX)
            else:
                out.append(MAX * (mx + mn - ints[n]) // mx)
        return out

    def s_ipa(self, pod: Spec, feasible: list[str]) -> list[int]:
        score: dict[tuple[str, str], int] = defaultdict(int)
        touched = False
        plabels = dict(pod["labels"])
        hw = self.profile["hard_pod_affinity_weight"]

        def add(key: str, node: str, v: int) -> None:
            nonlocal touched
            labels = self.labels(node)
            if key in labels:
                touched = True
                score[(key, labels[key])] += v

        for p, node in self.pods.values():
            elabels = dict(p["labels"])
            for t in pod["preferred_affinity"]:
                if t["weight"] and aff_term_matches(t, p["namespace"], elabels):
                    add(t["topology_key"], node, t["weight"])
            for t in pod["preferred_anti_affinity"]:
                if t["weight"] and aff_term_matches(t, p["namespace"], elabels):
                    add(t["topology_key"], node, -t["weight"])
            if hw > 0:
                for t in p["affinity"]:
                    if aff_term_matches(t, pod["namespace"], plabels):
                        add(t["topology_key"], node, hw)
            for t in p["preferred_affinity"]:
                if t["weight"] and aff_term_matches(t, pod["namespace"], plabels):
                    add(t["topology_key"], node, t["weight"])
            for t in p["preferred_anti_affinity"]:
                if t["weight"] and aff_term_matches(t, pod["namespace"], plabels):
                    add(t["topology_key"], node, -t["weight"])
        if not touched:
            return [0] * len(feasible)
        raw = []
        for n in feasible:
            labels = self.labels(n)
            raw.append(sum(v for (k, val), v in score.items() if labels.get(k) == val and k in labels))
        mn, mx = min(raw), max(raw)
        return [int(MAX * ((s - mn) / (mx - mn))) if mx > mn else 0 for s in raw]

    # ---- the cycle
    def evaluate(self, pod: Spec) -> dict[str, Any]:
        if not self.nodes:
            return {"error": "no nodes available to schedule pods"}
        spread_st = self.spread_prefilter(pod)
        ipa_st = self.ipa_prefilter(pod)
        feasible = []
        reasons: Counter[str] = Counter()
        for node in self.nodes:
            r = self.filter_node(pod, node, spread_st, ipa_st)
            if r:
                reasons.update(r)
            else:
                feasible.append(node)
        if not feasible:
            parts = sorted(f"{c} {r}" for r, c in reasons.items())
            return {"error": f"0/{len(self.nodes)} nodes are available: {', '.join(parts)}."}
        w = self.profile["weights"]
        traw = [self.taint_raw(pod, n) for n in feasible]
        tmax = max(traw)
        taint = [MAX if tmax == 0 else MAX - MAX * t // tmax for t in traw]
        nraw = [self.naff_raw(pod, n) for n in feasible]
        nmax = max(nraw)
        naff = [r if nmax == 0 else MAX * r // nmax for r in nraw]
        if not [t for t in pod["preferred_terms"] if t[0] != 0]:
            naff = [0] * len(feasible)
        plugins = {
            "TaintToleration": taint,
            "NodeAffinity": naff,
            "PodTopologySpread": self.s_spread(pod, feasible),
            "InterPodAffinity": self.s_ipa(pod, feasible),
            "NodeResourcesFit": [self.s_fit(pod, n) for n in feasible],
            "NodeResourcesBalancedAllocation": [self.s_balanced(pod, n) for n in feasible],
            "ImageLocality": [self.s_image(pod, n) for n in feasible],
        }
        total = [sum(plugins[p][i] * w[p] for p in PLUGINS) for i in range(len(feasible))]
        return {"nodes": feasible, "plugins": plugins, "total": total}

    def best(self, pod: Spec) -> tuple[list[str], str | None]:
        """The best-scored nodes (ties), or the FitError message."""
        ev = self.evaluate(pod)
        if "error" in ev:
            return [], ev["error"]
        mx = max(ev["total"])
        return [n for n, t in zip(ev["nodes"], ev["total"], strict=True) if t == mx], None

    def place(self, pod: Spec) -> tuple[str | None, str | None]:
        """Place on the first best node (in node order) and record the pod there."""
        best, err = self.best(pod)
        if err is not None:
            return None, err
        self.add_pod(pod, best[0])
        return best[0], None
