"""Reduce Node and Pod API objects to the engine's specs.

The compiled engine (``hyperkube._native.SchedCluster``) takes plain dicts of already-parsed
values: quantities as integers (cpu in milli, the rest in units), affinity terms flattened to
tuples, defaults applied as upstream applies them. This module does that reduction, following
kube-scheduler:

* requests: ``resourcehelper.PodRequests`` -- the sum of containers and restartable (sidecar) init
  containers, the max with each init container, plus ``overhead``;
* non-zero requests for scoring: the same with 100m cpu / 200Mi memory for a container that sets no
  request (``NonMissingContainerRequests``);
* affinity terms: ``namespaces`` defaults to the pod's own namespace, ``matchLabelKeys`` /
  ``mismatchLabelKeys`` merge into the label selector;
* topology spread: ``minDomains`` 1, ``nodeAffinityPolicy`` Honor, ``nodeTaintsPolicy`` Ignore;
* images: normalized to ``name:latest`` when untagged.

Node allocatable falls back to capacity when a node reports no allocatable (a convenience for
hand-written manifests; the kubelet always reports both).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from fractions import Fraction
from functools import lru_cache
from typing import Any

DEFAULT_MILLI_CPU = 100
DEFAULT_MEMORY = 200 * 1024 * 1024

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 1000),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}


class SpecError(ValueError):
    """A Node or Pod object the scheduler cannot use; the message names the field."""


def parse_quantity(value: object, field: str = "quantity") -> Fraction:
    """Parse a resource.Quantity (``100m``, ``1.5Gi``, ``2e3``, ``4``) to an exact fraction."""
    if isinstance(value, bool):
        raise SpecError(f"{field}: Invalid value: {value!r}: quantities must be numbers or strings")
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        return Fraction(str(value))
    if not isinstance(value, str) or not value:
        raise SpecError(
            f"{field}: Invalid value: {value!r}: quantities must match the regular expression "
            "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        )
    s = value.strip()
    i = 0
    if i < len(s) and s[i] in "+-":
        i += 1
    while i < len(s) and (s[i].isdigit() or s[i] == "."):
        i += 1
    num, suffix = s[:i], s[i:]
    try:
        base = Fraction(num)
    except (ValueError, ZeroDivisionError):
        raise SpecError(f"{field}: Invalid value: {value!r}: unable to parse quantity's number") from None
    if suffix in _BINARY:
        return base * _BINARY[suffix]
    if suffix in _DECIMAL:
        return base * _DECIMAL[suffix]
    if suffix[:1] in ("e", "E"):
        try:
            return base * Fraction(10) ** int(suffix[1:])
        except ValueError:
            pass
    raise SpecError(f"{field}: Invalid value: {value!r}: unable to parse quantity's suffix")


def _milli(q: Fraction) -> int:
    return math.ceil(q * 1000)


def _units(q: Fraction) -> int:
    return math.ceil(q)


@lru_cache(maxsize=4096)
def _amount(name: str, value: str) -> int:
    q = parse_quantity(value)
    return _milli(q) if name == "cpu" else _units(q)


def _resource_list(rl: object, field: str) -> dict[str, int]:
    """A ResourceList as integers: cpu in milli, everything else in units (rounded up)."""
    if not rl:
        return {}
    if not isinstance(rl, Mapping):
        raise SpecError(f"{field}: must be a map of resource name to quantity")
    out = {}
    for name, v in rl.items():
        if isinstance(v, str) and isinstance(name, str):
            try:
                out[name] = _amount(name, v)
                continue
            except SpecError:
                pass
        q = parse_quantity(v, f"{field}[{name}]")
        out[str(name)] = _milli(q) if name == "cpu" else _units(q)
    return out


def _add(a: dict[str, int], b: Mapping[str, int]) -> None:
    for k, v in b.items():
        a[k] = a.get(k, 0) + v


def _max_into(a: dict[str, int], b: Mapping[str, int]) -> None:
    for k, v in b.items():
        if v > a.get(k, 0):
            a[k] = v


def pod_requests(spec: Mapping[str, Any], non_missing: bool) -> dict[str, int]:
    """resourcehelper.PodRequests: containers + sidecars, max with init containers, + overhead.

    With ``non_missing``, a container without a cpu / memory request counts 100m / 200Mi.
    """

    def creqs(c: Mapping[str, Any], field: str) -> dict[str, int]:
        r = _resource_list((c.get("resources") or {}).get("requests"), field)
        if non_missing:
            r.setdefault("cpu", DEFAULT_MILLI_CPU)
            r.setdefault("memory", DEFAULT_MEMORY)
        return r

    reqs: dict[str, int] = {}
    for i, c in enumerate(spec.get("containers") or []):
        _add(reqs, creqs(c, f"spec.containers[{i}].resources.requests"))
    restartable: dict[str, int] = {}
    init_max: dict[str, int] = {}
    for i, c in enumerate(spec.get("initContainers") or []):
        cr = creqs(c, f"spec.initContainers[{i}].resources.requests")
        if c.get("restartPolicy") == "Always":
            _add(reqs, cr)
            _add(restartable, cr)
            cr = dict(restartable)
        else:
            tmp = dict(cr)
            _add(tmp, restartable)
            cr = tmp
        _max_into(init_max, cr)
    _max_into(reqs, init_max)
    _add(reqs, _resource_list(spec.get("overhead"), "spec.overhead"))
    return reqs


def requests_and_nonzero(spec: Mapping[str, Any]) -> tuple[dict[str, int], dict[str, int]]:
    """(:func:`pod_requests` as is, with non-missing defaults); one pass for the common pod
    without init containers or overhead."""
    if spec.get("initContainers") or spec.get("overhead"):
        return pod_requests(spec, False), pod_requests(spec, True)
    reqs: dict[str, int] = {}
    nz_cpu = nz_mem = 0
    for i, c in enumerate(spec.get("containers") or []):
        res = c.get("resources")
        r = _resource_list(res.get("requests"), f"spec.containers[{i}].resources.requests") if res else {}
        for k, v in r.items():
            reqs[k] = reqs.get(k, 0) + v
        nz_cpu += r.get("cpu", DEFAULT_MILLI_CPU)
        nz_mem += r.get("memory", DEFAULT_MEMORY)
    return reqs, {"cpu": nz_cpu, "memory": nz_mem}


def normalized_image(name: str) -> str:
    """ImageLocality's normalizedImageName: add ``:latest`` to an untagged image."""
    if name.rfind(":") <= name.rfind("/"):
        return name + ":latest"
    return name


