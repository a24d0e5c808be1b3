"""Encoding of objects: msgpack in the store, JSON on the wire.

The stored value is the object without ``metadata.resourceVersion`` (the store's revision is the
resourceVersion, set on the way out), so a value never has to be rewritten to learn its version.
"""

from __future__ import annotations

import json
from typing import Any

import msgpack

# the same format as hyperkube.storage.codec (api/ sits below storage/ and does not import it)


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def encode(obj: dict[str, Any]) -> bytes:
    md = obj.get("metadata")
    if isinstance(md, dict) and "resourceVersion" in md:
        md = dict(md)
        md.pop("resourceVersion", None)
        obj = dict(obj)
        obj["metadata"] = md
    return _pack(obj)


def decode(value: bytes, revision: int) -> dict[str, Any]:
    obj = _unpack(value)
    md = obj.get("metadata")
    if isinstance(md, dict):
        md["resourceVersion"] = str(revision)
    return obj


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def to_json(obj: Any) -> bytes:
    return _dumps(obj).encode()
