"""Priority admission (upstream plugin/pkg/admission/priority).

``spec.priorityClassName`` is resolved to ``spec.priority`` (and ``preemptionPolicy``) from its
PriorityClass; a pod without one gets the ``globalDefault`` class if there is one, else priority
0. The built-in classes ``system-node-critical`` (2000001000) and ``system-cluster-critical``
(2000000000) are created at start; only one class may be ``globalDefault``; user classes may not
exceed 1000000000 nor use the ``system-`` prefix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hyperkube.api.errors import ApiError
from hyperkube.api.registry import resource
from hyperkube.apiserver.admission.common import forbidden

if TYPE_CHECKING:
    from hyperkube.apiserver.admission.common import Context
    from hyperkube.apiserver.rest import Registry

BUILTIN = {"system-node-critical": 2000001000, "system-cluster-critical": 2000000000}
HIGHEST_USER = 1000000000


def _res() -> Any:
    return resource("priorityclasses", "scheduling.k8s.io")


async def ensure_builtin(reg: Registry) -> None:
    for name, value in BUILTIN.items():
        obj = {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": name},
            "value": value,
            "description": "Used for system critical pods that must not be moved from their current node."
            if name == "system-node-critical"
            else "Used for system critical pods that must run in the cluster, but can be moved to another "
            "node if necessary.",
        }
        try:
            await reg.create(_res(), None, obj)
        except ApiError as e:
            if e.code != 409:
                raise


async def _classes(ctx: Context) -> list[dict[str, Any]]:
    from hyperkube.apiserver.rest import ListOptions

    items, _ = await ctx.registry.list(_res(), None, ListOptions())
    return items


async def admit(ctx: Context, pod: dict[str, Any]) -> None:
    spec = pod.setdefault("spec", {})
    name = spec.get("priorityClassName") or ""
    pc: dict[str, Any] | None = None
    if name:
        try:
            pc = await ctx.registry.get(_res(), None, name)
        except ApiError as e:
            if e.code != 404:
                raise
            raise forbidden(ctx, pod, f"no PriorityClass with name {name} was found") from None
    else:
        classes = await ctx.cache.get(("priorityclasses", "", ""), lambda: _classes(ctx))
        pc = next((c for c in classes if c.get("globalDefault")), None)
        if pc is not None:
            spec["priorityClassName"] = pc["metadata"]["name"]
    value = int(pc.get("value", 0)) if pc else 0
    # (0 is what defaulting leaves when the pod gave none, so only another value is refused)
    if spec.get("priority") not in (None, 0) and spec["priority"] != value:
        raise forbidden(
            ctx,
            pod,
            f"the integer value of priority ({spec['priority']}) must not be provided in pod spec; "
            f"priority admission controller computed {value} from the given PriorityClass name",
        )
    spec["priority"] = value
    if pc is not None:
        spec.setdefault("preemptionPolicy", pc.get("preemptionPolicy", "PreemptLowerPriority"))


async def admit_class(ctx: Context, pc: dict[str, Any], old: dict[str, Any] | None) -> None:
    name = (pc.get("metadata") or {}).get("name", "")
    if ctx.user is None:
        return  # the API server's own built-in classes
    if ctx.operation == "CREATE" and name.startswith("system-") and name not in BUILTIN:
        raise forbidden(
            ctx, pc, "priority class names with 'system-' prefix are reserved for system use only"
        )
    value = pc.get("value")
    if isinstance(value, int) and value > HIGHEST_USER and name not in BUILTIN:
        raise forbidden(ctx, pc, f"maximum allowed value of a user defined priority is {HIGHEST_USER}")
    if pc.get("globalDefault"):
        for other in await _classes(ctx):
            if other.get("globalDefault") and other["metadata"]["name"] != name:
                raise forbidden(
                    ctx,
                    pc,
                    f"PriorityClass {other['metadata']['name']} is already marked as default. "
                    "Only one default can exist",
                )
