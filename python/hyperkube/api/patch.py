"""PATCH bodies: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and strategic merge patch.

Strategic merge patch follows upstream's ``strategicpatch`` package for the built-in types:
lists with a *merge key* (``containers`` by ``name``, container ``ports`` by ``containerPort``,
Service ``ports`` by ``port``, ``env`` by ``name``, ``volumes`` by ``name``, ``volumeMounts`` by
``mountPath``, ``conditions`` by ``type`` ...) merge item by item; other lists are replaced; the
directives kubectl sends (``$patch``, ``$retainKeys``, ``$setElementOrder/<f>``,
``$deleteFromPrimitiveList/<f>``) are honoured. Errors raise :class:`PatchError` (the API server
answers 400/422).
"""

from __future__ import annotations

import copy
import json
from typing import Any

Obj = dict[str, Any]


class PatchError(ValueError):
    pass


# --- JSON patch ---------------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f'invalid JSON pointer "{path}": must start with "/"')
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str], path: str) -> tuple[Any, str]:
    cur = doc
    for p in parts[:-1]:
        if isinstance(cur, dict):
            if p not in cur:
                raise PatchError(f'doc is missing path: "{path}": missing value')
            cur = cur[p]
        elif isinstance(cur, list):
            try:
                cur = cur[int(p)]
            except (ValueError, IndexError):
                raise PatchError(f'doc is missing path: "{path}": missing value') from None
        else:
            raise PatchError(f'doc is missing path: "{path}": missing value')
    return cur, parts[-1]


def _get(doc: Any, path: str) -> Any:
    cur = doc
    for p in _pointer(path):
        try:
            cur = cur[p] if isinstance(cur, dict) else cur[int(p)]
        except (KeyError, ValueError, IndexError, TypeError):
            raise PatchError(f'doc is missing path: "{path}": missing value') from None
    return cur


def _add(doc: Any, path: str, value: Any) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    parent, last = _parent(doc, parts, path)
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            try:
                i = int(last)
            except ValueError:
                raise PatchError(f'invalid array index "{last}" in "{path}"') from None
            if not 0 <= i <= len(parent):
                raise PatchError(f'unable to add at "{path}": index out of range')
            parent.insert(i, value)
    else:
        raise PatchError(f'doc is missing path: "{path}": missing value')
    return doc


def _remove(doc: Any, path: str) -> tuple[Any, Any]:
    parts = _pointer(path)
    if not parts:
        raise PatchError("cannot remove the whole document")
    parent, last = _parent(doc, parts, path)
    try:
        if isinstance(parent, dict):
            return doc, parent.pop(last)
        if isinstance(parent, list):
            return doc, parent.pop(int(last))
    except (KeyError, ValueError, IndexError):
        pass
    raise PatchError(f'unable to remove nonexistent key "{last}": missing value')


