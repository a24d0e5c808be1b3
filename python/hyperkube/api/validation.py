"""Validation with field paths, as upstream's ``ValidateObjectMeta`` / ``ValidatePod`` ... do.

Each validator returns a list of *causes* (``{"reason", "message", "field"}``), which the API
server turns into a 422 ``Invalid`` Status (``Pod "x" is invalid: spec.containers[0].image:
Required value``). Name and label rules run in the compiled core (``hyperkube._native``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hyperkube import _native
from hyperkube.api.meta import parse_quantity

Obj = dict[str, Any]
Cause = dict[str, str]


def _q(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else json.dumps(value, default=str)


def required(field: str) -> Cause:
    return {"reason": "FieldValueRequired", "message": "Required value", "field": field}


def invalid(field: str, value: Any, detail: str) -> Cause:
    return {"reason": "FieldValueInvalid", "message": f"Invalid value: {_q(value)}: {detail}", "field": field}


def unsupported(field: str, value: Any, allowed: list[str]) -> Cause:
    opts = ", ".join(_q(a) for a in allowed)
    return {
        "reason": "FieldValueNotSupported",
        "message": f"Unsupported value: {_q(value)}: supported values: {opts}",
        "field": field,
    }


def duplicate(field: str, value: Any) -> Cause:
    return {"reason": "FieldValueDuplicate", "message": f"Duplicate value: {_q(value)}", "field": field}


def forbidden(field: str, detail: str) -> Cause:
    return {"reason": "FieldValueForbidden", "message": f"Forbidden: {detail}", "field": field}


def type_error(field: str, value: Any, expected: str) -> Cause:
    return {
        "reason": "FieldValueTypeInvalid",
        "message": f"Invalid value: {_q(value)}: must be {expected}",
        "field": field,
    }


NAME_CHECKS: dict[str, Callable[[str], list[str]]] = {
    "subdomain": _native.validate_dns1123_subdomain,
    "label": _native.validate_dns1123_label,
    "path": lambda name: [],  # path segment names: only "/", "%", "." and ".." are refused
}


def validate_name(name: Any, field: str, rule: str = "subdomain") -> list[Cause]:
    if not isinstance(name, str):
        return [type_error(field, name, "a string")]
    if not name:
        return [required(field)]
    if name in (".", ".."):
        return [invalid(field, name, 'may not be "." or ".."')]
    if "/" in name or "%" in name:
        return [invalid(field, name, 'may not contain "/" or "%"')]
    return [invalid(field, name, msg) for msg in NAME_CHECKS[rule](name)]


def validate_labels(labels: Any, field: str) -> list[Cause]:
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [type_error(field, labels, "an object")]
    out: list[Cause] = []
    for k, v in labels.items():
        for msg in _native.validate_qualified_name(k):
            out.append(invalid(field, k, msg))
        if not isinstance(v, str):
            out.append(type_error(f"{field}.{k}", v, "a string"))
            continue
        for msg in _native.validate_label_value(v):
            out.append(invalid(f"{field}.{k}", v, msg))
    return out


def validate_annotations(ann: Any, field: str) -> list[Cause]:
    if ann is None:
        return []
    if not isinstance(ann, dict):
        return [type_error(field, ann, "an object")]
    out: list[Cause] = []
    total = 0
    for k, v in ann.items():
        for msg in _native.validate_qualified_name(k.lower()):
            out.append(invalid(field, k, msg))
        if not isinstance(v, str):
            out.append(type_error(f"{field}.{k}", v, "a string"))
            continue
        total += len(k) + len(v)
    if total > 256 * 1024:
        out.append(
            {
                "reason": "FieldValueTooLong",
                "message": "Too long: must have at most 262144 bytes",
                "field": field,
            }
        )
    return out


def validate_metadata(obj: Obj, namespaced: bool, name_rule: str = "subdomain") -> list[Cause]:
    md = obj.get("metadata")
    if not isinstance(md, dict):
        return [required("metadata")]
    out: list[Cause] = []
    name = md.get("name")
    if not name and md.get("generateName"):
        pass
    else:
        out += validate_name(name, "metadata.name", name_rule)
    if namespaced:
        ns = md.get("namespace")
        if not ns:
            out.append(required("metadata.namespace"))
        else:
            out += validate_name(ns, "metadata.namespace", "label")
    elif md.get("namespace"):
        out.append(forbidden("metadata.namespace", "not allowed on this type"))
    out += validate_labels(md.get("labels"), "metadata.labels")
    out += validate_annotations(md.get("annotations"), "metadata.annotations")
    fin = md.get("finalizers")
    if fin is not None:
        if not isinstance(fin, list):
            out.append(type_error("metadata.finalizers", fin, "a list"))
        else:
            for i, f in enumerate(fin):
                if not isinstance(f, str):
                    out.append(type_error(f"metadata.finalizers[{i}]", f, "a string"))
                elif "/" not in f and f not in ("kubernetes", "orphan", "foregroundDeletion"):
                    out.append(
                        invalid(
                            f"metadata.finalizers[{i}]",
                            f,
                            "name is neither a standard finalizer name nor is it fully qualified",
                        )
                    )
                else:
                    for msg in _native.validate_qualified_name(f):
                        out.append(invalid(f"metadata.finalizers[{i}]", f, msg))
    return out


def _port_number(value: Any, field: str, allow_zero: bool = False) -> list[Cause]:
    if isinstance(value, bool) or not isinstance(value, int):
        return [type_error(field, value, "an integer")]
    lo = 0 if allow_zero else 1
    if not lo <= value <= 65535:
        return [invalid(field, value, f"must be between {lo} and 65535, inclusive")]
    return []


def _int_or_string_port(value: Any, field: str) -> list[Cause]:
    if isinstance(value, str):
        if not value:
            return [required(field)]
        errs = (
            _native.validate_dns1123_label(value)
            if len(value) <= 15
            else ["must be no more than 15 characters"]
        )
        return [invalid(field, value, m) for m in errs]
    return _port_number(value, field)


PROTOCOLS = ["SCTP", "TCP", "UDP"]


def _resources(res: Any, field: str) -> list[Cause]:
    if res is None:
        return []
    if not isinstance(res, dict):
        return [type_error(field, res, "an object")]
    out: list[Cause] = []
    parsed: dict[str, dict[str, Any]] = {}
    for kind in ("limits", "requests"):
        m = res.get(kind)
        if m is None:
            continue
        if not isinstance(m, dict):
            out.append(type_error(f"{field}.{kind}", m, "an object"))
            continue
        for rname, q in m.items():
            f = f"{field}.{kind}[{rname}]"
            try:
                v = parse_quantity(q)
            except ValueError as e:
                out.append(invalid(f, q, str(e)))
                continue
            if v < 0:
                out.append(invalid(f, q, "must be greater than or equal to 0"))
            parsed.setdefault(kind, {})[rname] = v
    for rname, req in parsed.get("requests", {}).items():
        lim = parsed.get("limits", {}).get(rname)
        if lim is not None and req > lim:
            out.append(
                invalid(
                    f"{field}.requests",
                    res["requests"][rname],
                    f"must be less than or equal to {rname} limit of {res['limits'][rname]}",
                )
            )
    return out


def _containers(cs: Any, field: str, required_nonempty: bool, volumes: set[str]) -> list[Cause]:
    if cs is None:
        return [required(field)] if required_nonempty else []
    if not isinstance(cs, list):
        return [type_error(field, cs, "a list")]
    if required_nonempty and not cs:
        return [required(field)]
    out: list[Cause] = []
    names: set[str] = set()
    for i, c in enumerate(cs):
        f = f"{field}[{i}]"
        if not isinstance(c, dict):
            out.append(type_error(f, c, "an object"))
            continue
        name = c.get("name")
        if not name:
            out.append(required(f"{f}.name"))
        elif not isinstance(name, str):
            out.append(type_error(f"{f}.name", name, "a string"))
        else:
            out += [invalid(f"{f}.name", name, m) for m in _native.validate_dns1123_label(name)]
            if name in names:
                out.append(duplicate(f"{f}.name", name))
            names.add(name)
        image = c.get("image")
        if not image or not isinstance(image, str) or not image.strip():
            out.append(required(f"{f}.image"))
        pnames: set[str] = set()
        for j, p in enumerate(c.get("ports") or []):
            pf = f"{f}.ports[{j}]"
            if not isinstance(p, dict):
                out.append(type_error(pf, p, "an object"))
                continue
            if "containerPort" not in p:
                out.append(required(f"{pf}.containerPort"))
            else:
                out += _port_number(p["containerPort"], f"{pf}.containerPort")
            if "hostPort" in p and p["hostPort"] not in (0, None):
                out += _port_number(p["hostPort"], f"{pf}.hostPort")
            if p.get("protocol") not in PROTOCOLS:
                out.append(unsupported(f"{pf}.protocol", p.get("protocol"), PROTOCOLS))
            pn = p.get("name")
            if pn:
                out += [invalid(f"{pf}.name", pn, m) for m in _native.validate_dns1123_label(str(pn))]
                if pn in pnames:
                    out.append(duplicate(f"{pf}.name", pn))
                pnames.add(pn)
        out += _resources(c.get("resources"), f"{f}.resources")
        for j, e in enumerate(c.get("env") or []):
            if not isinstance(e, dict) or not e.get("name"):
                out.append(required(f"{f}.env[{j}].name"))
        for j, vm in enumerate(c.get("volumeMounts") or []):
            if not isinstance(vm, dict):
                continue
            if not vm.get("name"):
                out.append(required(f"{f}.volumeMounts[{j}].name"))
            elif vm["name"] not in volumes:
                out.append(
                    {
                        "reason": "FieldValueNotFound",
                        "message": f"Not found: {_q(vm['name'])}",
                        "field": f"{f}.volumeMounts[{j}].name",
                    }
                )
            if not vm.get("mountPath"):
                out.append(required(f"{f}.volumeMounts[{j}].mountPath"))
        pol = c.get("imagePullPolicy")
        if pol is not None and pol not in ("Always", "IfNotPresent", "Never"):
            out.append(unsupported(f"{f}.imagePullPolicy", pol, ["Always", "IfNotPresent", "Never"]))
    return out


def validate_pod_spec(spec: Any, field: str, template: bool = False) -> list[Cause]:
    if not isinstance(spec, dict):
        return [required(field)] if spec is None else [type_error(field, spec, "an object")]
    out: list[Cause] = []
    volumes: set[str] = set()
    for i, v in enumerate(spec.get("volumes") or []):
        vf = f"{field}.volumes[{i}]"
        if not isinstance(v, dict) or not v.get("name"):
            out.append(required(f"{vf}.name"))
            continue
        out += [invalid(f"{vf}.name", v["name"], m) for m in _native.validate_dns1123_label(str(v["name"]))]
        if v["name"] in volumes:
            out.append(duplicate(f"{vf}.name", v["name"]))
        volumes.add(v["name"])
    out += _containers(spec.get("containers"), f"{field}.containers", True, volumes)
    out += _containers(spec.get("initContainers"), f"{field}.initContainers", False, volumes)
    rp = spec.get("restartPolicy")
    allowed_rp = ["Always"] if template else ["Always", "OnFailure", "Never"]
    if rp not in allowed_rp:
        out.append(unsupported(f"{field}.restartPolicy", rp, allowed_rp))
    dp = spec.get("dnsPolicy")
    if dp not in ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"):
        out.append(
            unsupported(
                f"{field}.dnsPolicy", dp, ["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"]
            )
        )
    tg = spec.get("terminationGracePeriodSeconds")
    if tg is not None and (not isinstance(tg, int) or tg < 0):
        out.append(
            invalid(f"{field}.terminationGracePeriodSeconds", tg, "must be greater than or equal to 0")
        )
    ns = spec.get("nodeSelector")
    if ns is not None:
        out += validate_labels(ns, f"{field}.nodeSelector")
    nn = spec.get("nodeName")
    if nn:
        out += [invalid(f"{field}.nodeName", nn, m) for m in _native.validate_dns1123_subdomain(str(nn))]
    return out


def pod(obj: Obj, old: Obj | None) -> list[Cause]:
    out = validate_pod_spec(obj.get("spec"), "spec")
    if old is not None:
        # upstream: pod updates may not change fields other than image, activeDeadlineSeconds,
        # tolerations (additions) and terminationGracePeriodSeconds
        o, n = dict(old.get("spec") or {}), dict(obj.get("spec") or {})
        for s in (o, n):
            s.pop("tolerations", None)
            s.pop("activeDeadlineSeconds", None)
            s.pop("terminationGracePeriodSeconds", None)
            s["containers"] = [
                {k: v for k, v in c.items() if k != "image"} for c in s.get("containers") or []
            ]
            s["initContainers"] = [
                {k: v for k, v in c.items() if k != "image"} for c in s.get("initContainers") or []
            ]
        if o != n:
            out.append(
                forbidden(
                    "spec",
                    "pod updates may not change fields other than `spec.containers[*].image`,"
                    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
                    "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
                    "(allow it to be set to 1 if it was previously negative)",
                )
            )
    return out


def _selector_matches_template(spec: Obj, field: str) -> list[Cause]:
    out: list[Cause] = []
    sel = spec.get("selector")
    if not isinstance(sel, dict) or not (sel.get("matchLabels") or sel.get("matchExpressions")):
        out.append(required(f"{field}.selector"))
        return out
    out += validate_labels(sel.get("matchLabels"), f"{field}.selector.matchLabels")
    tpl = spec.get("template")
    if not isinstance(tpl, dict):
        out.append(required(f"{field}.template"))
        return out
    labels = (tpl.get("metadata") or {}).get("labels") or {}
    out += validate_labels(labels, f"{field}.template.metadata.labels")
    try:
        s = _native.Selector.from_label_selector(sel)
    except ValueError as e:
        out.append(invalid(f"{field}.selector", sel, str(e)))
        return out
    if not s.matches(labels if isinstance(labels, dict) else {}):
        out.append(
            invalid(
                f"{field}.template.metadata.labels", labels, "`selector` does not match template `labels`"
            )
        )
    return out


def _replicas(spec: Obj, field: str) -> list[Cause]:
    r = spec.get("replicas")
    if r is None:
        return []
    if isinstance(r, bool) or not isinstance(r, int):
        return [type_error(f"{field}.replicas", r, "an integer")]
    if r < 0:
        return [invalid(f"{field}.replicas", r, "must be greater than or equal to 0")]
    return []


def deployment(obj: Obj, old: Obj | None) -> list[Cause]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec")]
    out = _replicas(spec, "spec") + _selector_matches_template(spec, "spec")
    tpl = spec.get("template")
    if isinstance(tpl, dict):
        out += validate_pod_spec(tpl.get("spec"), "spec.template.spec", template=True)
    st = (spec.get("strategy") or {}).get("type")
    if st not in ("RollingUpdate", "Recreate"):
        out.append(unsupported("spec.strategy.type", st, ["Recreate", "RollingUpdate"]))
    if old is not None and (old.get("spec") or {}).get("selector") != spec.get("selector"):
        out.append(invalid("spec.selector", spec.get("selector"), "field is immutable"))
    return out


def replicaset(obj: Obj, old: Obj | None) -> list[Cause]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec")]
    out = _replicas(spec, "spec") + _selector_matches_template(spec, "spec")
    tpl = spec.get("template")
    if isinstance(tpl, dict):
        out += validate_pod_spec(tpl.get("spec"), "spec.template.spec", template=True)
    if old is not None and (old.get("spec") or {}).get("selector") != spec.get("selector"):
        out.append(invalid("spec.selector", spec.get("selector"), "field is immutable"))
    return out


SERVICE_TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]


def service(obj: Obj, old: Obj | None) -> list[Cause]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec")]
    out: list[Cause] = []
    t = spec.get("type")
    if t not in SERVICE_TYPES:
        out.append(unsupported("spec.type", t, SERVICE_TYPES))
    ports = spec.get("ports") or []
    if t != "ExternalName" and not ports and spec.get("clusterIP") != "None":
        out.append(required("spec.ports"))
    names: set[str] = set()
    seen: set[tuple[Any, Any]] = set()
    for i, p in enumerate(ports):
        f = f"spec.ports[{i}]"
        if not isinstance(p, dict):
            out.append(type_error(f, p, "an object"))
            continue
        if len(ports) > 1 and not p.get("name"):
            out.append(required(f"{f}.name"))
        if p.get("name"):
            out += [
                invalid(f"{f}.name", p["name"], m) for m in _native.validate_dns1123_label(str(p["name"]))
            ]
            if p["name"] in names:
                out.append(duplicate(f"{f}.name", p["name"]))
            names.add(p["name"])
        if "port" not in p:
            out.append(required(f"{f}.port"))
        else:
            out += _port_number(p["port"], f"{f}.port")
        if p.get("protocol") not in PROTOCOLS:
            out.append(unsupported(f"{f}.protocol", p.get("protocol"), PROTOCOLS))
        if "targetPort" in p:
            out += _int_or_string_port(p["targetPort"], f"{f}.targetPort")
        np_ = p.get("nodePort")
        if np_ not in (None, 0):
            if t not in ("NodePort", "LoadBalancer"):
                out.append(forbidden(f"{f}.nodePort", "may not be used when `type` is 'ClusterIP'"))
            elif isinstance(np_, bool) or not isinstance(np_, int) or not 30000 <= np_ <= 32767:
                out.append(
                    invalid(
                        f"{f}.nodePort",
                        np_,
                        "provided port is not in the valid range. The range of valid ports is 30000-32767",
                    )
                )
        key = (p.get("port"), p.get("protocol"))
        if key in seen:
            out.append(duplicate(f, {"port": p.get("port"), "protocol": p.get("protocol")}))
        seen.add(key)
    sel = spec.get("selector")
    if sel is not None:
        out += validate_labels(sel, "spec.selector")
    if old is not None:
        oc = (old.get("spec") or {}).get("clusterIP")
        nc = spec.get("clusterIP")
        if oc and nc and oc != nc and t != "ExternalName":
            out.append(invalid("spec.clusterIPs[0]", nc, "may not change once set"))
    return out


def node(obj: Obj, old: Obj | None) -> list[Cause]:
    out: list[Cause] = []
    spec = obj.get("spec") or {}
    for i, t in enumerate(spec.get("taints") or []):
        if not isinstance(t, dict) or not t.get("key"):
            out.append(required(f"spec.taints[{i}].key"))
        elif t.get("effect") not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            out.append(
                unsupported(
                    f"spec.taints[{i}].effect",
                    t.get("effect"),
                    ["NoExecute", "NoSchedule", "PreferNoSchedule"],
                )
            )
    status = obj.get("status") or {}
    for kind in ("capacity", "allocatable"):
        for r, q in (status.get(kind) or {}).items():
            try:
                parse_quantity(q)
            except ValueError as e:
                out.append(invalid(f"status.{kind}[{r}]", q, str(e)))
    return out


def configmap(obj: Obj, old: Obj | None) -> list[Cause]:
    out: list[Cause] = []
    keys: set[str] = set()
    for field in ("data", "binaryData"):
        d = obj.get(field)
        if d is None:
            continue
        if not isinstance(d, dict):
            out.append(type_error(field, d, "an object"))
            continue
        for k, v in d.items():
            import re

            if not re.fullmatch(r"[-._a-zA-Z0-9]+", k) or len(k) > 253:
                out.append(
                    invalid(
                        f"{field}[{k}]",
                        k,
                        "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                    )
                )
            if k in keys:
                out.append(duplicate(f"{field}[{k}]", k))
            keys.add(k)
            if field == "data" and not isinstance(v, str):
                out.append(type_error(f"{field}[{k}]", v, "a string"))
    return out


def secret(obj: Obj, old: Obj | None) -> list[Cause]:
    out = configmap({"data": obj.get("data")}, None)
    import base64
    import binascii

    for k, v in (obj.get("data") or {}).items():
        if isinstance(v, str):
            try:
                base64.b64decode(v, validate=True)
            except (binascii.Error, ValueError):
                out.append(invalid(f"data[{k}]", "<secret contents redacted>", "illegal base64 data"))
    if old is not None and old.get("type") != obj.get("type"):
        out.append(invalid("type", obj.get("type"), "field is immutable"))
    return out


def lease(obj: Obj, old: Obj | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    out: list[Cause] = []
    d = spec.get("leaseDurationSeconds")
    if d is not None and (not isinstance(d, int) or d <= 0):
        out.append(invalid("spec.leaseDurationSeconds", d, "must be greater than 0"))
    return out


def priorityclass(obj: Obj, old: Obj | None) -> list[Cause]:
    v = obj.get("value")
    if v is None:
        return [required("value")]
    if isinstance(v, bool) or not isinstance(v, int):
        return [invalid("value", v, "must be less than or equal to 1000000000")]
    system = str((obj.get("metadata") or {}).get("name", "")).startswith("system-")  # admission guards these
    if v > (2_000_001_000 if system else 1_000_000_000):
        return [invalid("value", v, "must be less than or equal to 1000000000")]
    return []


VALIDATORS: dict[tuple[str, str], Callable[[Obj, Obj | None], list[Cause]]] = {
    ("", "Pod"): pod,
    ("", "Service"): service,
    ("", "Node"): node,
    ("", "ConfigMap"): configmap,
    ("", "Secret"): secret,
    ("apps", "Deployment"): deployment,
    ("apps", "ReplicaSet"): replicaset,
    ("coordination.k8s.io", "Lease"): lease,
    ("scheduling.k8s.io", "PriorityClass"): priorityclass,
}

# Resources whose names are DNS-1123 labels rather than subdomains (as upstream).
LABEL_NAMED = {("", "Namespace"), ("", "Service")}
# Resources whose names are path segments (RBAC: "system:node" is a valid ClusterRole name).
PATH_NAMED = {
    ("rbac.authorization.k8s.io", k) for k in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
}


def validate(group: str, kind: str, namespaced: bool, obj: Obj, old: Obj | None = None) -> list[Cause]:
    rule = "label" if (group, kind) in LABEL_NAMED else "path" if (group, kind) in PATH_NAMED else "subdomain"
    out = validate_metadata(obj, namespaced, rule)
    fn = VALIDATORS.get((group, kind))
    if fn is not None:
        out += fn(obj, old)
    return out