def _pairs(m: object, field: str) -> list[tuple[str, str]]:
    if not m:
        return []
    if not isinstance(m, Mapping):
        raise SpecError(f"{field}: must be a map of string to string")
    out = []
    for k, v in m.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise SpecError(f"{field}[{k}]: keys and values must be strings")
        out.append((k, v))
    return out


def _list(items: object, field: str) -> list[Any]:
    if not items:
        return []
    if not isinstance(items, list):
        raise SpecError(f"{field}: must be a list")
    return items


def _exprs(items: object, field: str) -> list[tuple[str, str, list[str]]]:
    out = []
    for i, e in enumerate(_list(items, field)):
        if not isinstance(e, Mapping):
            raise SpecError(f"{field}[{i}]: must be an object")
        vals = e.get("values") or []
        if not isinstance(vals, list) or not all(isinstance(v, str) for v in vals):
            raise SpecError(f"{field}[{i}].values: must be a list of strings")
        out.append((str(e.get("key") or ""), str(e.get("operator") or ""), list(vals)))
    return out


LabelSelector = tuple[list[tuple[str, str]], list[tuple[str, str, list[str]]]]


def label_selector(
    sel: object,
    field: str,
    labels: Mapping[str, str] | None = None,
    match_keys: Iterable[str] = (),
    mismatch_keys: Iterable[str] = (),
) -> LabelSelector | None:
    """A metav1.LabelSelector as (matchLabels, matchExpressions); None stays None (matches
    nothing). ``matchLabelKeys`` / ``mismatchLabelKeys`` add ``key in/notin (pod's value)``."""
    if sel is None:
        return None
    if not isinstance(sel, Mapping):
        raise SpecError(f"{field}: must be an object with matchLabels/matchExpressions")
    ml = _pairs(sel.get("matchLabels"), f"{field}.matchLabels")
    me = _exprs(sel.get("matchExpressions"), f"{field}.matchExpressions")
    labels = labels or {}
    for k in match_keys:
        if k in labels:
            me.append((k, "In", [labels[k]]))
    for k in mismatch_keys:
        if k in labels:
            me.append((k, "NotIn", [labels[k]]))
    return (ml, me)


