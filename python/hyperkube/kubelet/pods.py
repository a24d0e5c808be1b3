"""Pure functions from Pod objects to runtime specs and back to Pod status, as upstream computes them.

- :func:`parse_quantity` - resource quantities (``500m``, ``64Mi``, ``1G``, ``1e3``).
- :func:`resolve_env` - ``env`` (values with ``$(VAR)`` expansion, ``fieldRef``, ``resourceFieldRef``,
  ``configMapKeyRef``, ``secretKeyRef``) and ``envFrom``; a missing object or key is a
  :class:`ConfigError` (the kubelet's ``CreateContainerConfigError``) unless marked ``optional``.
- :func:`container_status` / :func:`pod_phase` / :func:`pod_conditions` - the status fields, following
  ``pkg/kubelet/kubelet_pods.go`` (``getPhase``: a container waiting after a termination counts as
  stopped; restartPolicy Always keeps a pod Running ...).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from hyperkube.kubelet.runtime.base import ContainerStatus, State

_SUFFIX = {
    "": 1,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "Pi": 1024**5,
    "Ei": 1024**6,
}
_QTY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")


class ConfigError(Exception):
    """The pod's configuration cannot be resolved (CreateContainerConfigError)."""


def parse_quantity(q: str | int | float) -> float:
    if isinstance(q, (int, float)):
        return float(q)
    m = _QTY.match(q.strip())
    if not m or m.group(2) not in _SUFFIX:
        raise ValueError(f"invalid quantity {q!r}")
    num, suf = m.groups()
    if suf in ("E",) or "e" in num.lower():
        return float(num) * _SUFFIX.get(suf, 1)
    return float(num) * _SUFFIX[suf]


def rfc3339(t: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if t is None else t))


# ---------------------------------------------------------------------------------------------------------
# env


def field_value(pod: Mapping[str, Any], path: str) -> str:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    m = re.match(r"^metadata\.(labels|annotations)\['(.+)'\]$", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": status.get("hostIP", ""),
        "status.podIP": status.get("podIP", ""),
        "status.hostIPs": ",".join(i.get("ip", "") for i in status.get("hostIPs") or []),
        "status.podIPs": ",".join(i.get("ip", "") for i in status.get("podIPs") or []),
    }
    if path in simple:
        return str(simple[path])
    if path in ("metadata.labels", "metadata.annotations"):
        d = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(d.items()))
    raise ConfigError(f'unsupported fieldRef fieldPath "{path}"')


