"""``hyperkube up``: a whole cluster on this machine (apiserver, scheduler, controllers, nodes)."""

from __future__ import annotations

import argparse
import sys


def run(args: argparse.Namespace) -> int:
    print(
        "hyperkube up: the one-command cluster is not built yet in this version "
        "(it lands with the API server, scheduler, controller-manager, kubelet and proxy).",
        file=sys.stderr,
    )
    return 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="start a whole cluster on this machine")
    p.add_argument("--data-dir", default=".hyperkube", help="state directory (default: .hyperkube)")
    p.add_argument("--port", type=int, default=6443)
    p.add_argument("--storage", default=None, help="sqlite:///path.db (default) or etcd://host:port")
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--hollow-nodes", type=int, default=0)
    p.add_argument("--runtime", choices=["runc", "process", "fake"], default=None)
    p.set_defaults(func=run)
