"""Discovery documents (/api, /apis, /api/v1, /apis/<group>/<version>) and /version."""

from __future__ import annotations

import hashlib
import platform
from typing import Any

import hyperkube
from hyperkube.api.registry import GROUPS, RESOURCES, Resource

KUBE_MINOR = "32"

STATUS_VERBS = ["get", "patch", "update"]


def _hash(s: str) -> str:
    import base64

    return base64.b64encode(hashlib.sha256(s.encode()).digest()[:8]).decode()


def _resource_entries(r: Resource) -> list[dict[str, Any]]:
    main: dict[str, Any] = {
        "name": r.plural,
        "singularName": r.singular_name,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": list(r.verbs),
    }
    if r.short_names:
        main["shortNames"] = list(r.short_names)
    if r.categories:
        main["categories"] = list(r.categories)
    if r.stored:
        main["storageVersionHash"] = _hash(f"{r.group}/{r.version}/{r.kind}")
    out = [main]
    for sub in r.subresources:
        e: dict[str, Any] = {"name": f"{r.plural}/{sub}", "singularName": "", "namespaced": r.namespaced}
        if sub == "status":
            e.update(kind=r.kind, verbs=STATUS_VERBS)
        elif sub == "scale":
            e.update(group="autoscaling", version="v1", kind="Scale", verbs=STATUS_VERBS)
        elif sub == "binding":
            e.update(kind="Binding", verbs=["create"])
        elif sub == "log":
            e.update(kind="Pod", verbs=["get"])
        elif sub == "eviction":
            e.update(group="policy", version="v1", kind="Eviction", verbs=["create"])
        elif sub == "finalize":
            e.update(kind="Namespace", verbs=["update"])
        else:
            continue
        out.append(e)
    return out


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    if group not in GROUPS or version not in GROUPS[group]:
        return None
    gv = f"{group}/{version}" if group else version
    resources: list[dict[str, Any]] = []
    for r in RESOURCES:
        if r.group == group and r.version == version:
            resources += _resource_entries(r)
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def api_group(group: str) -> dict[str, Any] | None:
    if group not in GROUPS or not group:
        return None
    versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in GROUPS[group]]
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": versions,
        "preferredVersion": versions[0],
    }


def api_group_list() -> dict[str, Any]:
    groups = []
    for g in GROUPS:
        if g:
            d = api_group(g)
            assert d is not None
            d.pop("kind")
            d.pop("apiVersion")
            groups.append(d)
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def version_info() -> dict[str, Any]:
    m = platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)
    return {
        "major": "1",
        "minor": KUBE_MINOR,
        "gitVersion": f"v1.{KUBE_MINOR}.0-hyperkube.{hyperkube.__version__}",
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": f"python{platform.python_version()}",
        "compiler": "cpython",
        "platform": f"{platform.system().lower()}/{arch}",
    }
