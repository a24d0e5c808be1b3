"""The Node authorizer (upstream plugin/pkg/auth/authorizer/node), in front of RBAC.

A kubelet authenticates as ``system:node:<name>`` in group ``system:nodes``. It may read a
Secret, ConfigMap, PersistentVolumeClaim or ServiceAccount token only when a pod bound to its
node refers to it, may write only its own Node and its own Lease in ``kube-node-lease``, and
otherwise falls through to RBAC (the ``system:node`` role). Decisions for the restricted
resources are final: a kubelet cannot read another node's pod secrets whatever RBAC says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from hyperkube.apiserver.auth.rbac import Attributes, Decision

NODES_GROUP = "system:nodes"
NODE_PREFIX = "system:node:"

# pods_on(node_name) -> pods whose spec.nodeName is that node
PodsOnNode = Callable[[str], Iterable[dict]]

_REFERENCED = {"secrets", "configmaps", "persistentvolumeclaims", "persistentvolumes"}


def node_name(attrs: Attributes) -> str | None:
    """The node a request comes from, or None if the user is not a node."""
    if NODES_GROUP in attrs.user.groups and attrs.user.name.startswith(NODE_PREFIX):
        return attrs.user.name[len(NODE_PREFIX) :]
    return None


def references(pod: dict) -> set[tuple[str, str]]:
    """(resource, name) pairs a pod refers to: volumes, projected sources, env, envFrom,
    imagePullSecrets and its service account."""
    spec = pod.get("spec") or {}
    refs: set[tuple[str, str]] = set()
    for s in spec.get("imagePullSecrets") or []:
        refs.add(("secrets", s.get("name", "")))
    refs.add(("serviceaccounts", spec.get("serviceAccountName") or "default"))
    for v in spec.get("volumes") or []:
        if v.get("secret"):
            refs.add(("secrets", v["secret"].get("secretName", "")))
        if v.get("configMap"):
            refs.add(("configmaps", v["configMap"].get("name", "")))
        if v.get("persistentVolumeClaim"):
            refs.add(("persistentvolumeclaims", v["persistentVolumeClaim"].get("claimName", "")))
        for src in (v.get("projected") or {}).get("sources") or []:
            if src.get("secret"):
                refs.add(("secrets", src["secret"].get("name", "")))
            if src.get("configMap"):
                refs.add(("configmaps", src["configMap"].get("name", "")))
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        for e in c.get("env") or []:
            vf = e.get("valueFrom") or {}
            if vf.get("secretKeyRef"):
                refs.add(("secrets", vf["secretKeyRef"].get("name", "")))
            if vf.get("configMapKeyRef"):
                refs.add(("configmaps", vf["configMapKeyRef"].get("name", "")))
        for ef in c.get("envFrom") or []:
            if ef.get("secretRef"):
                refs.add(("secrets", ef["secretRef"].get("name", "")))
            if ef.get("configMapRef"):
                refs.add(("configmaps", ef["configMapRef"].get("name", "")))
    return refs


class NodeAuthorizer:
    def __init__(self, pods_on: PodsOnNode) -> None:
        self.pods_on = pods_on

    def authorize(self, a: Attributes) -> Decision | None:
        """A final Decision, or None for "no opinion" (ask RBAC)."""
        node = node_name(a)
        if node is None or not a.resource_request:
            return None
        deny = f'node "{node}" cannot {a.verb} {a.resource}: no relationship found between node "{node}" and this object'
        if a.resource in _REFERENCED or (a.resource == "serviceaccounts" and a.subresource == "token"):
            if a.verb != "get" and not (a.resource == "serviceaccounts" and a.verb == "create"):
                return Decision(False, f'node "{node}" can only get individual {a.resource}')
            if not a.name:
                return Decision(False, f'node "{node}" can only get individual {a.resource}')
            for pod in self.pods_on(node):
                if (pod.get("metadata") or {}).get("namespace") != a.namespace:
                    continue
                if (a.resource, a.name) in references(pod):
                    return Decision(True, "node authorizer: referenced by a pod bound to the node")
            return Decision(False, deny)
        if a.resource == "nodes" and a.verb not in ("get", "list", "watch"):
            if a.name and a.name != node:
                return Decision(False, f'node "{node}" cannot modify node "{a.name}"')
            return None
        if (
            a.resource == "leases"
            and a.api_group == "coordination.k8s.io"
            and a.verb not in ("get", "list", "watch")
        ):
            if a.namespace != "kube-node-lease" or (a.name and a.name != node):
                return Decision(False, f'node "{node}" can only access its own lease in kube-node-lease')
            return None
        return None
