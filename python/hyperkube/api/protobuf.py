"""Decoding of Kubernetes protobuf request bodies (``application/vnd.kubernetes.protobuf``).

kubectl's typed clients (``kubectl create namespace``, ``create deployment`` ...) send their
bodies as protobuf: the 4-byte magic ``k8s\\0`` and a ``runtime.Unknown`` envelope (type meta +
raw message). This module turns such a body into the same JSON-shaped dict a JSON body gives,
using the message layouts in ``proto_schema.json.gz`` (see :mod:`._protogen`). Go's ``omitempty``
is approximated: zero scalars are dropped, except for fields where zero is meaningful
(``replicas: 0``). Responses are always JSON (clients list it in Accept).
"""

from __future__ import annotations

import base64
import datetime as _dt
import functools
import gzip
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MAGIC = b"k8s\x00"
SCHEMA_FILE = Path(__file__).with_name("proto_schema.json.gz")

# protobuf field types (descriptor.proto)
T_DOUBLE, T_FLOAT, T_INT64, T_UINT64, T_INT32, T_BOOL, T_STRING, T_MESSAGE, T_BYTES = (
    1,
    2,
    3,
    4,
    5,
    8,
    9,
    11,
    12,
)
T_UINT32, T_ENUM, T_SINT32, T_SINT64, T_FIXED64, T_FIXED32, T_SFIXED32, T_SFIXED64 = (
    13,
    14,
    17,
    18,
    6,
    7,
    15,
    16,
)

KEEP_ZERO = {
    "replicas",
    "terminationGracePeriodSeconds",
    "activeDeadlineSeconds",
    "value",
    "port",
    "containerPort",
}

GROUP_PACKAGES = {
    "": "k8s.io.api.core.v1",
    "apps": "k8s.io.api.apps.v1",
    "rbac.authorization.k8s.io": "k8s.io.api.rbac.v1",
    "coordination.k8s.io": "k8s.io.api.coordination.v1",
    "discovery.k8s.io": "k8s.io.api.discovery.v1",
    "scheduling.k8s.io": "k8s.io.api.scheduling.v1",
    "policy": "k8s.io.api.policy.v1",
    "autoscaling": "k8s.io.api.autoscaling.v1",
    "meta.k8s.io": "k8s.io.apimachinery.pkg.apis.meta.v1",
}

META = "k8s.io.apimachinery.pkg.apis.meta.v1"


class ProtobufError(ValueError):
    pass


