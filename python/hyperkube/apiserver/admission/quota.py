"""ResourceQuota admission and usage (upstream plugin/pkg/admission/resourcequota + the quota
controller's recalculation).

A create in a namespace with quotas is checked against each quota's ``hard`` limits: object
counts (``pods``, ``services``, ``secrets``, ``configmaps``, ``persistentvolumeclaims``,
``replicationcontrollers``, ``resourcequotas``, ``services.nodeports``,
``services.loadbalancers``, and ``count/<resource>[.<group>]``) and pod compute resources
(``requests.cpu``, ``requests.memory``, ``limits.cpu``, ``limits.memory``, ``cpu``,
``memory``, ``requests.ephemeral-storage``). Usage is computed from the store at admission time
(terminal pods do not count), so it never drifts; ``status.used`` is written after each admitted
create and recomputed by a background loop (deletes free usage within a few seconds).
Concurrent creates can each pass a check the other would have failed (no reservation), which
upstream prevents by writing the quota status with a compare-and-swap first.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from hyperkube.api.errors import ApiError
from hyperkube.api.meta import parse_quantity
from hyperkube.api.registry import RESOURCES, Resource, resource
from hyperkube.apiserver.admission.common import forbidden
from hyperkube.apiserver.admission.limits import format_quantity

if TYPE_CHECKING:
    from hyperkube.apiserver.admission.common import Context
    from hyperkube.apiserver.rest import Registry

_LEGACY_COUNTS = {
    "pods",
    "services",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "replicationcontrollers",
    "resourcequotas",
}
_COMPUTE = {
    "requests.cpu": ("requests", "cpu"),
    "requests.memory": ("requests", "memory"),
    "requests.ephemeral-storage": ("requests", "ephemeral-storage"),
    "limits.cpu": ("limits", "cpu"),
    "limits.memory": ("limits", "memory"),
    "cpu": ("requests", "cpu"),
    "memory": ("requests", "memory"),
}


def _q(v: Any) -> Decimal:
    try:
        return parse_quantity(v)
    except ValueError:
        return Decimal(0)


def count_keys(res: Resource) -> list[str]:
    keys = [f"count/{res.plural}" + (f".{res.group}" if res.group else "")]
    if res.group == "" and res.plural in _LEGACY_COUNTS:
        keys.append(res.plural)
    return keys


def _pod_active(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def pod_compute(pod: dict[str, Any]) -> dict[str, Decimal]:
    spec = pod.get("spec") or {}
    out: dict[str, Decimal] = {}
    for key, (kind, name) in _COMPUTE.items():
        total = sum(
            (
                _q(((c.get("resources") or {}).get(kind) or {}).get(name, 0))
                for c in spec.get("containers") or []
            ),
            Decimal(0),
        )
        init = max(
            (
                _q(((c.get("resources") or {}).get(kind) or {}).get(name, 0))
                for c in spec.get("initContainers") or []
            ),
            default=Decimal(0),
        )
        out[key] = max(total, init)
    return out


def delta_of(res: Resource, obj: dict[str, Any]) -> dict[str, Decimal]:
    d = dict.fromkeys(count_keys(res), Decimal(1))
    if res.plural == "pods" and res.group == "":
        d.update(pod_compute(obj))
    if res.plural == "services" and res.group == "":
        t = (obj.get("spec") or {}).get("type")
        if t in ("NodePort", "LoadBalancer"):
            d["services.nodeports"] = Decimal(len((obj.get("spec") or {}).get("ports") or []))
        if t == "LoadBalancer":
            d["services.loadbalancers"] = Decimal(1)
    return d


async def usage(reg: Registry, ns: str, keys: set[str]) -> dict[str, Decimal]:
    from hyperkube.apiserver.rest import ListOptions

    used = dict.fromkeys(keys, Decimal(0))
    for res in RESOURCES:
        if not res.namespaced or not res.stored:
            continue
        mine = [k for k in count_keys(res) if k in keys]
        is_pods = res.plural == "pods" and res.group == ""
        is_svc = res.plural == "services" and res.group == ""
        if (
            not mine
            and not (is_pods and keys & set(_COMPUTE))
            and not (is_svc and keys & {"services.nodeports", "services.loadbalancers"})
        ):
            continue
        items, _ = await reg.list(res, ns, ListOptions())
        if is_pods:
            items = [p for p in items if _pod_active(p)]
        for obj in items:
            for k, v in delta_of(res, obj).items():
                if k in used:
                    used[k] += v
    return used


async def _quotas(reg: Registry, ns: str) -> list[dict[str, Any]]:
    from hyperkube.apiserver.rest import ListOptions

    items, _ = await reg.list(resource("resourcequotas"), ns, ListOptions())
    return items


def _fmt(v: Decimal) -> str:
    return format_quantity(v)


async def admit(ctx: Context, obj: dict[str, Any]) -> None:
    if not ctx.res.namespaced or not ctx.namespace or not ctx.res.stored or ctx.subresource:
        return
    if not await ctx.cache.get(
        ("resourcequotas", ctx.namespace, ""), lambda: _quotas(ctx.registry, ctx.namespace)
    ):
        return
    quotas = await _quotas(ctx.registry, ctx.namespace)  # fresh: usage is checked against current limits
    if not quotas:
        return
    delta = delta_of(ctx.res, obj)
    keys = {k for q in quotas for k in ((q.get("spec") or {}).get("hard") or {})}
    if not keys & set(delta):
        return
    is_pod = ctx.res.plural == "pods" and ctx.res.group == ""
    used = await usage(ctx.registry, ctx.namespace, keys)
    for q in quotas:
        name = q["metadata"]["name"]
        hard = (q.get("spec") or {}).get("hard") or {}
        if is_pod:
            missing = []
            for key in sorted(hard):
                if key in _COMPUTE:
                    kind, rname = _COMPUTE[key]
                    if any(
                        rname not in (((c.get("resources") or {}).get(kind)) or {})
                        for c in (obj.get("spec") or {}).get("containers") or []
                    ):
                        missing.append(key)
            if missing:
                raise forbidden(ctx, obj, f"failed quota: {name}: must specify {','.join(missing)}")
        over = [k for k in sorted(hard) if k in delta and delta[k] and used[k] + delta[k] > _q(hard[k])]
        if over:
            raise forbidden(
                ctx,
                obj,
                f"exceeded quota: {name}, requested: "
                + ",".join(f"{k}={_fmt(delta[k])}" for k in over)
                + ", used: "
                + ",".join(f"{k}={_fmt(used[k])}" for k in over)
                + ", limited: "
                + ",".join(f"{k}={hard[k]}" for k in over),
            )
    if ctx.dry_run:
        return
    for q in quotas:
        hard = (q.get("spec") or {}).get("hard") or {}
        new_used = {k: _fmt(used.get(k, Decimal(0)) + delta.get(k, Decimal(0))) for k in hard}
        await _write_status(ctx.registry, ctx.namespace, q["metadata"]["name"], hard, new_used)


async def _write_status(
    reg: Registry, ns: str, name: str, hard: dict[str, Any], used: dict[str, str]
) -> None:
    def mutate(cur: dict[str, Any]) -> dict[str, Any]:
        cur["status"] = {"hard": dict(hard), "used": used}
        cur["metadata"].pop("resourceVersion", None)
        return cur

    try:
        await reg._write_update(resource("resourcequotas"), ns, name, mutate, skip_validation=True)
    except ApiError as e:
        if e.code != 404:
            raise


async def init_status(ctx: Context, obj: dict[str, Any]) -> None:
    hard = (obj.get("spec") or {}).get("hard") or {}
    used = await usage(ctx.registry, ctx.namespace, set(hard))
    obj["status"] = {"hard": dict(hard), "used": {k: _fmt(v) for k, v in used.items()}}


async def reconcile(reg: Registry) -> None:
    from hyperkube.apiserver.rest import ListOptions

    quotas, _ = await reg.list(resource("resourcequotas"), None, ListOptions())
    for q in quotas:
        md = q["metadata"]
        hard = (q.get("spec") or {}).get("hard") or {}
        used = {k: _fmt(v) for k, v in (await usage(reg, md["namespace"], set(hard))).items()}
        if (q.get("status") or {}) != {"hard": hard, "used": used}:
            await _write_status(reg, md["namespace"], md["name"], hard, used)
