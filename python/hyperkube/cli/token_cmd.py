"""``hyperkube token create``: a bootstrap token for joining a node (as ``kubeadm token create``).

Creates the Secret ``kube-system/bootstrap-token-<id>`` (type ``bootstrap.kubernetes.io/token``)
through the API with the administrator's kubeconfig, and prints the token, or with
``--print-join-command`` the command a new node runs::

    hyperkube agent --server https://IP:6443 --token abcdef.0123456789abcdef \\
        --discovery-token-ca-cert-hash sha256:<hash of the cluster CA's public key>

The token authenticates as ``system:bootstrap:<id>`` in ``system:bootstrappers``, which may only
read ``kube-public/cluster-info`` and file kubelet client CSRs (approved and signed at once).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import re
import secrets
import string
import sys
from pathlib import Path

_ALPHABET = string.ascii_lowercase + string.digits
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_ttl(s: str) -> int:
    m = _DURATION.match(s)
    if not s or not m or not any(m.groups()):
        raise ValueError(f"invalid --ttl {s!r}: use e.g. 24h, 90m, 0 for never")
    h, mi, se = (int(x or 0) for x in m.groups())
    return h * 3600 + mi * 60 + se


def new_token() -> str:
    return (
        "".join(secrets.choice(_ALPHABET) for _ in range(6))
        + "."
        + "".join(secrets.choice(_ALPHABET) for _ in range(16))
    )


def secret_for(token: str, ttl: int, groups: list[str], description: str = "") -> dict:
    tid, sec = token.split(".")
    data = {
        "token-id": tid,
        "token-secret": sec,
        "usage-bootstrap-authentication": "true",
        "usage-bootstrap-signing": "true",
        "auth-extra-groups": ",".join(groups),
    }
    if ttl > 0:
        data["expiration"] = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=ttl)).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
    if description:
        data["description"] = description
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"bootstrap-token-{tid}", "namespace": "kube-system"},
        "type": "bootstrap.kubernetes.io/token",
        "stringData": data,
    }


async def _create(kubeconfig: str, body: dict) -> None:
    from hyperkube.client import Client
    from hyperkube.client.resources import SECRETS

    async with Client.from_kubeconfig(kubeconfig) as c:
        await c.create(SECRETS, body, "kube-system")


def run(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).resolve()
    kubeconfig = args.kubeconfig or str(data_dir / "kubeconfig")
    try:
        ttl = parse_ttl(args.ttl) if args.ttl != "0" else 0
    except ValueError as e:
        print(f"hyperkube token: {e}", file=sys.stderr)
        return 2
    token = args.token or new_token()
    if not re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", token):
        print("hyperkube token: a token is 6 + '.' + 16 characters of [a-z0-9]", file=sys.stderr)
        return 2
    groups = ["system:bootstrappers:kubeadm:default-node-token", *(args.groups or [])]
    if not Path(kubeconfig).exists():
        print(
            f"hyperkube token: no administrator kubeconfig at {kubeconfig}; start `hyperkube server "
            f"--data-dir {data_dir}` (or `hyperkube up`) first, or pass --kubeconfig",
            file=sys.stderr,
        )
        return 1
    try:
        asyncio.run(_create(kubeconfig, secret_for(token, ttl, groups, args.description)))
    except Exception as e:
        print(f"hyperkube token: creating the bootstrap token failed: {e}", file=sys.stderr)
        return 1
    if args.print_join_command:
        from hyperkube.apiserver.credentials import server_of
        from hyperkube.client.bootstrap import ca_cert_hash

        ca_hash = ca_cert_hash((data_dir / "pki" / "ca.crt").read_bytes())
        print(
            f"hyperkube agent --server {server_of(data_dir)} --token {token} "
            f"--discovery-token-ca-cert-hash {ca_hash}"
        )
    else:
        print(token)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("token", help="bootstrap tokens for joining nodes")
    p.add_argument("action", choices=["create"])
    p.add_argument("token", nargs="?", default=None, help="the token (default: a random one)")
    p.add_argument("--data-dir", default=".hyperkube")
    p.add_argument("--kubeconfig", default=None, help="default: DATA_DIR/kubeconfig (administrator)")
    p.add_argument("--ttl", default="24h", help="lifetime (24h, 90m; 0 = never expires)")
    p.add_argument("--groups", action="append", help="extra groups (system:bootstrappers:...)")
    p.add_argument("--description", default="")
    p.add_argument("--print-join-command", action="store_true")
    p.set_defaults(func=run)