@functools.cache
def schema() -> dict[str, Any]:
    try:
        with gzip.open(SCHEMA_FILE, "rt") as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def _varint(data: bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if i >= len(data):
            raise ProtobufError("truncated varint")
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
        if shift > 70:
            raise ProtobufError("varint too long")


def iter_fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) for each field of a message."""
    i, n = 0, len(data)
    while i < n:
        key, i = _varint(data, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(data, i)
        elif wt == 1:
            v, i = data[i : i + 8], i + 8
        elif wt == 2:
            ln, i = _varint(data, i)
            if i + ln > n:
                raise ProtobufError("truncated length-delimited field")
            v, i = data[i : i + ln], i + ln
        elif wt == 5:
            v, i = data[i : i + 4], i + 4
        else:
            raise ProtobufError(f"unsupported wire type {wt}")
        yield num, wt, v


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _scalar(t: int, wt: int, v: Any) -> Any:
    if t in (T_INT64, T_INT32, T_ENUM):
        return _signed64(v)
    if t in (T_UINT64, T_UINT32):
        return v
    if t == T_BOOL:
        return bool(v)
    if t == T_STRING:
        return v.decode()
    if t == T_BYTES:
        return base64.b64encode(v).decode()
    if t == T_DOUBLE:
        return struct.unpack("<d", v)[0]
    if t == T_FLOAT:
        return struct.unpack("<f", v)[0]
    if t == T_SINT32 or t == T_SINT64:
        return (v >> 1) ^ -(v & 1)
    raise ProtobufError(f"unsupported field type {t}")


def _special(type_name: str, data: bytes) -> tuple[bool, Any]:
    if type_name in (f"{META}.Time", f"{META}.MicroTime"):
        secs = nanos = 0
        for num, _, v in iter_fields(data):
            if num == 1:
                secs = _signed64(v)
            elif num == 2:
                nanos = v
        if secs == 0 and nanos == 0:
            return True, None
        t = _dt.datetime.fromtimestamp(secs, _dt.UTC)
        if type_name.endswith("MicroTime"):
            return True, t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{nanos // 1000:06d}Z"
        return True, t.strftime("%Y-%m-%dT%H:%M:%SZ")
    if type_name == "k8s.io.apimachinery.pkg.api.resource.Quantity":
        for num, _, v in iter_fields(data):
            if num == 1:
                return True, v.decode()
        return True, "0"
    if type_name == "k8s.io.apimachinery.pkg.util.intstr.IntOrString":
        kind, iv, sv = 0, 0, ""
        for num, _, v in iter_fields(data):
            if num == 1:
                kind = v
            elif num == 2:
                iv = _signed64(v)
            elif num == 3:
                sv = v.decode()
        return True, (sv if kind == 1 else iv)
    if type_name == "k8s.io.apimachinery.pkg.runtime.RawExtension":
        for num, _, v in iter_fields(data):
            if num == 1:
                try:
                    return True, json.loads(v)
                except ValueError:
                    raise ProtobufError("RawExtension does not hold JSON") from None
        return True, None
    if type_name == f"{META}.Duration":
        for num, _, v in iter_fields(data):
            if num == 1:
                return True, f"{_signed64(v) / 1e9}s"
        return True, "0s"
    return False, None


def decode_message(type_name: str, data: bytes) -> Any:
    special, value = _special(type_name, data)
    if special:
        return value
    msg = schema().get(type_name)
    if msg is None:
        raise ProtobufError(f"unknown protobuf message {type_name}")
    fields = {f[0]: f for f in msg["f"]}
    out: dict[str, Any] = {}
    for num, wt, v in iter_fields(data):
        f = fields.get(num)
        if f is None:
            raise ProtobufError(f"unknown field {num} in {type_name}")
        _, name, t, repeated, sub = f
        if t == T_MESSAGE:
            # map entries become dict items
            sub_msg = schema().get(sub)
            if sub_msg is not None and sub_msg.get("map"):
                entry = decode_map_entry(sub, v)
                out.setdefault(name, {}).update(entry)
                continue
            val = decode_message(sub, v)
        elif repeated and wt == 2 and t not in (T_STRING, T_BYTES):
            vals = []
            j = 0
            while j < len(v):
                x, j = _varint(v, j)
                vals.append(_scalar(t, 0, x))
            out.setdefault(name, []).extend(vals)
            continue
        else:
            val = _scalar(t, wt, v)
        if repeated:
            out.setdefault(name, []).append(val)
        else:
            out[name] = val
    for k in list(out):
        v = out[k]
        if v is None or (v in ("", 0, False) and not isinstance(v, dict | list) and k not in KEEP_ZERO):
            del out[k]
    return out


def decode_map_entry(type_name: str, data: bytes) -> dict[str, Any]:
    msg = schema()[type_name]
    fields = {f[0]: f for f in msg["f"]}
    key, value = "", None
    for num, wt, v in iter_fields(data):
        f = fields.get(num)
        if f is None:
            continue
        _, _, t, _, sub = f
        val = decode_message(sub, v) if t == T_MESSAGE else _scalar(t, wt, v)
        if num == 1:
            key = val
        else:
            value = val
    if value is None:
        value = ""
    return {key: value}


def decode(body: bytes) -> dict[str, Any]:
    """A ``k8s\\0``-framed protobuf body as a JSON-shaped dict with apiVersion and kind."""
    if not body.startswith(MAGIC):
        raise ProtobufError("the protobuf body does not start with the Kubernetes magic number")
    if not schema():
        raise ProtobufError("protobuf schemas are not available in this build")
    api_version = kind = ""
    raw = b""
    for num, _, v in iter_fields(body[4:]):
        if num == 1:
            for n2, _, v2 in iter_fields(v):
                if n2 == 1:
                    api_version = v2.decode()
                elif n2 == 2:
                    kind = v2.decode()
        elif num == 2:
            raw = v
        elif num == 3 and v:
            raise ProtobufError(f"unsupported content encoding {v.decode()!r}")
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    pkg = GROUP_PACKAGES.get(group)
    if pkg is None:
        raise ProtobufError(f"protobuf bodies are not supported for apiVersion {api_version!r}")
    type_name = f"{pkg}.{kind}"
    if kind == "DeleteOptions":
        type_name = f"{META}.DeleteOptions"
    obj = decode_message(type_name, raw)
    out = {"apiVersion": api_version, "kind": kind}
    out.update(obj)
    return out