def _node_term(t: object, field: str) -> dict[str, Any]:
    if not isinstance(t, Mapping):
        raise SpecError(f"{field}: must be an object")
    return {
        "match_expressions": _exprs(t.get("matchExpressions"), f"{field}.matchExpressions"),
        "match_fields": _exprs(t.get("matchFields"), f"{field}.matchFields"),
    }


def _aff_terms(
    items: object, field: str, ns: str, labels: Mapping[str, str], weighted: bool
) -> list[dict[str, Any]]:
    out = []
    for i, item in enumerate(_list(items, field)):
        f = f"{field}[{i}]"
        if not isinstance(item, Mapping):
            raise SpecError(f"{f}: must be an object")
        weight = 0
        term = item
        if weighted:
            weight = int(item.get("weight") or 0)
            term = item.get("podAffinityTerm") or {}
            f += ".podAffinityTerm"
        namespaces = list(term.get("namespaces") or [])
        ns_sel = term.get("namespaceSelector")
        if not namespaces and ns_sel is None:
            namespaces = [ns]
        sel = term.get("labelSelector")
        out.append(
            {
                "weight": weight,
                "namespaces": namespaces,
                "namespace_selector": label_selector(ns_sel, f + ".namespaceSelector"),
                "selector": None
                if sel is None
                else label_selector(
                    sel,
                    f + ".labelSelector",
                    labels,
                    term.get("matchLabelKeys") or (),
                    term.get("mismatchLabelKeys") or (),
                ),
                "topology_key": str(term.get("topologyKey") or ""),
            }
        )
    return out


