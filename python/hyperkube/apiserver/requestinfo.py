"""Request attributes for authorization, as upstream's ``RequestInfoFactory``.

A URL and method become :class:`~hyperkube.apiserver.auth.rbac.Attributes`: for resource
requests (``/api/v1/...``, ``/apis/<group>/<version>/...`` naming a resource) the verb (get,
list, watch, create, update, patch, delete, deletecollection), API group and version, namespace,
resource, subresource and name; anything else (``/healthz``, ``/version``, discovery, OpenAPI)
is a non-resource request whose verb is the lower-cased method. This is independent of which
resources exist, so a forbidden request for an unknown resource answers 403 before 404 can leak
what exists, as upstream does.
"""

from __future__ import annotations

from collections.abc import Mapping

from hyperkube.apiserver.auth.rbac import Attributes, UserInfo

_METHOD_VERBS = {
    "POST": "create",
    "GET": "get",
    "HEAD": "get",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}
_NAMESPACE_SUBRESOURCES = {"status", "finalize"}
# subresources that hold a connection open (no in-flight slot, no request timeout)
LONG_RUNNING_SUBRESOURCES = {"exec", "attach", "portforward", "proxy", "log"}


def attributes(user: UserInfo, method: str, path: str, query: Mapping[str, str]) -> Attributes:
    parts = [p for p in path.split("/") if p]
    non_resource = Attributes(user, method.lower(), resource_request=False, path=path)
    if not parts or parts[0] not in ("api", "apis"):
        return non_resource
    if parts[0] == "api":
        if len(parts) < 3:
            return non_resource
        group, version, rest = "", parts[1], parts[2:]
    else:
        if len(parts) < 4:
            return non_resource
        group, version, rest = parts[1], parts[2], parts[3:]
    verb = _METHOD_VERBS.get(method.upper())
    if verb is None:
        return non_resource
    watch_path = False
    if rest[0] == "watch":
        watch_path, rest = True, rest[1:]
        if not rest:
            return non_resource
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if len(rest) > 3:
        # upstream: the remaining parts belong to the subresource path (proxy); keep them out
        subresource = rest[2]
    if watch_path and verb == "get":
        verb = "watch"
    elif verb == "get" and not name:
        verb = "watch" if query.get("watch") in ("true", "1") else "list"
    elif verb == "delete" and not name:
        verb = "deletecollection"
    if verb == "list" and query.get("watch") in ("true", "1"):
        verb = "watch"
    return Attributes(
        user,
        verb,
        resource_request=True,
        namespace=namespace,
        api_group=group,
        api_version=version,
        resource=resource,
        subresource=subresource,
        name=name,
        path=path,
    )


def is_long_running(a: Attributes, query: Mapping[str, str]) -> bool:
    if not a.resource_request:
        return False
    if a.verb == "watch":
        return True
    if a.subresource in LONG_RUNNING_SUBRESOURCES:
        return a.subresource != "log" or query.get("follow") in ("true", "1")
    return False


def is_mutating(a: Attributes) -> bool:
    if a.resource_request:
        return a.verb not in ("get", "list", "watch")
    return a.verb not in ("get", "head", "options")
