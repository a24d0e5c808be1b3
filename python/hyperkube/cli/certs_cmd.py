"""``hyperkube certs``: credentials from the cluster PKI of a data dir (run on the control plane).

- ``hyperkube certs kubeconfig --node NAME``: a kubelet kubeconfig (``system:node:NAME`` in
  ``system:nodes``), written to ``DATA_DIR/kubelet-NAME.kubeconfig``.
  With ``--serving-ip IP`` also the kubelet's serving certificate (``pki/kubelet-NAME-serving.crt``,
  SANs: NAME and the IPs), so its HTTPS server can be verified against the cluster CA.
- ``hyperkube certs kubeconfig --user NAME [--group G ...]``: a client certificate for a person
  or a program (CN=NAME, O=G...); what they may do is then up to RBAC bindings.
- ``hyperkube certs ca-hash``: the CA's ``sha256:`` public-key hash that joining nodes pin.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from hyperkube.apiserver.auth.pki import PKI
    from hyperkube.apiserver.credentials import kubeconfig_doc, node_kubeconfig, server_of, write_private_yaml

    data_dir = Path(args.data_dir).resolve()
    pki = PKI(str(data_dir / "pki"))
    if not os.path.exists(pki.ca.key):
        print(
            f"hyperkube certs: no cluster CA in {pki.dir}; start `hyperkube server --data-dir {data_dir}` first",
            file=sys.stderr,
        )
        return 1
    if args.action == "ca-hash":
        from hyperkube.client.bootstrap import ca_cert_hash

        print(ca_cert_hash(Path(pki.ca.cert).read_bytes()))
        return 0
    if bool(args.node) == bool(args.user):
        print("hyperkube certs kubeconfig: give exactly one of --node NAME or --user NAME", file=sys.stderr)
        return 2
    try:
        server = args.server or server_of(data_dir)
    except (OSError, KeyError, IndexError, TypeError) as e:
        print(
            f"hyperkube certs: cannot read the server URL from {data_dir}/kubeconfig ({e}); use --server",
            file=sys.stderr,
        )
        return 1
    if args.node:
        if args.serving_ip:
            pair = pki.ensure_kubelet_serving(args.node, args.serving_ip)
            print(pair.cert)
            print(pair.key)
        path = node_kubeconfig(data_dir, args.node, server)
        if args.output:
            os.replace(path, args.output)
            path = Path(args.output)
    else:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", args.user)
        pair = pki.issue(f"user-{safe}", args.user, args.group or [])
        doc = kubeconfig_doc(server, pki.ca.cert, pair, user=args.user)
        path = write_private_yaml(args.output or data_dir / f"user-{safe}.kubeconfig", doc)
    print(path)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("certs", help="kubeconfigs and hashes from the cluster PKI")
    p.add_argument("action", choices=["kubeconfig", "ca-hash"])
    p.add_argument("--data-dir", default=".hyperkube")
    p.add_argument("--node", default=None, help="a kubelet identity: system:node:NAME")
    p.add_argument(
        "--serving-ip",
        action="append",
        help="with --node: also issue the kubelet's serving certificate for this address (repeatable)",
    )
    p.add_argument("--user", default=None, help="a user identity (certificate CN)")
    p.add_argument("--group", action="append", help="groups of --user (certificate O), repeatable")
    p.add_argument("--server", default=None, help="API server URL (default: the one in DATA_DIR/kubeconfig)")
    p.add_argument("-o", "--output", default=None, help="where to write the kubeconfig")
    p.set_defaults(func=run)
