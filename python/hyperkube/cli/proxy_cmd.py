"""``hyperkube proxy``: kube-proxy.

``hyperkube proxy render --mode iptables|nftables -f FILE.yaml`` prints the ``iptables-restore`` or
``nft -f`` input for the Services and EndpointSlices in FILE (no cluster, no root): for people
debugging rules. The daemon form (``hyperkube proxy --mode ...`` watching the API server) needs
the shared client library and is not part of this build yet.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from hyperkube.proxy.model import ModelError, build_model


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("proxy", help="kube-proxy: program Services into iptables or nftables")
    sub = p.add_subparsers(dest="proxy_command", metavar="SUBCOMMAND")
    r = sub.add_parser("render", help="print the rules for the Services and EndpointSlices in a file")
    r.add_argument("--mode", choices=("iptables", "nftables"), default="nftables")
    r.add_argument("-f", "--filename", required=True, help="YAML/JSON file with Services and EndpointSlices")
    r.add_argument("--node-ip", help="this node's IP (for loadBalancerSourceRanges)")
    r.add_argument("--node-name", help="this node's name (endpoints on it are local)")
    r.add_argument("--cluster-cidr", help="pod CIDR: traffic from outside it to a ClusterIP is masqueraded")
    r.add_argument("--masquerade-all", action="store_true", help="masquerade all traffic to ClusterIPs")
    r.set_defaults(func=render)
    p.set_defaults(func=_no_daemon)


def _no_daemon(args: argparse.Namespace) -> int:
    print(
        "error: the proxy daemon is not available in this build; use 'hyperkube proxy render' "
        "to print the rules for a file of Services and EndpointSlices",
        file=sys.stderr,
    )
    return 2


def load_objects(path: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Services and EndpointSlices from a YAML/JSON file (multi-document, or kind: List)."""
    with open(path) if path != "-" else sys.stdin as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    services: list[dict[str, Any]] = []
    slices: list[dict[str, Any]] = []
    stack = list(docs)
    while stack:
        d = stack.pop(0)
        if not isinstance(d, dict):
            raise ModelError(f"{path}: expected an object, got {type(d).__name__}")
        kind = d.get("kind")
        if kind is not None and kind.endswith("List"):
            stack[0:0] = list(d.get("items") or [])
        elif kind == "Service":
            services.append(d)
        elif kind == "EndpointSlice":
            slices.append(d)
    return services, slices


def render(args: argparse.Namespace) -> int:
    from hyperkube import _native

    try:
        services, slices = load_objects(args.filename)
        model = build_model(services, slices, args.node_name)
    except (OSError, yaml.YAMLError, ModelError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    opts = {"cluster_cidr": args.cluster_cidr, "node_ip": args.node_ip, "masquerade_all": args.masquerade_all}
    if args.mode == "iptables":
        text, _, _ = _native.proxy_render_iptables(model, **opts)
    else:
        text, _, _ = _native.proxy_render_nftables(model, **opts)
    sys.stdout.buffer.write(text)
    sys.stdout.flush()
    return 0