def pod_spec(pod: Mapping[str, Any], *, name: str | None = None) -> dict[str, Any]:
    """Reduce a Pod object (dict) to the engine's pod spec."""
    if not isinstance(pod, Mapping):
        raise SpecError("pod: must be an object")
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    ns = meta.get("namespace") or "default"
    pname = meta.get("name") or name or ""
    if not pname:
        raise SpecError("metadata.name: Required value: name or generateName is required")
    labels = dict(_pairs(meta.get("labels"), "metadata.labels"))
    reqs, nonzero = requests_and_nonzero(spec)
    aff = spec.get("affinity") or {}
    na = aff.get("nodeAffinity") or {}
    required = na.get("requiredDuringSchedulingIgnoredDuringExecution")
    required_terms = None
    if required is not None:
        required_terms = [
            _node_term(
                t,
                f"spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[{i}]",
            )
            for i, t in enumerate(required.get("nodeSelectorTerms") or [])
        ]
    preferred = []
    for i, p in enumerate(na.get("preferredDuringSchedulingIgnoredDuringExecution") or []):
        preferred.append(
            (
                int(p.get("weight") or 0),
                _node_term(
                    p.get("preference") or {}, f"spec.affinity.nodeAffinity.preferred[{i}].preference"
                ),
            )
        )
    tolerations = [
        (
            str(t.get("key") or ""),
            str(t.get("operator") or ""),
            str(t.get("value") or ""),
            str(t.get("effect") or ""),
        )
        for t in spec.get("tolerations") or []
    ]
    ports = []
    images = []
    for c in spec.get("initContainers") or []:
        if c.get("image"):
            images.append(normalized_image(c["image"]))
    for c in spec.get("containers") or []:
        if c.get("image"):
            images.append(normalized_image(c["image"]))
        for p in c.get("ports") or []:
            hp = int(p.get("hostPort") or 0)
            if hp > 0:
                ports.append((str(p.get("hostIP") or "0.0.0.0"), str(p.get("protocol") or "TCP"), hp))
    spread = []
    for i, c in enumerate(spec.get("topologySpreadConstraints") or []):
        f = f"spec.topologySpreadConstraints[{i}]"
        when = c.get("whenUnsatisfiable") or "DoNotSchedule"
        if when not in ("DoNotSchedule", "ScheduleAnyway"):
            raise SpecError(
                f'{f}.whenUnsatisfiable: Unsupported value: "{when}": supported values: "DoNotSchedule", "ScheduleAnyway"'
            )
        spread.append(
            {
                "max_skew": int(c.get("maxSkew") or 0),
                "topology_key": str(c.get("topologyKey") or ""),
                "hard": when == "DoNotSchedule",
                "selector": label_selector(
                    c.get("labelSelector"), f + ".labelSelector", labels, c.get("matchLabelKeys") or ()
                ),
                "min_domains": int(c.get("minDomains") or 1),
                "honor_affinity": (c.get("nodeAffinityPolicy") or "Honor") == "Honor",
                "honor_taints": (c.get("nodeTaintsPolicy") or "Ignore") == "Honor",
            }
        )
    terms: dict[str, list[dict[str, Any]]] = {}
    for kind, req_name, pref_name in (
        ("podAffinity", "affinity", "preferred_affinity"),
        ("podAntiAffinity", "anti_affinity", "preferred_anti_affinity"),
    ):
        a = aff.get(kind) if aff else None
        if not a:
            terms[req_name] = []
            terms[pref_name] = []
            continue
        req_key = "requiredDuringSchedulingIgnoredDuringExecution"
        pref_key = "preferredDuringSchedulingIgnoredDuringExecution"
        terms[req_name] = _aff_terms(a.get(req_key), f"spec.affinity.{kind}.{req_key}", ns, labels, False)
        terms[pref_name] = _aff_terms(a.get(pref_key), f"spec.affinity.{kind}.{pref_key}", ns, labels, True)
    return {
        "key": f"{ns}/{pname}",
        "namespace": ns,
        "labels": list(labels.items()),
        "node_name": spec.get("nodeName") or "",
        "cpu": reqs.pop("cpu", 0),
        "memory": reqs.pop("memory", 0),
        "ephemeral": reqs.pop("ephemeral-storage", 0),
        "scalars": sorted((k, v) for k, v in reqs.items() if k != "pods"),
        "nonzero_cpu": nonzero.get("cpu", 0),
        "nonzero_memory": nonzero.get("memory", 0),
        "node_selector": _pairs(spec.get("nodeSelector"), "spec.nodeSelector"),
        "required_terms": required_terms,
        "preferred_terms": preferred,
        "tolerations": tolerations,
        "host_ports": ports,
        "spread": spread,
        "affinity": terms["affinity"],
        "anti_affinity": terms["anti_affinity"],
        "preferred_affinity": terms["preferred_affinity"],
        "preferred_anti_affinity": terms["preferred_anti_affinity"],
        "images": images,
    }


def node_spec(node: Mapping[str, Any]) -> dict[str, Any]:
    """Reduce a Node object (dict) to the engine's node spec."""
    if not isinstance(node, Mapping):
        raise SpecError("node: must be an object")
    meta = node.get("metadata") or {}
    spec = node.get("spec") or {}
    status = node.get("status") or {}
    name = meta.get("name")
    if not name:
        raise SpecError("metadata.name: Required value: name is required")
    alloc = _resource_list(status.get("allocatable") or status.get("capacity"), "status.allocatable")
    taints = []
    for i, t in enumerate(spec.get("taints") or []):
        effect = t.get("effect") or ""
        if effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise SpecError(
                f'spec.taints[{i}].effect: Unsupported value: "{effect}": supported values: '
                '"NoSchedule", "PreferNoSchedule", "NoExecute"'
            )
        taints.append((str(t.get("key") or ""), str(t.get("value") or ""), effect))
    images = []
    for img in status.get("images") or []:
        names = [str(n) for n in img.get("names") or []]
        if names:
            images.append((names, int(img.get("sizeBytes") or 0)))
    return {
        "name": str(name),
        "labels": _pairs(meta.get("labels"), "metadata.labels"),
        "taints": taints,
        "unschedulable": bool(spec.get("unschedulable")),
        "cpu": alloc.pop("cpu", 0),
        "memory": alloc.pop("memory", 0),
        "ephemeral": alloc.pop("ephemeral-storage", 0),
        "pods": alloc.pop("pods", 0),
        "scalars": sorted(alloc.items()),
        "images": images,
    }
