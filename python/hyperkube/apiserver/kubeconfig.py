"""The kubeconfig that real kubectl and the Python client use to reach this API server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml


def kubeconfig(
    server: str, context: str = "hyperkube", user: str = "admin", **user_fields: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": server}}],
        "users": [{"name": user, "user": dict(user_fields)}],
        "contexts": [
            {"name": context, "context": {"cluster": context, "user": user, "namespace": "default"}}
        ],
        "current-context": context,
        "preferences": {},
    }


def write_kubeconfig(path: str | Path, server: str, **kw: Any) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    with open(tmp, "w") as f:
        yaml.safe_dump(kubeconfig(server, **kw), f, sort_keys=False)
    os.chmod(tmp, 0o600)
    os.replace(tmp, p)
    return p
