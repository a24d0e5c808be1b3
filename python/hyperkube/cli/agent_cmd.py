"""``hyperkube agent``: a node's two daemons together - the kubelet, plus ``hyperkube proxy`` as a child.

Takes the kubelet's flags. The proxy runs as its own process (components meet only through the API
server) with the same kubeconfig/server, node name, ``--netns`` and ``--node-ip``; when this build has no
``proxy`` command, the agent runs the kubelet alone and says so. Stopping the agent stops both.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys


def run(args: argparse.Namespace) -> int:
    from hyperkube.cli import kubelet_cmd

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
    p.set_defaults(func=run)
