"""Resource addressing: (group, version, plural, namespaced) and upstream's URL layout.

A :class:`Resource` names one REST collection. ``path()`` builds the URL exactly as the
API server serves it::

    /api/v1/namespaces/{ns}/pods/{name}/status         (core group)
    /apis/apps/v1/namespaces/{ns}/deployments/{name}   (named groups)
    /api/v1/nodes/{name}                               (cluster-scoped)

The built-in table (``PODS``, ``DEPLOYMENTS`` ...) covers the resources the components use;
:func:`resource` looks one up by plural, ``plural.group``, short name or kind, and any other
resource can be named directly with ``Resource(group, version, plural)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote


@dataclass(frozen=True, slots=True)
class Resource:
    group: str
    version: str
    plural: str
    namespaced: bool = True
    kind: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """``plural.group`` (``pods`` for the core group), as in RBAC and error messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def base(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        """The URL path of the collection (``name=None``), an object, or one of its subresources.

        A namespaced resource with ``namespace=None`` addresses the collection across all
        namespaces (list and watch only).
        """
        parts = [self.base()]
        if self.namespaced and namespace:
            parts.append("namespaces/" + quote(namespace, safe=""))
        parts.append(self.plural)
        if name is not None:
            if not name:
                raise ValueError(f"{self.group_resource}: a name is required")
            parts.append(quote(name, safe=""))
            if subresource:
                parts.append(subresource)
        return "/".join(parts)

    def __str__(self) -> str:
        return self.group_resource


def _r(group: str, version: str, plural: str, kind: str, namespaced: bool = True) -> Resource:
    return Resource(group, version, plural, namespaced, kind)


PODS = _r("", "v1", "pods", "Pod")
NODES = _r("", "v1", "nodes", "Node", False)
NAMESPACES = _r("", "v1", "namespaces", "Namespace", False)
SERVICES = _r("", "v1", "services", "Service")
ENDPOINTS = _r("", "v1", "endpoints", "Endpoints")
EVENTS = _r("", "v1", "events", "Event")
CONFIGMAPS = _r("", "v1", "configmaps", "ConfigMap")
SECRETS = _r("", "v1", "secrets", "Secret")
SERVICEACCOUNTS = _r("", "v1", "serviceaccounts", "ServiceAccount")
REPLICATIONCONTROLLERS = _r("", "v1", "replicationcontrollers", "ReplicationController")
PERSISTENTVOLUMES = _r("", "v1", "persistentvolumes", "PersistentVolume", False)
PERSISTENTVOLUMECLAIMS = _r("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim")
LIMITRANGES = _r("", "v1", "limitranges", "LimitRange")
RESOURCEQUOTAS = _r("", "v1", "resourcequotas", "ResourceQuota")
PODTEMPLATES = _r("", "v1", "podtemplates", "PodTemplate")
COMPONENTSTATUSES = _r("", "v1", "componentstatuses", "ComponentStatus", False)
BINDINGS = _r("", "v1", "bindings", "Binding")
DEPLOYMENTS = _r("apps", "v1", "deployments", "Deployment")
REPLICASETS = _r("apps", "v1", "replicasets", "ReplicaSet")
STATEFULSETS = _r("apps", "v1", "statefulsets", "StatefulSet")
DAEMONSETS = _r("apps", "v1", "daemonsets", "DaemonSet")
CONTROLLERREVISIONS = _r("apps", "v1", "controllerrevisions", "ControllerRevision")
JOBS = _r("batch", "v1", "jobs", "Job")
CRONJOBS = _r("batch", "v1", "cronjobs", "CronJob")
LEASES = _r("coordination.k8s.io", "v1", "leases", "Lease")
ENDPOINTSLICES = _r("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice")
EVENTS_V1 = _r("events.k8s.io", "v1", "events", "Event")
PRIORITYCLASSES = _r("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", False)
POD_DISRUPTION_BUDGETS = _r("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget")
HPAS = _r("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler")
ROLES = _r("rbac.authorization.k8s.io", "v1", "roles", "Role")
ROLEBINDINGS = _r("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding")
CLUSTERROLES = _r("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False)
CLUSTERROLEBINDINGS = _r(
    "rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False
)
CRDS = _r("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False)
STORAGECLASSES = _r("storage.k8s.io", "v1", "storageclasses", "StorageClass", False)
INGRESSES = _r("networking.k8s.io", "v1", "ingresses", "Ingress")
NETWORKPOLICIES = _r("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy")

BUILTIN: tuple[Resource, ...] = tuple(v for v in dict(globals()).values() if isinstance(v, Resource))

_SHORT = {
    "po": "pods",
    "no": "nodes",
    "ns": "namespaces",
    "svc": "services",
    "ep": "endpoints",
    "ev": "events",
    "cm": "configmaps",
    "sa": "serviceaccounts",
    "rc": "replicationcontrollers",
    "pv": "persistentvolumes",
    "pvc": "persistentvolumeclaims",
    "deploy": "deployments",
    "rs": "replicasets",
    "sts": "statefulsets",
    "ds": "daemonsets",
    "cj": "cronjobs",
    "pdb": "poddisruptionbudgets",
    "hpa": "horizontalpodautoscalers",
    "crd": "customresourcedefinitions",
    "sc": "storageclasses",
    "ing": "ingresses",
    "netpol": "networkpolicies",
    "pc": "priorityclasses",
    "cs": "componentstatuses",
}


def resource(name: str) -> Resource:
    """A built-in resource by plural (``pods``), ``plural.group``, short name (``deploy``) or kind."""
    n = name.strip()
    low = _SHORT.get(n.lower(), n.lower())
    for r in BUILTIN:
        if r is EVENTS_V1:
            continue
        if low in (r.plural, r.group_resource, r.kind.lower()) or n == r.kind:
            return r
    raise KeyError(f"unknown resource {name!r}")


def for_object(obj: dict) -> Resource:
    """The built-in resource of an object, from its apiVersion and kind."""
    kind = obj.get("kind", "")
    api_version = obj.get("apiVersion", "")
    for r in BUILTIN:
        if r.kind == kind and r.api_version == api_version:
            return r
    for r in BUILTIN:
        if r.kind == kind:
            return r
    raise KeyError(f"unknown kind {api_version}/{kind}")
