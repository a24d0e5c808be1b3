"""Upstream's default ClusterRoles and ClusterRoleBindings (plugin/pkg/auth/authorizer/rbac/bootstrappolicy).

Created by the API server at start when missing (never overwriting a user's edits of a role
whose ``rbac.authorization.kubernetes.io/autoupdate`` annotation is "false"). The user-facing
roles admin/edit/view are aggregated from ``system:aggregate-to-*`` roles through their
labels, exactly as upstream, so users can extend them with labelled ClusterRoles of their own.

Differences from upstream, on purpose: the controller manager runs with one identity
(``system:kube-controller-manager``) instead of one ServiceAccount per controller, so its role
grants what all our controllers together need.
"""

from __future__ import annotations

READ = ["get", "list", "watch"]
WRITE = ["create", "delete", "deletecollection", "patch", "update"]
ALL = READ + WRITE


def rule(verbs: list[str], groups: list[str], resources: list[str], names: list[str] | None = None) -> dict:
    r: dict = {"verbs": verbs, "apiGroups": groups, "resources": resources}
    if names:
        r["resourceNames"] = names
    return r


def url_rule(verbs: list[str], urls: list[str]) -> dict:
    return {"verbs": verbs, "nonResourceURLs": urls}


def _meta(name: str, labels: dict[str, str] | None = None) -> dict:
    return {
        "name": name,
        "labels": {"kubernetes.io/bootstrapping": "rbac-defaults", **(labels or {})},
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
    }


def cluster_role(
    name: str, rules: list[dict], labels: dict[str, str] | None = None, aggregate: str = ""
) -> dict:
    obj: dict = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": _meta(name, labels),
        "rules": rules,
    }
    if aggregate:
        obj["aggregationRule"] = {
            "clusterRoleSelectors": [
                {"matchLabels": {f"rbac.authorization.k8s.io/aggregate-to-{aggregate}": "true"}}
            ]
        }
        obj["rules"] = []
    return obj


def cluster_role_binding(name: str, role: str, subjects: list[dict]) -> dict:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": _meta(name),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    }


def group(name: str) -> dict:
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": name}


def user(name: str) -> dict:
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name}


_VIEW_CORE = [
    "configmaps",
    "endpoints",
    "persistentvolumeclaims",
    "persistentvolumeclaims/status",
    "pods",
    "replicationcontrollers",
    "replicationcontrollers/scale",
    "serviceaccounts",
    "services",
    "services/status",
    "bindings",
    "events",
    "limitranges",
    "namespaces/status",
    "pods/log",
    "pods/status",
    "replicationcontrollers/status",
    "resourcequotas",
    "resourcequotas/status",
    "namespaces",
]
_APPS = [
    "controllerrevisions",
    "daemonsets",
    "daemonsets/status",
    "deployments",
    "deployments/scale",
    "deployments/status",
    "replicasets",
    "replicasets/scale",
    "replicasets/status",
    "statefulsets",
    "statefulsets/scale",
    "statefulsets/status",
]