def json_patch(doc: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise PatchError("json patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op:
            raise PatchError("each json patch operation must be an object with an 'op'")
        kind, path = op["op"], op.get("path", "")
        if not isinstance(path, str):
            raise PatchError("json patch path must be a string")
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            doc, _ = _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)
            if _pointer(path):
                doc, _ = _remove(doc, path)
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "move":
            doc, v = _remove(doc, op.get("from", ""))
            doc = _add(doc, path, v)
        elif kind == "copy":
            doc = _add(doc, path, copy.deepcopy(_get(doc, op.get("from", ""))))
        elif kind == "test":
            if _get(doc, path) != op.get("value"):
                raise PatchError(f"testing value {path} failed: test failed")
        else:
            raise PatchError(f'unexpected kind of json patch operation: "{kind}"')
    return doc


# --- JSON merge patch ----------------------------------------------------------------------


def merge_patch(doc: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(doc) if isinstance(doc, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


# --- strategic merge patch -----------------------------------------------------------------

_CONTAINER_LISTS = {"containers", "initContainers", "ephemeralContainers"}

# field name -> merge key, for lists with patchStrategy "merge"
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "conditions": "type",
    "addresses": "type",
    "ownerReferences": "uid",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
    "schedulingGates": "name",
    "ingress": "ip",  # LoadBalancer status ingress (no strategy upstream; harmless by ip)
}
# lists of scalars merged as sets
PRIMITIVE_MERGE = {"finalizers"}


def _merge_key(path: tuple[str, ...], field: str, kind: str) -> str | None:
    if field == "ports":
        if path and path[-1] in _CONTAINER_LISTS:
            return "containerPort"
        if kind == "Service" and path == ("spec",):
            return "port"
        return None
    if field == "ingress":
        return None
    return MERGE_KEYS.get(field)


def strategic_merge_patch(doc: Any, patch: Any, kind: str = "") -> Any:
    if not isinstance(patch, dict):
        raise PatchError("strategic merge patch must be a JSON object")
    return _smp_map(copy.deepcopy(doc) if isinstance(doc, dict) else {}, patch, (), kind)


def _smp_map(doc: Obj, patch: Obj, path: tuple[str, ...], kind: str) -> Obj:
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return {}
    if directive not in (None, "merge"):
        raise PatchError(f"Unknown patch type: {directive}")
    retain = patch.get("$retainKeys")
    orders: dict[str, list[Any]] = {}
    for k, v in patch.items():
        if k in ("$patch", "$retainKeys"):
            continue
        if k.startswith("$setElementOrder/"):
            orders[k.split("/", 1)[1]] = v if isinstance(v, list) else []
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            field = k.split("/", 1)[1]
            cur = doc.get(field)
            if isinstance(cur, list) and isinstance(v, list):
                doc[field] = [x for x in cur if x not in v]
            continue
        if v is None:
            doc.pop(k, None)
            continue
        cur = doc.get(k)
        if isinstance(v, dict):
            doc[k] = _smp_map(cur if isinstance(cur, dict) else {}, v, path + (k,), kind)
        elif isinstance(v, list):
            doc[k] = _smp_list(cur if isinstance(cur, list) else [], v, path, k, kind)
        else:
            doc[k] = copy.deepcopy(v)
    for field, order in orders.items():
        cur = doc.get(field)
        if isinstance(cur, list):
            doc[field] = _reorder(cur, order, _merge_key(path, field, kind))
    if isinstance(retain, list):
        doc = {k: v for k, v in doc.items() if k in retain}
    return doc


def _reorder(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    def ident(x: Any) -> Any:
        if key is not None and isinstance(x, dict):
            return json.dumps(x.get(key), sort_keys=True)
        return json.dumps(x, sort_keys=True)

    rank = {ident(o): i for i, o in enumerate(order)}
    big = len(rank)
    indexed = list(enumerate(items))
    indexed.sort(key=lambda p: (rank.get(ident(p[1]), big), p[0]))
    return [x for _, x in indexed]


def _smp_list(cur: list[Any], patch: list[Any], path: tuple[str, ...], field: str, kind: str) -> list[Any]:
    key = _merge_key(path, field, kind)
    if field in PRIMITIVE_MERGE:
        out = list(cur)
        for x in patch:
            if x not in out:
                out.append(copy.deepcopy(x))
        return out
    if key is None:
        return [x for x in copy.deepcopy(patch) if not (isinstance(x, dict) and x.get("$patch") == "delete")]
    if any(isinstance(x, dict) and x.get("$patch") == "replace" for x in patch):
        return [copy.deepcopy(x) for x in patch if not (isinstance(x, dict) and "$patch" in x)]
    out = [copy.deepcopy(x) for x in cur]
    for item in patch:
        if not isinstance(item, dict):
            raise PatchError(f"the list {field} must contain objects with a merge key {key!r}")
        if key not in item:
            raise PatchError(f"map: {item} does not contain declared merge key: {key}")
        idx = next((i for i, x in enumerate(out) if isinstance(x, dict) and x.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(_smp_map({}, item, path + (field,), kind))
        else:
            out[idx] = _smp_map(out[idx], item, path + (field,), kind)
    return out


PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+cbor": "apply",
}


def apply_patch(doc: Obj, patch_type: str, body: Any, kind: str = "") -> Obj:
    if patch_type == "json":
        out = json_patch(doc, body)
    elif patch_type == "merge":
        if not isinstance(body, dict):
            raise PatchError("merge patch must be a JSON object")
        out = merge_patch(doc, body)
    elif patch_type == "strategic":
        out = strategic_merge_patch(doc, body, kind)
    else:
        raise PatchError(f"unsupported patch type {patch_type}")
    if not isinstance(out, dict):
        raise PatchError("the patched document is not a JSON object")
    return out
