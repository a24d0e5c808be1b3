"""The compiled scheduler engine agrees with the plain-Python reference on random clusters.

Random nodes (labels, taints, unschedulable, resources, extended resources, images), random
running pods (requests, host ports, labels, pod (anti-)affinity) and random incoming pods using
every filter and score; for each incoming pod the feasible nodes, every plugin's normalized score
per node, the weighted totals and the FitError message must match, and the engine's choice must be
one of the reference's best nodes. The pod is then recorded on that node in both.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hyperkube import _native
from hyperkube.scheduler import node_spec, pod_spec, profile_from_config
from tests.reference.sched import RefCluster

KEYS = ["zone", "rack", "kubernetes.io/hostname", "disk"]
VALS = ["a", "b", "c"]
APP = ["web", "db"]
NAMESPACES = ["default", "other"]

labels_st = st.dictionaries(st.sampled_from(["app", "tier"]), st.sampled_from(APP + ["x"]), max_size=2)


@st.composite
def node_objs(draw: Any) -> list[dict[str, Any]]:
    n = draw(st.integers(1, 7))
    nodes = []
    for i in range(n):
        name = f"node-{i}"
        labels = {"kubernetes.io/hostname": name}
        for k in ("zone", "rack", "disk"):
            if draw(st.booleans()):
                labels[k] = draw(st.sampled_from(VALS))
        if draw(st.booleans()):
            labels["rank"] = str(draw(st.integers(0, 5)))
        taints = []
        if draw(st.integers(0, 3)) == 0:
            taints = draw(
                st.lists(
                    st.tuples(
                        st.sampled_from(["dedicated", "gpu", "spot"]),
                        st.sampled_from(["", "yes", "gpu"]),
                        st.sampled_from(["NoSchedule", "PreferNoSchedule", "NoExecute"]),
                    ),
                    max_size=2,
                )
            )
        alloc = {
            "cpu": draw(st.sampled_from(["0", "500m", "1", "2", "4", "4", "8"])),
            "memory": draw(st.sampled_from(["0", "512Mi", "1Gi", "4Gi", "4Gi", "16Gi"])),
            "pods": str(draw(st.sampled_from([0, 1, 2, 3, 110, 110, 110]))),
        }
        if draw(st.booleans()):
            alloc["ephemeral-storage"] = draw(st.sampled_from(["1Gi", "10Gi"]))
        if draw(st.booleans()):
            alloc["example.com/gpu"] = str(draw(st.integers(0, 2)))
        images = []
        if draw(st.booleans()):
            images.append(
                {"names": ["img-a:latest"], "sizeBytes": draw(st.sampled_from([10, 300, 900])) * 2**20}
            )
        if draw(st.booleans()):
            images.append({"names": ["img-b:1"], "sizeBytes": draw(st.sampled_from([50, 2000])) * 2**20})
        nodes.append(
            {
                "metadata": {"name": name, "labels": labels},
                "spec": {
                    "unschedulable": draw(st.integers(0, 7)) == 0,
                    "taints": [{"key": k, "value": v, "effect": e} for k, v, e in taints],
                },
                "status": {"allocatable": alloc, "images": images},
            }
        )
    return nodes


def selector_st() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.fixed_dictionaries(
            {"matchLabels": st.dictionaries(st.just("app"), st.sampled_from(APP), max_size=1)}
        ),
        st.fixed_dictionaries(
            {
                "matchExpressions": st.lists(
                    st.fixed_dictionaries(
                        {
                            "key": st.sampled_from(["app", "tier"]),
                            "operator": st.sampled_from(["In", "NotIn"]),
                            "values": st.lists(st.sampled_from(APP + ["x"]), min_size=1, max_size=2),
                        }
                    ),
                    max_size=2,
                )
            }
        ),
    )


def pod_term_st(weighted: bool) -> st.SearchStrategy[Any]:
    term = st.fixed_dictionaries(
        {"labelSelector": selector_st(), "topologyKey": st.sampled_from(KEYS)},
        optional={
            "namespaces": st.lists(st.sampled_from(NAMESPACES), max_size=2),
            "namespaceSelector": st.sampled_from(
                [{}, {"matchLabels": {"kubernetes.io/metadata.name": "other"}}]
            ),
        },
    )
    if weighted:
        return st.fixed_dictionaries({"weight": st.integers(1, 100), "podAffinityTerm": term})
    return term


node_req_st = st.fixed_dictionaries(
    {
        "key": st.sampled_from(["zone", "rack", "disk", "rank"]),
        "operator": st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]),
    }
)


@st.composite
def node_term_st(draw: Any) -> dict[str, Any]:
    exprs = []
    for e in draw(st.lists(node_req_st, max_size=2)):
        op = e["operator"]
        if op in ("In", "NotIn"):
            vals = draw(st.lists(st.sampled_from(VALS), min_size=1, max_size=2))
        elif op in ("Gt", "Lt"):
            vals = [str(draw(st.integers(0, 5)))]
        else:
            vals = []
        exprs.append({"key": e["key"], "operator": op, "values": vals})
    term: dict[str, Any] = {"matchExpressions": exprs}
    if draw(st.booleans()) and draw(st.booleans()):
        term["matchFields"] = [
            {"key": "metadata.name", "operator": draw(st.sampled_from(["In", "NotIn"])), "values": ["node-0"]}
        ]
    return term


@st.composite
def pod_objs(draw: Any, name: str, rich: bool = True) -> dict[str, Any]:
    requests = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "cpu": st.sampled_from(["0", "100m", "250m", "1", "3", "100m", "500m"]),
                "memory": st.sampled_from(["0", "100Mi", "1Gi"]),
                "ephemeral-storage": st.sampled_from(["1Gi"]),
                "example.com/gpu": st.sampled_from(["1"]),
            },
        )
    )
    container: dict[str, Any] = {"name": "c", "image": draw(st.sampled_from(["img-a", "img-b:1", "other"]))}
    if requests:
        container["resources"] = {"requests": requests}
    if draw(st.booleans()) and draw(st.booleans()):
        container["ports"] = [
            {
                "containerPort": 80,
                "hostPort": draw(st.sampled_from([80, 443])),
                "protocol": draw(st.sampled_from(["TCP", "UDP"])),
            }
        ]
    spec: dict[str, Any] = {"containers": [container]}
    if draw(st.booleans()) and draw(st.booleans()):
        spec["initContainers"] = [{"name": "i", "image": "img-a", "resources": {"requests": {"cpu": "2"}}}]
    meta = {"name": name, "namespace": draw(st.sampled_from(NAMESPACES)), "labels": draw(labels_st)}
    feats = (
        draw(st.sets(st.sampled_from(["tol", "sel", "name", "naff", "paff", "spread"]), max_size=3))
        if rich
        else set()
    )
    if rich:
        if "tol" in feats:
            spec["tolerations"] = draw(
                st.lists(
                    st.fixed_dictionaries(
                        {
                            "key": st.sampled_from(["", "dedicated", "gpu"]),
                            "operator": st.sampled_from(["Exists", "Equal"]),
                            "value": st.sampled_from(["", "yes", "gpu"]),
                            "effect": st.sampled_from(["", "NoSchedule", "PreferNoSchedule"]),
                        }
                    ).filter(lambda t: t["key"] or t["operator"] == "Exists"),
                    max_size=2,
                )
            )
        if "sel" in feats:
            spec["nodeSelector"] = {"zone": draw(st.sampled_from(VALS))}
        if "name" in feats and draw(st.booleans()):
            spec["nodeName"] = draw(st.sampled_from(["node-0", "node-1", "nowhere"]))
        affinity: dict[str, Any] = {}
        if "naff" in feats:
            na: dict[str, Any] = {}
            if draw(st.booleans()):
                na["requiredDuringSchedulingIgnoredDuringExecution"] = {
                    "nodeSelectorTerms": draw(st.lists(node_term_st(), min_size=1, max_size=2))
                }
            if draw(st.booleans()):
                na["preferredDuringSchedulingIgnoredDuringExecution"] = [
                    {"weight": w, "preference": t}
                    for w, t in draw(st.lists(st.tuples(st.integers(1, 100), node_term_st()), max_size=2))
                ]
            affinity["nodeAffinity"] = na
        for kind in ("podAffinity", "podAntiAffinity"):
            if "paff" in feats and draw(st.booleans()):
                affinity[kind] = {
                    "requiredDuringSchedulingIgnoredDuringExecution": draw(
                        st.lists(pod_term_st(False), max_size=2)
                    ),
                    "preferredDuringSchedulingIgnoredDuringExecution": draw(
                        st.lists(pod_term_st(True), max_size=2)
                    ),
                }
        if affinity:
            spec["affinity"] = affinity
        if "spread" in feats:
            spec["topologySpreadConstraints"] = draw(
                st.lists(
                    st.fixed_dictionaries(
                        {
                            "maxSkew": st.integers(1, 3),
                            "topologyKey": st.sampled_from(KEYS),
                            "whenUnsatisfiable": st.sampled_from(["DoNotSchedule", "ScheduleAnyway"]),
                            "labelSelector": selector_st(),
                        },
                        optional={
                            "minDomains": st.integers(1, 4),
                            "nodeAffinityPolicy": st.sampled_from(["Honor", "Ignore"]),
                            "nodeTaintsPolicy": st.sampled_from(["Honor", "Ignore"]),
                        },
                    ),
                    max_size=2,
                )
            )
    return {"metadata": meta, "spec": spec}


@st.composite
def scenarios(draw: Any) -> tuple[Any, ...]:
    nodes = draw(node_objs())
    existing = []
    for i in range(draw(st.integers(0, 12))):
        p = draw(pod_objs(f"run-{i}", rich=draw(st.booleans())))
        existing.append((p, draw(st.sampled_from([n["metadata"]["name"] for n in nodes]))))
    incoming = [draw(pod_objs(f"new-{i}")) for i in range(draw(st.integers(1, 4)))]
    strategy = draw(st.sampled_from(["LeastAllocated", "MostAllocated"]))
    return nodes, existing, incoming, strategy


def _compare(ev: dict[str, Any], ref: dict[str, Any]) -> None:
    if "error" in ref:
        assert ev.get("error") == ref["error"]
        return
    assert "error" not in ev, ev.get("error")
    assert list(ev["nodes"]) == ref["nodes"]
    for name, values in ref["plugins"].items():
        assert ev["plugins"][name].tolist() == values, name
    assert ev["total"].tolist() == ref["total"]


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_engine_matches_reference(scenario: tuple[Any, ...]) -> None:
    nodes, existing, incoming, strategy = scenario
    profile = profile_from_config(
        {
            "profiles": [
                {
                    "pluginConfig": [
                        {"name": "NodeResourcesFit", "args": {"scoringStrategy": {"type": strategy}}}
                    ]
                }
            ]
        }
    )
    engine = _native.SchedCluster(profile, 7)
    ref = RefCluster(profile)
    specs = [node_spec(n) for n in nodes]
    engine.upsert_nodes(specs)
    for s in specs:
        ref.add_node(s)
    running = [(pod_spec(p), node) for p, node in existing]
    engine.add_pods(running)
    for s, node in running:
        ref.add_pod(s, node)
    for p in incoming:
        spec = pod_spec(p)
        _compare(engine.scores(spec), ref.evaluate(spec))
        best, err = ref.best(spec)
        chosen, errors = engine.place([spec])
        if err is not None:
            assert chosen == [None] and errors == [err]
            continue
        assert chosen[0] in best
        ref.add_pod(spec, chosen[0])


@settings(max_examples=60, deadline=None)
@given(node_objs(), st.lists(st.integers(0, 6), min_size=1, max_size=12))
def test_incremental_updates_match_a_rebuild(nodes: list[dict[str, Any]], ops: list[int]) -> None:
    """Assume/forget/remove/update in place give the same scores as a cluster built afresh."""
    engine = _native.SchedCluster(None, 1)
    engine.upsert_nodes([node_spec(n) for n in nodes])
    ref = RefCluster()
    for n in nodes:
        ref.add_node(node_spec(n))
    anti = {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 10,
                    "podAffinityTerm": {
                        "labelSelector": {"matchLabels": {"app": "web"}},
                        "topologyKey": "zone",
                    },
                }
            ]
        }
    }
    probe = pod_spec(
        {
            "metadata": {"name": "probe", "labels": {"app": "web"}},
            "spec": {
                "containers": [{"name": "c", "resources": {"requests": {"cpu": "100m"}}}],
                "affinity": anti,
            },
        }
    )
    for i, op in enumerate(ops):
        names = list(ref.nodes)
        if op <= 3 or not names:
            spec = pod_spec(
                {
                    "metadata": {"name": f"p{i}", "labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {"name": "c", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}}
                        ],
                        "affinity": anti if i % 2 else {},
                    },
                }
            )
            chosen, _ = engine.place([spec], tie_break="first")
            if chosen[0] is not None:
                ref.add_pod(spec, chosen[0])
        elif op == 4 and ref.pods:
            key = sorted(ref.pods)[0]
            assert engine.forget_pod(key)
            ref.remove_pod(key)
        elif op == 5 and len(names) > 1:
            assert engine.remove_node(names[-1])
            ref.remove_node(names[-1])
        else:
            n = dict(nodes[0])
            n["metadata"] = {"name": names[0], "labels": {"zone": "b"}}
            n["status"] = {"allocatable": {"cpu": "8", "memory": "8Gi", "pods": "20"}}
            engine.upsert_nodes([node_spec(n)])
            ref.add_node(node_spec(n))
        ev, rv = engine.scores(probe), ref.evaluate(probe)
        if "error" in rv:
            assert ev["error"] == rv["error"]
        else:
            assert sorted(zip(ev["nodes"], ev["total"].tolist(), strict=True)) == sorted(
                zip(rv["nodes"], rv["total"], strict=True)
            )
