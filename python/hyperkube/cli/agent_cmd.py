"""``hyperkube agent``: a node's two daemons together - the kubelet, plus ``hyperkube proxy`` as a child.

Takes the kubelet's flags. The proxy runs as its own process (components meet only through the API
server) with the same kubeconfig/server, node name, ``--netns`` and ``--node-ip``; when this build has no
``proxy`` command, the agent runs the kubelet alone and says so. Stopping the agent stops both.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys


def join_if_asked(args: argparse.Namespace) -> int:
    """With ``--token``: get this node's own client certificate through a bootstrap token and a
    CertificateSigningRequest (kubeadm join's TLS bootstrap), once; then run with that kubeconfig."""
    if not args.token:
        return 0
    if not args.server:
        print("hyperkube agent: --token needs --server https://HOST:PORT", file=sys.stderr)
        return 2
    import asyncio
    import socket

    from hyperkube.client.bootstrap import JoinError, join

    node = args.node_name = args.node_name or socket.gethostname()
    os.makedirs(args.data_dir, exist_ok=True)
    path = os.path.join(args.data_dir, f"kubelet-{node}.kubeconfig")
    if not os.path.exists(path):
        try:
            asyncio.run(join(args.server, args.token, node, path, ca_hash=args.discovery_token_ca_cert_hash))
        except (JoinError, OSError) as e:
            print(f"hyperkube agent: joining {args.server} as node {node} failed: {e}", file=sys.stderr)
            return 1
        print(f"hyperkube agent: joined as system:node:{node}; credentials in {path}", flush=True)
    args.kubeconfig, args.server = path, None
    args.proxy_kubeconfig = args.proxy_kubeconfig or path
    return 0


def run(args: argparse.Namespace) -> int:
    from hyperkube.cli import kubelet_cmd

    code = join_if_asked(args)
    if code:
        return code

    proxy = None
    if importlib.util.find_spec("hyperkube.cli.proxy_cmd") is not None:
        argv = [sys.executable, "-m", "hyperkube.cli.main", "proxy"]
        for flag in ("kubeconfig", "server", "node_name", "netns", "node_ip"):
            v = getattr(args, flag, None)
            if flag == "kubeconfig" and args.proxy_kubeconfig:
                v = args.proxy_kubeconfig  # the proxy's own identity (system:kube-proxy)
            if v:
                argv += ["--" + flag.replace("_", "-"), str(v)]
        proxy = subprocess.Popen(argv)
    else:
        print("hyperkube agent: this build has no proxy; running the kubelet only", file=sys.stderr)
    try:
        return kubelet_cmd.run(args)
    finally:
        if proxy is not None:
            proxy.terminate()
            try:
                proxy.wait(10)
            except subprocess.TimeoutExpired:
                proxy.kill()
                proxy.wait()


def register(sub: argparse._SubParsersAction) -> None:
    from hyperkube.cli import kubelet_cmd

    p = sub.add_parser("agent", help="run a node: kubelet + proxy")
    kubelet_cmd.add_arguments(p)
    p.add_argument(
        "--proxy-kubeconfig",
        default=None,
        help="kubeconfig of the proxy (default: the kubelet's --kubeconfig)",
    )
    p.add_argument(
        "--token", default=None, help="bootstrap token to join with (see `hyperkube token create`)"
    )
    p.add_argument(
        "--discovery-token-ca-cert-hash",
        default=None,
        help="sha256:<hash> of the cluster CA, checked before joining",
    )
    p.set_defaults(func=run)