def resource_value(
    container: Mapping[str, Any], ref: Mapping[str, Any], node_alloc: Mapping[str, str]
) -> str:
    res = ref.get("resource", "")
    kind, _, name = res.partition(".")
    divisor = parse_quantity(ref.get("divisor") or "1")
    val = ((container.get("resources") or {}).get(kind) or {}).get(name)
    if val is None and kind == "limits":
        val = node_alloc.get(name)  # no limit: the node's allocatable, as upstream
    if val is None:
        return "0"
    q = parse_quantity(val) / divisor
    import math

    return str(int(math.ceil(q)))


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: defined vars are replaced, ``$$`` escapes, others stay as is."""
    out, i = [], 0
    while i < len(value):
        if value.startswith("$$", i):
            out.append("$")
            i += 2
        elif value.startswith("$(", i):
            j = value.find(")", i + 2)
            if j < 0:
                out.append(value[i:])
                break
            name = value[i + 2 : j]
            out.append(env[name] if name in env else value[i : j + 1])
            i = j + 1
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


Lookup = Callable[[str, str], Mapping[str, Any] | None]  # (kind, name) -> object or None


def resolve_env(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    lookup: Lookup,
    node_alloc: Mapping[str, str] | None = None,
) -> list[tuple[str, str]]:
    env: dict[str, str] = {}
    node_alloc = node_alloc or {}
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "")
        for kind, key in (("configmaps", "configMapRef"), ("secrets", "secretRef")):
            ref = src.get(key)
            if not ref:
                continue
            obj = lookup(kind, ref.get("name", ""))
            if obj is None:
                if ref.get("optional"):
                    continue
                label = "configmap" if kind == "configmaps" else "secret"
                raise ConfigError(f'{label} "{ref.get("name")}" not found')
            for k, v in _data(kind, obj).items():
                env[prefix + k] = v
    for e in container.get("env") or []:
        name = e["name"]
        if "valueFrom" not in e:
            env[name] = expand(str(e.get("value", "")), env)
            continue
        vf = e["valueFrom"]
        if "fieldRef" in vf:
            env[name] = field_value(pod, vf["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in vf:
            env[name] = resource_value(container, vf["resourceFieldRef"], node_alloc)
        else:
            for kind, key in (("configmaps", "configMapKeyRef"), ("secrets", "secretKeyRef")):
                ref = vf.get(key)
                if not ref:
                    continue
                obj = lookup(kind, ref.get("name", ""))
                label = "configmap" if kind == "configmaps" else "secret"
                if obj is None:
                    if ref.get("optional"):
                        break
                    raise ConfigError(f'{label} "{ref.get("name")}" not found')
                data = _data(kind, obj)
                if ref.get("key") not in data:
                    if ref.get("optional"):
                        break
                    raise ConfigError(
                        f"couldn't find key {ref.get('key')} in {label.capitalize()} {pod['metadata'].get('namespace')}/{ref.get('name')}"
                    )
                env[name] = data[ref["key"]]
                break
    return list(env.items())


def _data(kind: str, obj: Mapping[str, Any]) -> dict[str, str]:
    import base64

    out: dict[str, str] = {}
    if kind == "secrets":
        for k, v in (obj.get("data") or {}).items():
            out[k] = base64.b64decode(v).decode(errors="replace")
        out.update(obj.get("stringData") or {})
    else:
        out.update(obj.get("data") or {})
        for k, v in (obj.get("binaryData") or {}).items():
            out[k] = base64.b64decode(v).decode(errors="replace")
    return out


def data_bytes(kind: str, obj: Mapping[str, Any]) -> dict[str, bytes]:
    import base64

    out: dict[str, bytes] = {}
    if kind == "secrets":
        for k, v in (obj.get("data") or {}).items():
            out[k] = base64.b64decode(v)
        for k, v in (obj.get("stringData") or {}).items():
            out[k] = v.encode()
    else:
        for k, v in (obj.get("data") or {}).items():
            out[k] = v.encode()
        for k, v in (obj.get("binaryData") or {}).items():
            out[k] = base64.b64decode(v)
    return out


# ---------------------------------------------------------------------------------------------------------
# status


def container_id(runtime: str, cid: str) -> str:
    return f"{runtime}://{cid}"


def terminated(st: ContainerStatus, runtime: str) -> dict[str, Any]:
    t: dict[str, Any] = {
        "exitCode": st.exit_code if st.exit_code is not None else 255,
        "reason": st.reason or ("Completed" if st.exit_code == 0 else "Error"),
        "startedAt": rfc3339(st.started_at) if st.started_at else None,
        "finishedAt": rfc3339(st.finished_at) if st.finished_at else None,
        "containerID": container_id(runtime, st.id),
    }
    if st.signal:
        t["signal"] = st.signal
    if st.message:
        t["message"] = st.message
    return t


def container_status(
    container: Mapping[str, Any],
    current: ContainerStatus | None,
    previous: ContainerStatus | None,
    restart_count: int,
    runtime: str,
    waiting: tuple[str, str] | None = None,
    ready: bool = False,
    started: bool | None = None,
) -> dict[str, Any]:
    """One entry of status.containerStatuses. ``waiting`` = (reason, message) overrides the state."""
    out: dict[str, Any] = {
        "name": container["name"],
        "image": container.get("image", ""),
        "imageID": "",
        "ready": False,
        "restartCount": restart_count,
        "started": False,
        "lastState": {},
        "state": {"waiting": {"reason": "ContainerCreating"}},
    }
    if previous is not None and previous.state == State.EXITED:
        out["lastState"] = {"terminated": terminated(previous, runtime)}
    if current is not None:
        out["containerID"] = container_id(runtime, current.id)
        out["imageID"] = current.image_id
        if current.state == State.RUNNING:
            out["state"] = {"running": {"startedAt": rfc3339(current.started_at)}}
            out["ready"] = ready
            out["started"] = True if started is None else started
        elif current.state == State.EXITED:
            out["state"] = {"terminated": terminated(current, runtime)}
    if waiting is not None:
        reason, message = waiting
        if current is not None and current.state == State.EXITED:
            out["lastState"] = {"terminated": terminated(current, runtime)}
        out["state"] = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        out["ready"] = False
        out["started"] = False
    return out


def _state(cs: Mapping[str, Any]) -> str:
    return next(iter(cs.get("state") or {"waiting": {}}))


def pod_phase(
    pod: Mapping[str, Any], init_statuses: list[dict[str, Any]], statuses: list[dict[str, Any]]
) -> str:
    """Upstream's getPhase (restartable init containers aside)."""
    spec = pod.get("spec") or {}
    policy = spec.get("restartPolicy", "Always")
    for ics in init_statuses:
        st = _state(ics)
        term = (ics.get("state") or {}).get("terminated") or {}
        if st == "terminated" and term.get("exitCode") == 0:
            continue
        if policy == "Never" and st == "terminated":
            return "Failed"
        if policy == "Never" and st == "waiting" and ((ics.get("lastState") or {}).get("terminated")):
            return "Failed"
        return "Pending"
    running = waiting = stopped = succeeded = 0
    for cs in statuses:
        st = _state(cs)
        if st == "running":
            running += 1
        elif st == "terminated":
            stopped += 1
            if (cs["state"]["terminated"] or {}).get("exitCode") == 0:
                succeeded += 1
        else:
            if (cs.get("lastState") or {}).get("terminated"):
                stopped += 1
            else:
                waiting += 1
    if waiting > 0:
        return "Pending"
    if running > 0:
        return "Running"
    if stopped > 0:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def pod_conditions(
    old: list[dict[str, Any]] | None,
    sandbox_ready: bool,
    initialized: bool,
    containers_ready: bool,
    phase: str,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """PodReadyToStartContainers, Initialized, ContainersReady, Ready (+ PodScheduled kept from the scheduler);
    lastTransitionTime only moves when a status flips. A finished pod is not ready."""
    now = now or rfc3339()
    prev = {c.get("type"): c for c in old or []}
    if phase in ("Succeeded", "Failed"):
        containers_ready = False
    values = {
        "PodReadyToStartContainers": sandbox_ready,
        "Initialized": initialized,
        "ContainersReady": containers_ready,
        "Ready": containers_ready,
    }
    out = []
    sched = prev.get("PodScheduled") or {"type": "PodScheduled", "status": "True", "lastTransitionTime": now}
    out.append({k: v for k, v in sched.items() if k != "lastProbeTime"} | {"lastProbeTime": None})
    for typ, ok in values.items():
        status = "True" if ok else "False"
        p = prev.get(typ)
        c: dict[str, Any] = {"type": typ, "status": status, "lastProbeTime": None}
        c["lastTransitionTime"] = p["lastTransitionTime"] if p and p.get("status") == status else now
        if not ok and typ in ("ContainersReady", "Ready"):
            c["reason"] = "PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady"
        if not ok and typ == "Initialized":
            c["reason"] = "ContainersNotInitialized"
        out.append(c)
    return out


def qos_class(pod: Mapping[str, Any]) -> str:
    containers = list((pod.get("spec") or {}).get("containers") or []) + list(
        (pod.get("spec") or {}).get("initContainers") or []
    )
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in lim or (r in req and parse_quantity(req[r]) != parse_quantity(lim[r])):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"