def cluster_roles() -> list[dict]:
    agg = "rbac.authorization.k8s.io/aggregate-to-"
    return [
        cluster_role("cluster-admin", [rule(["*"], ["*"], ["*"]), url_rule(["*"], ["*"])]),
        cluster_role("admin", [], aggregate="admin"),
        cluster_role("edit", [], {f"{agg}admin": "true"}, aggregate="edit"),
        cluster_role("view", [], {f"{agg}edit": "true"}, aggregate="view"),
        cluster_role(
            "system:aggregate-to-view",
            [
                rule(READ, [""], _VIEW_CORE),
                rule(READ, ["apps"], _APPS),
                rule(READ, ["batch"], ["cronjobs", "cronjobs/status", "jobs", "jobs/status"]),
                rule(READ, ["discovery.k8s.io"], ["endpointslices"]),
                rule(READ, ["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"]),
                rule(READ, ["networking.k8s.io"], ["ingresses", "ingresses/status", "networkpolicies"]),
            ],
            {f"{agg}view": "true"},
        ),
        cluster_role(
            "system:aggregate-to-edit",
            [
                rule(
                    ["create", "delete", "deletecollection", "patch", "update"],
                    [""],
                    ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"],
                ),
                rule(["create"], [""], ["pods/eviction"]),
                rule(
                    ALL,
                    [""],
                    [
                        "configmaps",
                        "events",
                        "persistentvolumeclaims",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "secrets",
                        "serviceaccounts",
                        "services",
                        "services/proxy",
                        "endpoints",
                    ],
                ),
                rule(["create"], [""], ["serviceaccounts/token"]),
                rule(["impersonate"], [""], ["serviceaccounts"]),
                rule(ALL, ["apps"], [r for r in _APPS if not r.endswith("/status")]),
                rule(ALL, ["batch"], ["cronjobs", "jobs"]),
                rule(ALL, ["discovery.k8s.io"], ["endpointslices"]),
                rule(ALL, ["policy"], ["poddisruptionbudgets"]),
                rule(ALL, ["networking.k8s.io"], ["ingresses", "networkpolicies"]),
            ],
            {f"{agg}edit": "true"},
        ),
        cluster_role(
            "system:aggregate-to-admin",
            [
                rule(["create"], ["authorization.k8s.io"], ["localsubjectaccessreviews"]),
                rule(ALL, ["rbac.authorization.k8s.io"], ["rolebindings", "roles"]),
            ],
            {f"{agg}admin": "true"},
        ),
        cluster_role(
            "system:basic-user",
            [
                rule(
                    ["create"],
                    ["authorization.k8s.io"],
                    ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
                rule(["create"], ["authentication.k8s.io"], ["selfsubjectreviews"]),
            ],
        ),
        cluster_role(
            "system:discovery",
            [
                url_rule(
                    ["get"],
                    [
                        "/api",
                        "/api/*",
                        "/apis",
                        "/apis/*",
                        "/healthz",
                        "/livez",
                        "/openapi",
                        "/openapi/*",
                        "/readyz",
                        "/version",
                        "/version/",
                    ],
                )
            ],
        ),
        cluster_role(
            "system:public-info-viewer",
            [url_rule(["get"], ["/healthz", "/livez", "/readyz", "/version", "/version/"])],
        ),
        cluster_role(
            "system:kube-scheduler",
            [
                rule(["create", "patch", "update"], ["", "events.k8s.io"], ["events"]),
                rule(["create"], ["coordination.k8s.io"], ["leases"]),
                rule(["get", "update"], ["coordination.k8s.io"], ["leases"], ["kube-scheduler"]),
                rule(["delete", "get", "list", "watch"], [""], ["pods"]),
                rule(["create"], [""], ["bindings", "pods/binding"]),
                rule(["patch", "update"], [""], ["pods/status"]),
                rule(
                    READ,
                    [""],
                    [
                        "nodes",
                        "namespaces",
                        "services",
                        "replicationcontrollers",
                        "persistentvolumeclaims",
                        "persistentvolumes",
                    ],
                ),
                rule(READ, ["apps"], ["replicasets", "statefulsets"]),
                rule(READ, ["policy"], ["poddisruptionbudgets"]),
                rule(READ, ["scheduling.k8s.io"], ["priorityclasses"]),
                rule(
                    READ,
                    ["storage.k8s.io"],
                    ["csinodes", "storageclasses", "csidrivers", "csistoragecapacities"],
                ),
            ],
        ),
        cluster_role(
            "system:kube-controller-manager",
            [
                rule(ALL, ["", "apps", "discovery.k8s.io", "coordination.k8s.io", "events.k8s.io"], ["*"]),
                rule(ALL, ["rbac.authorization.k8s.io", "scheduling.k8s.io", "batch", "policy"], ["*"]),
                rule(["create"], ["authentication.k8s.io"], ["tokenreviews"]),
                rule(["create"], ["authorization.k8s.io"], ["subjectaccessreviews"]),
                # the garbage collector and namespace controller walk every resource (upstream's
                # system:controller:generic-garbage-collector role)
                rule(["get", "list", "watch", "patch", "update", "delete", "deletecollection"], ["*"], ["*"]),
            ],
        ),
        cluster_role(
            "system:node",
            [
                rule(["create", "get", "list", "watch", "patch", "update"], [""], ["nodes"]),
                rule(["patch", "update"], [""], ["nodes/status"]),
                rule(["create", "patch", "update"], ["", "events.k8s.io"], ["events"]),
                rule(READ, [""], ["pods"]),
                rule(["create", "delete"], [""], ["pods"]),
                rule(["patch", "update"], [""], ["pods/status"]),
                rule(["create"], [""], ["pods/eviction"]),
                rule(["get"], [""], ["configmaps", "secrets", "persistentvolumeclaims", "persistentvolumes"]),
                rule(READ, [""], ["services", "endpoints"]),
                # hyperkube's agent runs kube-proxy in the kubelet's process, with its identity
                rule(["list", "watch"], ["discovery.k8s.io"], ["endpointslices"]),
                rule(["create"], [""], ["serviceaccounts/token"]),
                rule(["create", "delete", "get", "patch", "update"], ["coordination.k8s.io"], ["leases"]),
                rule(
                    ["create", "get", "list", "watch"],
                    ["certificates.k8s.io"],
                    ["certificatesigningrequests"],
                ),
            ],
        ),
        cluster_role(
            "system:node-bootstrapper",
            [
                rule(
                    ["create", "get", "list", "watch"],
                    ["certificates.k8s.io"],
                    ["certificatesigningrequests"],
                )
            ],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            [rule(["create"], ["certificates.k8s.io"], ["certificatesigningrequests/nodeclient"])],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            [rule(["create"], ["certificates.k8s.io"], ["certificatesigningrequests/selfnodeclient"])],
        ),
        cluster_role(
            "system:node-proxier",
            [
                rule(["list", "watch"], [""], ["services", "endpoints"]),
                rule(READ, [""], ["nodes"]),
                rule(["create", "patch", "update"], ["", "events.k8s.io"], ["events"]),
                rule(["list", "watch"], ["discovery.k8s.io"], ["endpointslices"]),
            ],
        ),
    ]


def cluster_role_bindings() -> list[dict]:
    return [
        cluster_role_binding("cluster-admin", "cluster-admin", [group("system:masters")]),
        cluster_role_binding("system:basic-user", "system:basic-user", [group("system:authenticated")]),
        cluster_role_binding("system:discovery", "system:discovery", [group("system:authenticated")]),
        cluster_role_binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            [group("system:authenticated"), group("system:unauthenticated")],
        ),
        cluster_role_binding(
            "system:kube-scheduler", "system:kube-scheduler", [user("system:kube-scheduler")]
        ),
        cluster_role_binding(
            "system:kube-controller-manager",
            "system:kube-controller-manager",
            [user("system:kube-controller-manager")],
        ),
        cluster_role_binding("system:node", "system:node", [group("system:nodes")]),
        cluster_role_binding("system:node-proxier", "system:node-proxier", [user("system:kube-proxy")]),
        # kubeadm's bindings for joining nodes: bootstrap tokens may file kubelet client CSRs
        cluster_role_binding(
            "kubeadm:kubelet-bootstrap", "system:node-bootstrapper", [group("system:bootstrappers")]
        ),
        cluster_role_binding(
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            [group("system:bootstrappers")],
        ),
        cluster_role_binding(
            "kubeadm:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            [group("system:nodes")],
        ),
    ]
