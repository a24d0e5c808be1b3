"""OpenAPI documents for kubectl.

kubectl 1.27+ reads ``/openapi/v3`` (an index of group-versions) and ``/openapi/v3/<gv>``: for
``apply``/``create`` with the default ``--validate=strict`` it checks that each resource's PATCH
operation (found by its ``x-kubernetes-group-version-kind``) takes the ``fieldValidation`` query
parameter, and then leaves validation to the server; for ``explain`` it reads the schemas under
``components.schemas`` (found by the same extension). PATCH operations list no
strategic-merge-patch body, so ``kubectl apply`` computes its patch from the types compiled into
kubectl. Schemas come from ``openapi_schemas.json.gz`` when present (generated from the
upstream-derived models by ``python -m hyperkube.apiserver.openapi --generate``); without it the
paths alone are served and ``explain`` reports the resource as unknown.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from hyperkube.api.registry import GROUPS, RESOURCES, Resource

SCHEMAS_FILE = Path(__file__).with_name("openapi_schemas.json.gz")


@functools.cache
def _schemas() -> dict[str, Any]:
    try:
        with gzip.open(SCHEMAS_FILE, "rt") as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def _gv_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def _param(name: str, desc: str, typ: str = "string") -> dict[str, Any]:
    return {"name": name, "in": "query", "description": desc, "schema": {"type": typ, "uniqueItems": True}}


_QUERY = {
    "dryRun": "When present, indicates that modifications should not be persisted. Valid values are: - All",
    "fieldManager": "fieldManager is a name associated with the actor or entity that is making these changes.",
    "fieldValidation": "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values are: Ignore, Warn, Strict.",
}


def _ops(r: Resource, gvk: dict[str, str], schema_ref: dict[str, Any] | None) -> dict[str, Any]:
    base = (
        f"/{_gv_path(r.group, r.version)}/" + ("namespaces/{namespace}/" if r.namespaced else "") + r.plural
    )
    body = {"content": {"application/json": {"schema": schema_ref or {"type": "object"}}}, "required": True}
    resp = {
        "200": {
            "description": "OK",
            "content": {"application/json": {"schema": schema_ref or {"type": "object"}}},
        }
    }
    mparams = [_param(n, d) for n, d in _QUERY.items()]
    ext = {"x-kubernetes-group-version-kind": gvk}
    op_id = r.kind
    paths: dict[str, Any] = {}
    coll: dict[str, Any] = {
        "get": {"operationId": f"list{op_id}", "responses": resp, "x-kubernetes-action": "list", **ext}
    }
    if "create" in r.verbs:
        coll["post"] = {
            "operationId": f"create{op_id}",
            "parameters": mparams,
            "requestBody": body,
            "responses": resp,
            "x-kubernetes-action": "post",
            **ext,
        }
    paths[base] = coll
    item: dict[str, Any] = {
        "get": {"operationId": f"read{op_id}", "responses": resp, "x-kubernetes-action": "get", **ext}
    }
    if "update" in r.verbs:
        item["put"] = {
            "operationId": f"replace{op_id}",
            "parameters": mparams,
            "requestBody": body,
            "responses": resp,
            "x-kubernetes-action": "put",
            **ext,
        }
    if "patch" in r.verbs:
        # no requestBody: kubectl then builds strategic merge patches from its compiled-in types
        item["patch"] = {
            "operationId": f"patch{op_id}",
            "parameters": mparams + [_param("force", "Force is going to force Apply requests.", "boolean")],
            "responses": resp,
            "x-kubernetes-action": "patch",
            **ext,
        }
    if "delete" in r.verbs:
        item["delete"] = {
            "operationId": f"delete{op_id}",
            "responses": resp,
            "x-kubernetes-action": "delete",
            **ext,
        }
    item["parameters"] = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}] + (
        [{"name": "namespace", "in": "path", "required": True, "schema": {"type": "string"}}]
        if r.namespaced
        else []
    )
    paths[base + "/{name}"] = item
    return paths


def _schema_name(r: Resource) -> str | None:
    for name, s in _schemas().items():
        for g in s.get("x-kubernetes-group-version-kind") or []:
            if g.get("group") == r.group and g.get("version") == r.version and g.get("kind") == r.kind:
                return name
    return None


def _closure(names: list[str]) -> dict[str, Any]:
    all_ = _schemas()
    out: dict[str, Any] = {}
    todo = list(names)
    while todo:
        n = todo.pop()
        if n in out or n not in all_:
            continue
        out[n] = all_[n]
        for ref in _refs(all_[n]):
            todo.append(ref)
    return out


def _refs(node: Any) -> list[str]:
    out: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                out.append(v.rsplit("/", 1)[-1])
            else:
                out += _refs(v)
    elif isinstance(node, list):
        for v in node:
            out += _refs(v)
    return out


@functools.cache
def _group_doc(group: str, version: str) -> bytes:
    paths: dict[str, Any] = {}
    roots: list[str] = []
    for r in RESOURCES:
        if r.group != group or r.version != version or not r.stored and r.plural != "componentstatuses":
            continue
        name = _schema_name(r)
        ref = {"$ref": f"#/components/schemas/{name}"} if name else None
        if name:
            roots.append(name)
        paths.update(_ops(r, {"group": r.group, "version": r.version, "kind": r.kind}, ref))
    doc = {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": _closure(roots)},
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _hash(group: str, version: str) -> str:
    return hashlib.sha512(_group_doc(group, version)).hexdigest()[:128].upper()


def v3_root() -> dict[str, Any]:
    paths = {}
    for g, vs in GROUPS.items():
        for v in vs:
            p = _gv_path(g, v)
            paths[p] = {"serverRelativeURL": f"/openapi/v3/{p}?hash={_hash(g, v)}"}
    return {"paths": paths}


def v3_group(path: str) -> bytes | None:
    parts = path.strip("/").split("/")
    if len(parts) == 2 and parts[0] == "api":
        g, v = "", parts[1]
    elif len(parts) == 3 and parts[0] == "apis":
        g, v = parts[1], parts[2]
    else:
        return None
    if g not in GROUPS or v not in GROUPS[g]:
        return None
    return _group_doc(g, v)


def v2() -> dict[str, Any]:
    """A Swagger 2.0 document (JSON) with the definitions and the paths' GVK extensions."""
    defs = {k: _v3_to_v2(v) for k, v in _schemas().items()}
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": {},
        "definitions": defs,
    }


