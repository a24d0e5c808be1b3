"""The one registry of controllers, by upstream's ``--controllers`` names.

``hyperkube controller-manager --controllers '*,-nodeipam'`` picks from here. Each entry is a
class taking a :class:`~hyperkube.controllers.base.ControllerContext`; adding a controller means
adding one module and one line here.
"""

from __future__ import annotations

from hyperkube.controllers.base import Controller, ControllerContext
from hyperkube.controllers.deployment import DeploymentController
from hyperkube.controllers.endpoints import EndpointsController
from hyperkube.controllers.endpointslice import EndpointSliceController
from hyperkube.controllers.garbagecollector import GarbageCollector
from hyperkube.controllers.namespace import NamespaceController
from hyperkube.controllers.nodeipam import NodeIpamController
from hyperkube.controllers.nodelifecycle import NodeLifecycleController
from hyperkube.controllers.podgc import PodGCController
from hyperkube.controllers.replicaset import ReplicaSetController
from hyperkube.controllers.serviceaccount import ServiceAccountController

REGISTRY: dict[str, type[Controller]] = {
    c.name: c
    for c in (
        ReplicaSetController,
        DeploymentController,
        NodeLifecycleController,
        NodeIpamController,
        EndpointsController,
        EndpointSliceController,
        NamespaceController,
        GarbageCollector,
        ServiceAccountController,
        PodGCController,
    )
}

# off unless named explicitly (as upstream's "disabled by default" list)
DISABLED_BY_DEFAULT: frozenset[str] = frozenset()


def select(spec: str | list[str] = "*") -> list[str]:
    """Resolve ``--controllers``: ``*`` (all on by default), ``name`` (on), ``-name`` (off)."""
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    unknown = [i.lstrip("-") for i in items if i.lstrip("-") not in REGISTRY and i != "*"]
    if unknown:
        raise ValueError(f"unknown controllers: {', '.join(unknown)} (known: {', '.join(sorted(REGISTRY))})")
    on: list[str] = []
    star = "*" in items
    for name in REGISTRY:
        if f"-{name}" in items:
            continue
        if name in items or (star and name not in DISABLED_BY_DEFAULT):
            on.append(name)
    return on


def build(names: list[str], ctx: ControllerContext) -> list[Controller]:
    return [REGISTRY[n](ctx) for n in names]
