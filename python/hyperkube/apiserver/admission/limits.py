"""LimitRanger (upstream plugin/pkg/admission/limitranger), for ``type: Container`` and ``Pod``.

For every LimitRange in the pod's namespace: containers without a request or limit for a
resource get ``defaultRequest`` / ``default`` (a missing request defaults to the limit, as
upstream); then ``min`` / ``max`` are enforced per container (and per pod for ``type: Pod``),
with upstream's messages (``maximum cpu usage per Container is 500m, but limit is 1``).
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from hyperkube.api.meta import parse_quantity
from hyperkube.api.registry import resource
from hyperkube.apiserver.admission.common import forbidden

if TYPE_CHECKING:
    from hyperkube.apiserver.admission.common import Context


def _q(v: Any) -> Decimal | None:
    try:
        return parse_quantity(v)
    except ValueError:
        return None


async def limit_ranges(ctx: Context) -> list[dict[str, Any]]:
    from hyperkube.apiserver.rest import ListOptions

    async def load() -> list[dict[str, Any]]:
        items, _ = await ctx.registry.list(resource("limitranges"), ctx.namespace, ListOptions())
        return items

    return list(await ctx.cache.get(("limitranges", ctx.namespace, ""), load))


async def admit(ctx: Context, pod: dict[str, Any]) -> None:
    ranges = copy.deepcopy(await limit_ranges(ctx))
    if not ranges:
        return
    spec = pod.setdefault("spec", {})
    containers = list(spec.get("initContainers") or []) + list(spec.get("containers") or [])
    errs: list[str] = []
    for lr in ranges:
        for item in (lr.get("spec") or {}).get("limits") or []:
            typ = item.get("type")
            if typ == "Container":
                for c in containers:
                    r = c.setdefault("resources", {})
                    lim = r.setdefault("limits", {})
                    req = r.setdefault("requests", {})
                    for k, v in (item.get("default") or {}).items():
                        lim.setdefault(k, v)
                    for k, v in (item.get("defaultRequest") or {}).items():
                        req.setdefault(k, v)
                    for k, v in lim.items():
                        req.setdefault(k, v)
                    if not lim:
                        r.pop("limits")
                    if not req:
                        r.pop("requests")
                    errs += _check(item, req, lim, "Container")
            elif typ == "Pod":
                req_sum: dict[str, Decimal] = {}
                lim_sum: dict[str, Decimal] = {}
                for c in spec.get("containers") or []:
                    r = c.get("resources") or {}
                    for src, dst in ((r.get("requests") or {}, req_sum), (r.get("limits") or {}, lim_sum)):
                        for k, v in src.items():
                            q = _q(v)
                            if q is not None:
                                dst[k] = dst.get(k, Decimal(0)) + q
                errs += _check(item, req_sum, lim_sum, "Pod")
    if errs:
        raise forbidden(ctx, pod, ", ".join(errs))


def _fmt(v: Any) -> str:
    if isinstance(v, Decimal):
        return format_quantity(v)
    return str(v)


def format_quantity(v: Decimal) -> str:
    if v == v.to_integral_value():
        return str(int(v))
    return f"{int(v * 1000)}m"


def _check(item: dict[str, Any], req: dict[str, Any], lim: dict[str, Any], typ: str) -> list[str]:
    errs = []
    for k, mn in (item.get("min") or {}).items():
        m = _q(mn)
        if m is None:
            continue
        rq = _q(req.get(k)) if k in req else None
        if rq is None:
            errs.append(f"minimum {k} usage per {typ} is {mn}.  No request is specified")
        elif rq < m:
            errs.append(f"minimum {k} usage per {typ} is {mn}, but request is {_fmt(req[k])}")
    for k, mx in (item.get("max") or {}).items():
        m = _q(mx)
        if m is None:
            continue
        lq = _q(lim.get(k)) if k in lim else None
        if lq is None:
            errs.append(f"maximum {k} usage per {typ} is {mx}.  No limit is specified")
        elif lq > m:
            errs.append(f"maximum {k} usage per {typ} is {mx}, but limit is {_fmt(lim[k])}")
    return errs
