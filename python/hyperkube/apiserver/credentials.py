"""Credentials for every party of a cluster: kubeconfigs with the CA and a client certificate.

``hyperkube server`` (on first start, into its data dir) writes:

- ``kubeconfig``: the administrator (CN=admin, O=system:masters), for kubectl;
- ``scheduler.kubeconfig`` (system:kube-scheduler), ``controller-manager.kubeconfig``
  (system:kube-controller-manager), ``proxy.kubeconfig`` (system:kube-proxy).

A node's kubelet gets ``kubelet-<node>.kubeconfig`` (system:node:<node> in system:nodes) from
:func:`node_kubeconfig` / ``hyperkube certs kubeconfig --node NAME``, or joins with a bootstrap
token and a CertificateSigningRequest (:mod:`hyperkube.client.bootstrap`). Every kubeconfig
embeds its certificate and key (``*-data``) and is written with mode 0600.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import yaml

from hyperkube.apiserver.auth.pki import PKI, CertPair

COMPONENTS = {
    "kubeconfig": "admin",
    "scheduler.kubeconfig": "scheduler",
    "controller-manager.kubeconfig": "controller-manager",
    "proxy.kubeconfig": "proxy",
}


def _b64file(path: str) -> str:
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()


def kubeconfig_doc(
    server: str,
    ca_file: str,
    pair: CertPair | None = None,
    token: str | None = None,
    user: str = "admin",
    context: str = "hyperkube",
) -> dict[str, Any]:
    cluster: dict[str, Any] = {"server": server}
    if server.startswith("https"):
        cluster["certificate-authority-data"] = _b64file(ca_file)
    u: dict[str, Any] = {}
    if pair is not None:
        u["client-certificate-data"] = _b64file(pair.cert)
        u["client-key-data"] = _b64file(pair.key)
    if token:
        u["token"] = token
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": cluster}],
        "users": [{"name": user, "user": u}],
        "contexts": [
            {"name": context, "context": {"cluster": context, "user": user, "namespace": "default"}}
        ],
        "current-context": context,
        "preferences": {},
    }


def write_private_yaml(path: str | Path, doc: dict[str, Any]) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = str(p) + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    os.replace(tmp, p)
    return p


def write_component_kubeconfigs(data_dir: str | Path, pki: PKI, server: str) -> dict[str, Path]:
    out = {}
    for filename, identity in COMPONENTS.items():
        doc = kubeconfig_doc(server, pki.ca.cert, pki.pair(identity), user=identity)
        out[filename] = write_private_yaml(Path(data_dir) / filename, doc)
    return out


def server_of(data_dir: str | Path) -> str:
    """The API server URL of the admin kubeconfig in `data_dir`."""
    with open(Path(data_dir) / "kubeconfig") as f:
        doc = yaml.safe_load(f) or {}
    return str(doc["clusters"][0]["cluster"]["server"])


def node_kubeconfig(data_dir: str | Path, node: str, server: str | None = None) -> Path:
    """The kubeconfig of one node's kubelet (issuing its client certificate if needed)."""
    pki = PKI(str(Path(data_dir) / "pki"))
    server = server or server_of(data_dir)
    if not os.path.exists(pki.ca.key):
        raise FileNotFoundError(
            f"no cluster CA in {pki.dir}: start `hyperkube server --data-dir {data_dir}` first"
        )
    pair = pki.ensure_kubelet(node)
    doc = kubeconfig_doc(server, pki.ca.cert, pair, user=f"system:node:{node}")
    return write_private_yaml(Path(data_dir) / f"kubelet-{node}.kubeconfig", doc)
