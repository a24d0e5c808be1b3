"""Decoding request bodies from clients that may be hostile.

Bodies are already capped at 3 MiB (413 beyond). Within that, a body can still be built to hurt:
JSON or YAML nested thousands of levels deep (recursion in every later walk of the object) or
YAML whose aliases expand exponentially ("billion laughs": a few hundred bytes that construct to
billions of nodes) or refer to themselves. So:

- JSON is parsed by the C parser (which raises RecursionError, not a crash, on absurd depth),
  then the object's depth is checked iteratively (at most :data:`MAX_DEPTH` levels).
- YAML flow collections are checked for depth before parsing (:func:`flow_depth_ok`; PyYAML's
  scanner is quadratic in flow depth); then the YAML is *composed* to its node graph (linear in the input), whose expanded size with
  every alias followed is computed iteratively with memoisation and rejected above
  :data:`MAX_YAML_NODES` or on a cycle, before anything is constructed.

Every rejection is a 400 ``BadRequest`` Status saying what limit was hit.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import yaml

from hyperkube.api import errors

MAX_DEPTH = 128
MAX_YAML_NODES = 1_000_000


def check_depth(obj: Any, limit: int = MAX_DEPTH) -> None:
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, dict):
            if d > limit:
                raise errors.bad_request(f"the object is nested more than {limit} levels deep")
            stack.extend((v, d + 1) for v in o.values() if isinstance(v, dict | list))
        elif isinstance(o, list):
            if d > limit:
                raise errors.bad_request(f"the object is nested more than {limit} levels deep")
            stack.extend((v, d + 1) for v in o if isinstance(v, dict | list))


def loads_json(raw: bytes | str) -> Any:
    try:
        obj = json.loads(raw)
    except RecursionError:
        raise errors.bad_request(f"the JSON body is nested too deeply (limit {MAX_DEPTH} levels)") from None
    check_depth(obj)
    return obj


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [x for kv in node.value for x in kv]
    return []


def _check_graph(root: yaml.Node) -> None:
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        nid = id(node)
        if expanded:
            kids = _children(node)
            size[nid] = 1 + sum(size[id(c)] for c in kids)
            depth[nid] = 1 + max((depth[id(c)] for c in kids), default=0)
            active.discard(nid)
            if size[nid] > MAX_YAML_NODES:
                raise errors.bad_request(
                    f"the YAML body expands to more than {MAX_YAML_NODES} nodes (aliases); refusing it"
                )
            if depth[nid] > MAX_DEPTH:
                raise errors.bad_request(f"the YAML body is nested more than {MAX_DEPTH} levels deep")
            continue
        if nid in size:
            continue
        active.add(nid)
        stack.append((node, True))
        for c in _children(node):
            cid = id(c)
            if cid in active:
                raise errors.bad_request("the YAML body refers to itself through an alias")
            if cid not in size:
                stack.append((c, False))


_FLOW_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|\'(?:[^\']|\'\')*\'|#[^\n]*|[\[\]{}]')


def flow_depth_ok(raw: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether YAML flow collections ([...], {...}) nest at most `limit` deep. PyYAML's scanner is
    quadratic in flow depth (5000 levels take seconds), so this is checked before parsing: a
    vectorised bracket count first, and only when that exceeds the limit (brackets inside quoted
    strings count there) an exact scan that skips strings and comments and stops at the limit."""
    b = np.frombuffer(raw, dtype=np.uint8)
    delta = ((b == 91) | (b == 123)).astype(np.int32) - ((b == 93) | (b == 125)).astype(np.int32)
    if b.size == 0 or int(np.cumsum(delta).max()) <= limit:
        return True
    depth = 0
    for m in _FLOW_TOKENS.finditer(raw):
        t = m.group()
        if t in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return False
        elif t in (b"]", b"}"):
            depth -= 1
    return True


def loads_yaml(raw: bytes | str) -> Any:
    if not flow_depth_ok(raw.encode() if isinstance(raw, str) else raw):
        raise errors.bad_request(f"the YAML body is nested more than {MAX_DEPTH} levels deep")
    try:
        loader = yaml.SafeLoader(raw)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_graph(node)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except RecursionError:
        raise errors.bad_request(f"the YAML body is nested too deeply (limit {MAX_DEPTH} levels)") from None


def load_json_body(raw: bytes, content_type: str) -> Any:
    """A JSON (or YAML) body of an endpoint that is not a stored resource."""
    ct = content_type.split(";")[0].strip().lower()
    if not raw.strip():
        raise errors.bad_request("the request body is empty; send a JSON object")
    try:
        if ct in ("application/yaml", "application/x-yaml"):
            return loads_yaml(raw)
        return loads_json(raw)
    except (ValueError, yaml.YAMLError) as e:
        raise errors.bad_request(f"couldn't get version/kind; json parse error: {e}") from None
