"""``hyperkube proxy``: kube-proxy.

``hyperkube proxy render --mode iptables|nftables -f FILE.yaml`` prints the ``iptables-restore`` or
``nft -f`` input for the Services and EndpointSlices in FILE (no cluster, no root): for people
debugging rules.

``hyperkube proxy --mode nftables|iptables --kubeconfig FILE`` is the daemon: it watches Services
and EndpointSlices and programs the node (inside ``--netns NAME`` when given), serving /healthz
(``--healthz-bind-address``, upstream's 0.0.0.0:10256) and /metrics (``--metrics-bind-address``,
127.0.0.1:10249). It removes its rules when stopped; ``--cleanup`` only removes them and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import socket
import sys
from typing import Any

import yaml

from hyperkube.cli.daemon import run_daemon
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
    p.add_argument("--kubeconfig", help="kubeconfig of the API server")
    p.add_argument("--server", help="API server URL (instead of --kubeconfig)")
    p.add_argument("--token", help="bearer token (with --server)")
    p.add_argument(
        "--mode",
        dest="daemon_mode",
        choices=("iptables", "nftables"),
        default=None,
        help="nftables (default where nft exists) or iptables",
    )
    p.add_argument("--node-name", "--hostname-override", dest="node_name", default=None)
    p.add_argument("--node-ip", help="this node's IP")
    p.add_argument("--netns", help="program this network namespace (ip netns exec NAME ...)")
    p.add_argument("--cluster-cidr", help="pod CIDR: traffic from outside it to a ClusterIP is masqueraded")
    p.add_argument("--masquerade-all", action="store_true")
    p.add_argument("--min-sync-period", type=_duration, default=1.0, help="at most one sync per period (1s)")
    p.add_argument("--sync-period", type=_duration, default=30.0, help="full resync period (30s)")
    p.add_argument("--healthz-bind-address", default="0.0.0.0:10256")
    p.add_argument("--metrics-bind-address", default="127.0.0.1:10249")
    p.add_argument("--cleanup", action="store_true", help="remove all rules of both modes and exit")
    p.set_defaults(func=daemon)


def _duration(text: str) -> float:
    from hyperkube.cli.controller_manager_cmd import duration

    return duration(text)


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"invalid bind address {text!r} (use HOST:PORT)")
    return host, int(port)


async def _daemon(args: argparse.Namespace) -> int:
    from aiohttp import web

    from hyperkube.client import ENDPOINTSLICES, SERVICES, Client, SharedInformerFactory
    from hyperkube.proxy.backends import CommandRunner, new_backend
    from hyperkube.proxy.daemon import ProxyDaemon

    mode = args.daemon_mode or ("nftables" if shutil.which("nft") else "iptables")
    node = args.node_name or socket.gethostname()
    backend = new_backend(
        mode,
        CommandRunner(args.netns),
        cluster_cidr=args.cluster_cidr,
        node_ip=args.node_ip,
        masquerade_all=args.masquerade_all,
    )
    client = Client(args.server, token=args.token) if args.server else Client.from_kubeconfig(args.kubeconfig)
    d = ProxyDaemon(
        client, backend, node_name=node, min_sync_period=args.min_sync_period, sync_period=args.sync_period
    )
    runner = web.AppRunner(d.app())
    await runner.setup()
    addrs = {_hostport(args.healthz_bind_address), _hostport(args.metrics_bind_address)}
    served = []
    for host, port in sorted(addrs):
        try:
            await web.TCPSite(runner, host, port).start()
            served.append((host, port))
        except OSError as e:  # e.g. several local nodes' proxies on one host: keep proxying
            print(
                f"hyperkube proxy: not serving /healthz and /metrics on {host}:{port}: {e.strerror or e}",
                file=sys.stderr,
            )
    addrs = set(served)
    factory = SharedInformerFactory(client)
    svc = factory.informer(SERVICES)
    slices = factory.informer(ENDPOINTSLICES)
    task = asyncio.create_task(d.run((svc, slices)))
    factory.start()
    print(
        f"hyperkube proxy: mode {mode}, node {node}"
        + (f", netns {args.netns}" if args.netns else "")
        + f"; /healthz and /metrics on {', '.join(f'{h}:{p}' for h, p in sorted(addrs)) or 'nothing'}",
        flush=True,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        pass
    finally:
        await factory.stop()
        await runner.cleanup()
        await client.close()
        try:
            backend.cleanup()
        except Exception as e:  # report, but still exit
            print(f"hyperkube proxy: cleanup failed: {e}", file=sys.stderr)
            return 1
    return 0


def daemon(args: argparse.Namespace) -> int:
    from hyperkube.proxy.backends import CommandRunner, IptablesBackend, NftablesBackend

    logging.basicConfig(
        level=os.environ.get("HYPERKUBE_LOG", "WARNING"),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if args.cleanup:
        rc = 0
        for b in (IptablesBackend(CommandRunner(args.netns)), NftablesBackend(CommandRunner(args.netns))):
            try:
                b.cleanup()
            except Exception as e:
                print(f"hyperkube proxy: {b.mode} cleanup failed: {e}", file=sys.stderr)
                rc = 1
        return rc
    if not args.server and not args.kubeconfig:
        print(
            "hyperkube proxy: give --kubeconfig FILE or --server URL (or use 'proxy render')", file=sys.stderr
        )
        return 2
    return run_daemon("proxy", lambda: _daemon(args), configure_logging=False)


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
