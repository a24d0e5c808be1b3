"""Developer tool: build ``openapi_schemas.json.gz`` (OpenAPI v3 component schemas, with field
descriptions) for the served kinds, from the models of the official ``kubernetes`` Python client
(a test dependency; the generated file is what the server reads).

Usage: ``python -m hyperkube.apiserver.openapi --generate``
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

from hyperkube.api.registry import RESOURCES

_PREFIX = re.compile(r"^V\d+(?:alpha\d+|beta\d+)?(?=[A-Z])")


def _name(model: str) -> str:
    return "io.k8s." + _PREFIX.sub("", model)


def _clean(node: Any) -> Any:
    if isinstance(node, list):
        return [_clean(x) for x in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    any_of = node.pop("anyOf", None)
    if any_of is not None:
        rest = [x for x in any_of if x != {"type": "null"}]
        if len(rest) == 1:
            for k, v in rest[0].items():
                node.setdefault(k, v)
        else:
            node["anyOf"] = rest
    node.pop("title", None)
    if node.get("default", 0) is None:
        node.pop("default")
    ref = node.pop("$ref", None)
    desc = node.get("description")
    if isinstance(desc, str) and "Attributes:" in desc:
        node["description"] = desc.split("Attributes:")[0].strip()
    out = {k: _clean(v) for k, v in node.items()}
    if ref is not None:
        out["allOf"] = [{"$ref": "#/components/schemas/" + _name(ref.rsplit("/", 1)[-1])}]
    return out


def main(target: Path) -> None:
    import kubernetes.client.models as models

    schemas: dict[str, Any] = {}
    for r in RESOURCES:
        if r.plural == "bindings":
            continue
        cls = getattr(models, f"V1{r.kind}", None)
        if cls is None:
            continue
        s = cls.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
        for name, d in s.pop("$defs", {}).items():
            schemas.setdefault(_name(name), _clean(d))
        top = _clean(s)
        top["x-kubernetes-group-version-kind"] = [{"group": r.group, "version": r.version, "kind": r.kind}]
        schemas[_name(cls.__name__)] = top
    for sch in schemas.values():  # a referencing property without text gets the type's description
        for prop in (sch.get("properties") or {}).values():
            target_ref = (prop.get("allOf") or [{}])[0].get("$ref") or (
                (prop.get("items") or {}).get("allOf") or [{}]
            )[0].get("$ref")
            if target_ref and not prop.get("description"):
                d = schemas.get(target_ref.rsplit("/", 1)[-1], {}).get("description")
                if d:
                    prop["description"] = d
    with gzip.open(target, "wt") as f:
        json.dump(schemas, f, separators=(",", ":"), sort_keys=True)
    print(f"wrote {len(schemas)} schemas to {target}")
