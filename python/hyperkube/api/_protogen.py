"""Developer tool: build ``proto_schema.json.gz`` (the protobuf wire layout of the built-in types)
from the protobuf file descriptors that a Kubernetes Go binary (kubectl) registers.

Usage: ``python -m hyperkube.api._protogen $(readlink -f $(which kubectl))``

Go binaries built from k8s.io/api embed each ``generated.proto`` as a gzipped
``FileDescriptorProto``; this reads them with a minimal wire-format parser and keeps, per message,
its fields (number, name, type, repeated, message type) for :mod:`hyperkube.api.protobuf`.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
import zlib
from pathlib import Path
from typing import Any

from hyperkube.api.protobuf import iter_fields

FILES = {
    "k8s.io/api/core/v1/generated.proto",
    "k8s.io/api/apps/v1/generated.proto",
    "k8s.io/api/rbac/v1/generated.proto",
    "k8s.io/api/coordination/v1/generated.proto",
    "k8s.io/api/discovery/v1/generated.proto",
    "k8s.io/api/scheduling/v1/generated.proto",
    "k8s.io/api/policy/v1/generated.proto",
    "k8s.io/api/autoscaling/v1/generated.proto",
    "k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto",
    "k8s.io/apimachinery/pkg/runtime/generated.proto",
    "k8s.io/apimachinery/pkg/util/intstr/generated.proto",
    "k8s.io/apimachinery/pkg/api/resource/generated.proto",
}


def _descriptors(binary: bytes) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for m in re.finditer(b"\x1f\x8b\x08\x00\x00\x00\x00\x00", binary):
        try:
            raw = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(
                binary[m.start() : m.start() + 4_000_000]
            )
        except zlib.error:
            continue
        if not raw or raw[0] != 0x0A:
            continue
        n = raw[1]
        name = raw[2 : 2 + n].decode(errors="replace")
        if name in FILES:
            out[name] = raw
    return out


def _message(pkg: str, data: bytes, out: dict[str, Any], prefix: str) -> None:
    name = ""
    fields: list[list[Any]] = []
    nested: list[bytes] = []
    is_map = False
    for num, _, val in iter_fields(data):
        if num == 1:
            name = val.decode()
        elif num == 2:
            f: dict[int, Any] = {}
            for fn, _, fv in iter_fields(val):
                f[fn] = fv
            fields.append(
                [f[3], f[1].decode(), f.get(5, 0), f.get(4, 1) == 3, (f.get(6) or b"").decode().lstrip(".")]
            )
        elif num == 3:
            nested.append(val)
        elif num == 7:
            for on, _, ov in iter_fields(val):
                if on == 7 and ov:
                    is_map = True
    full = f"{prefix}.{name}" if prefix else f"{pkg}.{name}"
    out[full] = {"f": fields, "map": is_map} if is_map else {"f": fields}
    for n in nested:
        _message(pkg, n, out, full)


def main(binary_path: str, target: Path) -> None:
    descs = _descriptors(Path(binary_path).read_bytes())
    missing = FILES - set(descs)
    if missing:
        raise SystemExit(f"descriptors not found in {binary_path}: {sorted(missing)}")
    schema: dict[str, Any] = {}
    for raw in descs.values():
        pkg = ""
        for num, _, val in iter_fields(raw):
            if num == 2:
                pkg = val.decode()
        for num, _, val in iter_fields(raw):
            if num == 4:
                _message(pkg, val, schema, "")
    with gzip.open(target, "wt") as f:
        json.dump(schema, f, separators=(",", ":"), sort_keys=True)
    print(f"wrote {len(schema)} messages to {target}")


if __name__ == "__main__":
    main(sys.argv[1], Path(__file__).with_name("proto_schema.json.gz"))
