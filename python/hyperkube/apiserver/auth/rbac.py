"""RBAC authorization, as upstream's plugin/pkg/auth/authorizer/rbac.

A request is described by :class:`Attributes` (who, verb, and either a resource in an API group
and namespace, or a non-resource path). :class:`RBACAuthorizer` answers allow/deny from the
Roles, ClusterRoles, RoleBindings and ClusterRoleBindings it is given (the API server keeps it
current from its watch caches), with ClusterRole aggregation (``aggregationRule``) resolved
when the role set changes. Denials carry upstream's message, e.g.
``User "jane" cannot create resource "pods" in API group "" in the namespace "default"``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from hyperkube import _native

MASTERS_GROUP = "system:masters"


@dataclass(frozen=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict, hash=False, compare=False)


ANONYMOUS = UserInfo("system:anonymous", ("system:unauthenticated",))


@dataclass(frozen=True)
class Attributes:
    user: UserInfo
    verb: str
    resource_request: bool = True
    namespace: str = ""
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    path: str = ""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


def forbidden_message(a: Attributes) -> str:
    """Upstream's forbiddenMessage (staging/src/k8s.io/apiserver/pkg/endpoints/handlers/responsewriters)."""
    if not a.resource_request:
        return f'User "{a.user.name}" cannot {a.verb} path "{a.path}"'
    resource = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    if a.namespace:
        return (
            f'User "{a.user.name}" cannot {a.verb} resource "{resource}" in API group "{a.api_group}" '
            f'in the namespace "{a.namespace}"'
        )
    return (
        f'User "{a.user.name}" cannot {a.verb} resource "{resource}" in API group "{a.api_group}" '
        "at the cluster scope"
    )


def _verb_matches(rule: dict, verb: str) -> bool:
    verbs = rule.get("verbs") or []
    return "*" in verbs or verb in verbs


def _group_matches(rule: dict, group: str) -> bool:
    groups = rule.get("apiGroups") or []
    return "*" in groups or group in groups


def _resource_matches(rule: dict, resource: str, subresource: str) -> bool:
    combined = f"{resource}/{subresource}" if subresource else resource
    for r in rule.get("resources") or []:
        if r == "*" or r == combined:
            return True
        if subresource and r == f"*/{subresource}":
            return True
    return False


def _name_matches(rule: dict, name: str) -> bool:
    names = rule.get("resourceNames") or []
    return not names or name in names


def _url_matches(rule: dict, path: str) -> bool:
    for u in rule.get("nonResourceURLs") or []:
        if u == "*" or u == path or (u.endswith("*") and path.startswith(u[:-1])):
            return True
    return False


def rule_allows(rule: dict, a: Attributes) -> bool:
    if not _verb_matches(rule, a.verb):
        return False
    if a.resource_request:
        return (
            _group_matches(rule, a.api_group)
            and _resource_matches(rule, a.resource, a.subresource)
            and _name_matches(rule, a.name)
        )
    return _url_matches(rule, a.path)


def subject_matches(subject: dict, user: UserInfo, binding_namespace: str) -> bool:
    kind = subject.get("kind")
    name = subject.get("name", "")
    if kind == "User":
        return user.name == name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_namespace
        return user.name == f"system:serviceaccount:{ns}:{name}"
    return False


def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


class RBACAuthorizer:
    """Evaluates RBAC objects. Call :meth:`set_objects` whenever they change."""

    def __init__(self) -> None:
        self.cluster_roles: dict[str, list[dict]] = {}
        self.roles: dict[tuple[str, str], list[dict]] = {}
        self.cluster_bindings: list[dict] = []
        self.bindings_by_ns: dict[str, list[dict]] = {}

    def set_objects(
        self,
        cluster_roles: Iterable[dict],
        roles: Iterable[dict],
        cluster_role_bindings: Iterable[dict],
        role_bindings: Iterable[dict],
    ) -> None:
        self.cluster_roles = aggregate_cluster_roles(list(cluster_roles))
        self.roles = {
            (_meta(r).get("namespace", ""), _meta(r).get("name", "")): r.get("rules") or [] for r in roles
        }
        self.cluster_bindings = list(cluster_role_bindings)
        by_ns: dict[str, list[dict]] = {}
        for b in role_bindings:
            by_ns.setdefault(_meta(b).get("namespace", ""), []).append(b)
        self.bindings_by_ns = by_ns

    def _rules_of(self, ref: dict, namespace: str) -> list[dict]:
        if ref.get("kind") == "ClusterRole":
            return self.cluster_roles.get(ref.get("name", ""), [])
        if ref.get("kind") == "Role":
            return self.roles.get((namespace, ref.get("name", "")), [])
        return []

    def rules_for(self, user: UserInfo, namespace: str) -> list[dict]:
        """Every rule that applies to `user` in `namespace` (cluster-wide ones included)."""
        rules: list[dict] = []
        for b in self.cluster_bindings:
            if any(subject_matches(s, user, "") for s in b.get("subjects") or []):
                rules.extend(self._rules_of(b.get("roleRef") or {}, ""))
        if namespace:
            for b in self.bindings_by_ns.get(namespace, []):
                if any(subject_matches(s, user, namespace) for s in b.get("subjects") or []):
                    rules.extend(self._rules_of(b.get("roleRef") or {}, namespace))
        return rules

    def authorize(self, a: Attributes) -> Decision:
        if MASTERS_GROUP in a.user.groups:
            return Decision(True, "system:masters")
        for b in self.cluster_bindings:
            if not any(subject_matches(s, a.user, "") for s in b.get("subjects") or []):
                continue
            ref = b.get("roleRef") or {}
            if any(rule_allows(r, a) for r in self._rules_of(ref, "")):
                return Decision(True, f'RBAC: allowed by ClusterRoleBinding "{_meta(b).get("name")}"')
        if a.resource_request and a.namespace:
            for b in self.bindings_by_ns.get(a.namespace, []):
                if not any(subject_matches(s, a.user, a.namespace) for s in b.get("subjects") or []):
                    continue
                ref = b.get("roleRef") or {}
                if any(rule_allows(r, a) for r in self._rules_of(ref, a.namespace)):
                    return Decision(True, f'RBAC: allowed by RoleBinding "{_meta(b).get("name")}"')
        return Decision(False, forbidden_message(a))


def aggregate_cluster_roles(roles: list[dict]) -> dict[str, list[dict]]:
    """name -> rules, with aggregationRule roles filled from the roles their selectors match
    (transitively: an aggregated role can itself be aggregated into another)."""
    by_name = {_meta(r).get("name", ""): r for r in roles}
    resolved: dict[str, list[dict]] = {}

    def resolve(name: str, seen: frozenset[str]) -> list[dict]:
        if name in resolved:
            return resolved[name]
        role = by_name.get(name)
        if role is None:
            return []
        rules = list(role.get("rules") or [])
        agg = role.get("aggregationRule")
        if agg and name not in seen:
            selectors = [
                _native.Selector.from_label_selector(s) for s in agg.get("clusterRoleSelectors") or []
            ]
            for other_name, other in sorted(by_name.items()):
                if other_name == name:
                    continue
                labels = _meta(other).get("labels") or {}
                if any(sel.matches(labels) for sel in selectors):
                    for rule in resolve(other_name, seen | {name}):
                        if rule not in rules:
                            rules.append(rule)
        resolved[name] = rules
        return rules

    for n in by_name:
        resolve(n, frozenset())
    return resolved
