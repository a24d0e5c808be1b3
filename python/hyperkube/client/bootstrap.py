"""Joining a cluster with a bootstrap token (TLS bootstrapping, as ``kubeadm join`` + kubelet).

``join(server, token, node_name, out)``:

1. **Find and pin the CA.** Without a CA file, read ``kube-public/cluster-info`` over TLS without
   verification, using the token, then check the CA in it against
   ``--discovery-token-ca-cert-hash sha256:<hex>`` (the SHA-256 of the CA's public key info,
   printed by ``hyperkube token create``), so a man in the middle cannot substitute its own CA.
   Every later request verifies the server against that CA.
2. **Ask for a client certificate.** Make an EC P-256 key and a CSR for
   ``CN=system:node:<node>, O=system:nodes``, and create a CertificateSigningRequest for the
   ``kubernetes.io/kube-apiserver-client-kubelet`` signer with the token. The API server
   approves kubelet client CSRs from bootstrap tokens and signs them at once; we wait for
   ``status.certificate`` (watching by polling) in case an approver is slower.
3. **Write the kubeconfig** (CA, certificate, key embedded; mode 0600). From then on the node
   authenticates as ``system:node:<node>`` (Node authorizer + NodeRestriction apply).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import secrets
import ssl
from typing import Any

import aiohttp
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"


class JoinError(Exception):
    pass


def ca_cert_hash(ca_pem: bytes) -> str:
    """kubeadm's discovery hash: ``sha256:`` + hex SHA-256 of the CA's SubjectPublicKeyInfo."""
    cert = x509.load_pem_x509_certificate(ca_pem)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(spki).hexdigest()


async def _request(
    method: str, url: str, token: str, ctx: ssl.SSLContext | bool, body: Any = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    timeout = aiohttp.ClientTimeout(total=15)
    async with (
        aiohttp.ClientSession(timeout=timeout) as s,
        s.request(method, url, json=body, headers=headers, ssl=ctx) as r,
    ):
        return r.status, await r.json(content_type=None)


async def discover_ca(server: str, token: str, ca_hash: str) -> bytes:
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    code, cm = await _request(
        "GET", f"{server}/api/v1/namespaces/kube-public/configmaps/cluster-info", token, insecure
    )
    if code != 200:
        raise JoinError(f"reading kube-public/cluster-info failed ({code}): {cm.get('message', cm)}")
    kc = yaml.safe_load((cm.get("data") or {}).get("kubeconfig", "")) or {}
    try:
        ca = base64.b64decode(kc["clusters"][0]["cluster"]["certificate-authority-data"])
    except (KeyError, IndexError, TypeError, ValueError):
        raise JoinError("kube-public/cluster-info has no CA in its kubeconfig") from None
    got = ca_cert_hash(ca)
    if got != ca_hash:
        raise JoinError(f"the cluster CA does not match the pinned hash: got {got}, want {ca_hash}")
    return ca


def make_csr(node_name: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                    x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node_name}"),
                ]
            )
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return csr.public_bytes(serialization.Encoding.PEM), key_pem


async def join(
    server: str,
    token: str,
    node_name: str,
    out: str,
    *,
    ca_hash: str | None = None,
    ca_file: str | None = None,
    timeout: float = 60.0,
) -> str:
    """Get a client certificate for `node_name` with a bootstrap token; write a kubeconfig to `out`."""
    server = server.rstrip("/")
    if ca_file:
        with open(ca_file, "rb") as f:
            ca = f.read()
    elif ca_hash:
        ca = await discover_ca(server, token, ca_hash)
    else:
        raise JoinError("give the cluster CA (a file) or its hash (--discovery-token-ca-cert-hash)")
    ctx = ssl.create_default_context(cadata=ca.decode())
    csr_pem, key_pem = make_csr(node_name)
    name = f"node-csr-{secrets.token_hex(8)}"
    body = {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "request": base64.b64encode(csr_pem).decode(),
            "signerName": SIGNER,
            "usages": ["digital signature", "client auth"],
        },
    }
    base = f"{server}/apis/certificates.k8s.io/v1/certificatesigningrequests"
    code, obj = await _request("POST", base, token, ctx, body)
    if code not in (200, 201):
        raise JoinError(f"creating the CertificateSigningRequest failed ({code}): {obj.get('message', obj)}")
    deadline = asyncio.get_running_loop().time() + timeout
    while not (obj.get("status") or {}).get("certificate"):
        conds = (obj.get("status") or {}).get("conditions") or []
        denied = [c for c in conds if c.get("type") in ("Denied", "Failed")]
        if denied:
            raise JoinError(f"the CSR {name} was {denied[0]['type'].lower()}: {denied[0].get('message', '')}")
        if asyncio.get_running_loop().time() > deadline:
            raise JoinError(f"the CSR {name} was not signed within {timeout:.0f}s (not approved?)")
        await asyncio.sleep(1.0)
        code, obj = await _request("GET", f"{base}/{name}", token, ctx)
        if code != 200:
            raise JoinError(f"reading the CSR {name} failed ({code}): {obj.get('message', obj)}")
    cert = base64.b64decode(obj["status"]["certificate"])
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "hyperkube",
                "cluster": {"server": server, "certificate-authority-data": base64.b64encode(ca).decode()},
            }
        ],
        "users": [
            {
                "name": f"system:node:{node_name}",
                "user": {
                    "client-certificate-data": base64.b64encode(cert).decode(),
                    "client-key-data": base64.b64encode(key_pem).decode(),
                },
            }
        ],
        "contexts": [
            {"name": "hyperkube", "context": {"cluster": "hyperkube", "user": f"system:node:{node_name}"}}
        ],
        "current-context": "hyperkube",
    }
    tmp = out + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    os.replace(tmp, out)
    return out
