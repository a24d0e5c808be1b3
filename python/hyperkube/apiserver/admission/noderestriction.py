"""NodeRestriction (upstream plugin/pkg/admission/noderestriction).

A kubelet (user ``system:node:<name>`` in ``system:nodes``) may create or update only its own
Node, may create only mirror pods bound to itself, and may update the status only of pods bound
to itself. (Reads of secrets/configmaps and Lease writes are limited by the Node authorizer;
TokenRequests by the TokenRequest endpoint, which checks the bound pod is on the node.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hyperkube.apiserver.admission.common import forbidden
from hyperkube.apiserver.auth.node import NODE_PREFIX, NODES_GROUP
from hyperkube.apiserver.auth.rbac import UserInfo

if TYPE_CHECKING:
    from hyperkube.apiserver.admission.common import Context

MIRROR = "kubernetes.io/config.mirror"


def node_of(user: UserInfo | None) -> str | None:
    if user is not None and NODES_GROUP in user.groups and user.name.startswith(NODE_PREFIX):
        return user.name[len(NODE_PREFIX) :]
    return None


async def admit(ctx: Context, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    node = node_of(ctx.user)
    if node is None:
        return
    plural = ctx.res.plural
    if plural == "nodes" and ctx.res.group == "":
        name = (obj.get("metadata") or {}).get("name", "")
        if name != node:
            raise forbidden(ctx, obj, f'node "{node}" is not allowed to modify node "{name}"')
        if old is not None:
            labels = (obj.get("metadata") or {}).get("labels") or {}
            old_labels = (old.get("metadata") or {}).get("labels") or {}
            for k in set(labels) | set(old_labels):
                if "node-restriction.kubernetes.io/" in k and labels.get(k) != old_labels.get(k):
                    raise forbidden(ctx, obj, f"is not allowed to modify labels: {k}")
    elif plural == "pods" and ctx.res.group == "":
        if ctx.operation == "CREATE":
            annotations = (obj.get("metadata") or {}).get("annotations") or {}
            if not annotations.get(MIRROR):
                raise forbidden(
                    ctx,
                    obj,
                    f'pod does not have "{MIRROR}" annotation, node "{node}" can only create mirror pods',
                )
            if (obj.get("spec") or {}).get("nodeName") != node:
                raise forbidden(
                    ctx, obj, f'node "{node}" can only create pods with spec.nodeName set to itself'
                )
        elif old is not None and (old.get("spec") or {}).get("nodeName") != node:
            raise forbidden(
                ctx,
                obj,
                f'node "{node}" can only update pod status for pods with spec.nodeName set to itself',
            )