def _pb_field(num: int, payload: bytes) -> bytes:
    out = bytearray([num << 3 | 2])
    n = len(payload)
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            break
    return bytes(out) + payload


def v2_protobuf() -> bytes:
    """A minimal OpenAPI v2 document in gnostic's protobuf form (swagger + info, no definitions).

    kubectl 1.27 fetches /openapi/v2 as protobuf before ``apply``; with no definitions it skips
    client-side schema validation (the server validates) and builds patches from its own types."""
    info = _pb_field(1, b"Kubernetes") + _pb_field(2, b"v1.32.0")
    return _pb_field(1, b"2.0") + _pb_field(2, info)


def _v3_to_v2(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                out[k] = v.replace("#/components/schemas/", "#/definitions/")
            else:
                out[k] = _v3_to_v2(v)
        return out
    if isinstance(node, list):
        return [_v3_to_v2(v) for v in node]
    return node


if __name__ == "__main__" and "--generate" in sys.argv:  # pragma: no cover - developer tool
    from hyperkube.apiserver import _openapi_gen

    _openapi_gen.main(SCHEMAS_FILE)


# --- unknown fields (fieldValidation) -----------------------------------------------------------


def _resolve(node: Any) -> Any:
    seen = 0
    while isinstance(node, dict) and seen < 8:
        ref = node.get("$ref") or ((node.get("allOf") or [{}])[0].get("$ref") if node.get("allOf") else None)
        if not ref:
            return node
        node = _schemas().get(ref.rsplit("/", 1)[-1])
        seen += 1
    return node


@functools.cache
def kind_schema(group: str, version: str, kind: str) -> Any:
    for s in _schemas().values():
        for g in s.get("x-kubernetes-group-version-kind") or []:
            if g.get("group") == group and g.get("version") == version and g.get("kind") == kind:
                return s
    return None


def prune_unknown(schema: Any, obj: Any, path: str = "") -> list[str]:
    """Remove fields the schema does not know from `obj` (in place), as decoding into upstream's
    typed structs drops them; return their paths (``spec.containers[0].imagee``)."""
    out: list[str] = []
    schema = _resolve(schema)
    if not isinstance(schema, dict):
        return out
    if isinstance(obj, dict):
        props = schema.get("properties")
        if props is not None and schema.get("additionalProperties") is False:
            for k in list(obj):
                p = f"{path}.{k}" if path else k
                if k not in props:
                    if k not in ("apiVersion", "kind") or path:
                        out.append(p)
                        del obj[k]
                    continue
                out += prune_unknown(props[k], obj[k], p)
        elif isinstance(schema.get("additionalProperties"), dict):
            for k, v in obj.items():
                out += prune_unknown(schema["additionalProperties"], v, f"{path}[{k}]")
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(obj):
            out += prune_unknown(schema["items"], v, f"{path}[{i}]")
    return out
