"""Selectable fields per resource (upstream's ``GetAttrs`` / field label conversion functions).

``field_set(plural, obj)`` gives the flat ``{field: value}`` a field selector matches against;
``check_fields`` rejects selectors on fields the resource does not support (400, as upstream's
``field label not supported``)."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


def _s(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return "" if v is None else str(v)


def _pod(o: Obj) -> dict[str, str]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    return {
        "spec.nodeName": _s(spec.get("nodeName")),
        "spec.restartPolicy": _s(spec.get("restartPolicy")),
        "spec.schedulerName": _s(spec.get("schedulerName")),
        "spec.serviceAccountName": _s(spec.get("serviceAccountName")),
        "spec.hostNetwork": _s(bool(spec.get("hostNetwork", False))),
        "status.phase": _s(st.get("phase")),
        "status.podIP": _s((st.get("podIPs") or [{}])[0].get("ip") if st.get("podIPs") else st.get("podIP")),
        "status.nominatedNodeName": _s(st.get("nominatedNodeName")),
    }


def _event(o: Obj) -> dict[str, str]:
    io = o.get("involvedObject") or {}
    src = o.get("source") or {}
    return {
        "involvedObject.kind": _s(io.get("kind")),
        "involvedObject.namespace": _s(io.get("namespace")),
        "involvedObject.name": _s(io.get("name")),
        "involvedObject.uid": _s(io.get("uid")),
        "involvedObject.apiVersion": _s(io.get("apiVersion")),
        "involvedObject.resourceVersion": _s(io.get("resourceVersion")),
        "involvedObject.fieldPath": _s(io.get("fieldPath")),
        "reason": _s(o.get("reason")),
        "reportingComponent": _s(o.get("reportingComponent")),
        "source": _s(src.get("component")),
        "type": _s(o.get("type")),
    }


EXTRA = {
    "pods": _pod,
    "events": _event,
    "nodes": lambda o: {"spec.unschedulable": _s(bool((o.get("spec") or {}).get("unschedulable", False)))},
    "namespaces": lambda o: {"status.phase": _s((o.get("status") or {}).get("phase"))},
    "secrets": lambda o: {"type": _s(o.get("type"))},
    "replicasets": lambda o: {"status.replicas": _s((o.get("status") or {}).get("replicas", 0))},
    "services": lambda o: {
        "spec.clusterIP": _s((o.get("spec") or {}).get("clusterIP")),
        "spec.type": _s((o.get("spec") or {}).get("type")),
    },
}

SUPPORTED: dict[str, set[str]] = {
    "pods": set(_pod({}).keys()),
    "events": set(_event({}).keys()),
    "nodes": {"spec.unschedulable"},
    "namespaces": {"status.phase"},
    "secrets": {"type"},
    "replicasets": {"status.replicas"},
    "services": {"spec.clusterIP", "spec.type"},
}


def field_set(plural: str, obj: Obj) -> dict[str, str]:
    md = obj.get("metadata") or {}
    out = {"metadata.name": _s(md.get("name")), "metadata.namespace": _s(md.get("namespace"))}
    fn = EXTRA.get(plural)
    if fn is not None:
        out.update(fn(obj))
    return out


def check_fields(plural: str, reqs: list[tuple[str, bool, str]]) -> str | None:
    """None when every field is selectable, else the unsupported field."""
    ok = SUPPORTED.get(plural, set()) | {"metadata.name", "metadata.namespace"}
    for f, _, _ in reqs:
        if f not in ok:
            return f
    return None


def matches(reqs: list[tuple[str, bool, str]], fields: dict[str, str]) -> bool:
    for f, negate, v in reqs:
        if (fields.get(f, "") == v) == negate:
            return False
    return True
