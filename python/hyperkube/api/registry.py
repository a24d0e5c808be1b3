"""The resource registry: every resource the API server serves, as upstream names it.

One :class:`Resource` per (group, version, plural) with its kind, scope, short names, categories,
subresources and verbs. Discovery documents, URL routing, storage keys and ``kubectl api-resources``
all come from this one table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
READ_VERBS = ("get", "list")


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    # computed resources (componentstatuses) are not stored
    stored: bool = True
    singular: str = field(default="")

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_version(self) -> str:
        return self.group_version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def singular_name(self) -> str:
        return self.singular or self.kind.lower()

    def key(self, namespace: str | None, name: str) -> str:
        if self.namespaced:
            return f"/registry/{self.storage_name}/{namespace}/{name}"
        return f"/registry/{self.storage_name}/{name}"

    def prefix(self, namespace: str | None = None) -> str:
        if self.namespaced and namespace:
            return f"/registry/{self.storage_name}/{namespace}/"
        return f"/registry/{self.storage_name}/"

    @property
    def storage_name(self) -> str:
        # upstream's etcd layout: /registry/<plural>/<namespace>/<name>
        return self.plural


_CORE = [
    Resource(
        "",
        "v1",
        "Namespace",
        "namespaces",
        False,
        ("ns",),
        subresources=("status", "finalize"),
        verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
    ),
    Resource("", "v1", "Pod", "pods", True, ("po",), ("all",), ("status", "binding", "log", "eviction")),
    Resource("", "v1", "Node", "nodes", False, ("no",), subresources=("status",)),
    Resource(
        "",
        "v1",
        "Service",
        "services",
        True,
        ("svc",),
        ("all",),
        ("status",),
        verbs=("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"),
    ),
    Resource("", "v1", "Endpoints", "endpoints", True, ("ep",), singular="endpoints"),
    Resource("", "v1", "ConfigMap", "configmaps", True, ("cm",)),
    Resource("", "v1", "Secret", "secrets", True),
    Resource("", "v1", "ServiceAccount", "serviceaccounts", True, ("sa",), subresources=("token",)),
    Resource("", "v1", "Event", "events", True, ("ev",)),
    Resource(
        "", "v1", "ComponentStatus", "componentstatuses", False, ("cs",), verbs=READ_VERBS, stored=False
    ),
    Resource("", "v1", "Binding", "bindings", True, verbs=("create",), stored=False),
]

_GROUPS = [
    Resource("apps", "v1", "Deployment", "deployments", True, ("deploy",), ("all",), ("status", "scale")),
    Resource("apps", "v1", "ReplicaSet", "replicasets", True, ("rs",), ("all",), ("status", "scale")),
    Resource("coordination.k8s.io", "v1", "Lease", "leases", True),
    Resource("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", True),
    Resource("rbac.authorization.k8s.io", "v1", "Role", "roles", True),
    Resource("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True),
    Resource("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
    Resource("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False),
    Resource("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", False, ("pc",)),
]

# security (issue 9): quotas and limits, CSRs, and the review endpoints (served, not stored)
_SECURITY = [
    Resource("", "v1", "LimitRange", "limitranges", True, ("limits",)),
    Resource("", "v1", "ResourceQuota", "resourcequotas", True, ("quota",), subresources=("status",)),
    Resource(
        "certificates.k8s.io",
        "v1",
        "CertificateSigningRequest",
        "certificatesigningrequests",
        False,
        ("csr",),
        subresources=("status", "approval"),
    ),
    *(
        Resource(g, "v1", kind, plural, ns, verbs=("create",), stored=False)
        for g, kind, plural, ns in (
            ("authentication.k8s.io", "SelfSubjectReview", "selfsubjectreviews", False),
            ("authentication.k8s.io", "TokenReview", "tokenreviews", False),
            ("authorization.k8s.io", "LocalSubjectAccessReview", "localsubjectaccessreviews", True),
            ("authorization.k8s.io", "SelfSubjectAccessReview", "selfsubjectaccessreviews", False),
            ("authorization.k8s.io", "SelfSubjectRulesReview", "selfsubjectrulesreviews", False),
            ("authorization.k8s.io", "SubjectAccessReview", "subjectaccessreviews", False),
        )
    ),
]

RESOURCES: list[Resource] = _CORE + _GROUPS + _SECURITY

# (group, version, plural) -> Resource
BY_PATH: dict[tuple[str, str, str], Resource] = {(r.group, r.version, r.plural): r for r in RESOURCES}
# (group, kind) -> Resource
BY_KIND: dict[tuple[str, str], Resource] = {(r.group, r.kind): r for r in RESOURCES}

# group -> versions (preferred first), in discovery order
GROUPS: dict[str, list[str]] = {}
for _r in RESOURCES:
    GROUPS.setdefault(_r.group, [])
    if _r.version not in GROUPS[_r.group]:
        GROUPS[_r.group].append(_r.version)


def lookup(group: str, version: str, plural: str) -> Resource | None:
    return BY_PATH.get((group, version, plural))


def by_kind(group: str, kind: str) -> Resource | None:
    return BY_KIND.get((group, kind))


def resource(plural: str, group: str = "") -> Resource:
    for r in RESOURCES:
        if r.plural == plural and r.group == group:
            return r
    raise KeyError(plural)
