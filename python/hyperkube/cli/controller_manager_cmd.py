"""``hyperkube controller-manager``: the reconcile loops (kube-controller-manager).

Flags keep upstream's names where upstream has them (``--controllers``, ``--leader-elect*``,
``--node-monitor-grace-period``, ``--cluster-cidr`` ...); durations accept ``40s``, ``5m``,
``500ms`` or plain seconds. /healthz and /metrics are served on ``--bind-address``:``--secure-port``
(127.0.0.1:10257, plain HTTP for now, as the API server's component-status probe expects).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys

from hyperkube.cli.daemon import leader_election_error, run_daemon

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration(text: str) -> float:
    """``1m30s`` / ``40s`` / ``500ms`` / ``2.5`` (seconds) → seconds."""
    s = text.strip()
    try:
        return float(s)
    except ValueError:
        pass
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", s)
    if not parts or "".join(n + u for n, u in parts) != s:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (use e.g. 40s, 5m, 500ms)")
    return sum(float(n) * _UNITS[u] for n, u in parts)


async def _main(args: argparse.Namespace) -> int:
    from hyperkube.client import Client
    from hyperkube.controllers.base import Options
    from hyperkube.controllers.manager import ControllerManager
    from hyperkube.controllers.registry import select

    names = select(args.controllers)
    if args.server:
        client = Client(args.server, token=args.token)
    else:
        client = Client.from_kubeconfig(args.kubeconfig)
    opts = Options(
        concurrent_syncs=args.concurrent_syncs,
        node_monitor_period=args.node_monitor_period,
        node_monitor_grace_period=args.node_monitor_grace_period,
        node_startup_grace_period=args.node_startup_grace_period,
        node_eviction_rate=args.node_eviction_rate,
        secondary_node_eviction_rate=args.secondary_node_eviction_rate,
        large_cluster_size_threshold=args.large_cluster_size_threshold,
        unhealthy_zone_threshold=args.unhealthy_zone_threshold,
        default_toleration_seconds=args.default_toleration_seconds,
        cluster_cidr=args.cluster_cidr,
        node_cidr_mask_size=args.node_cidr_mask_size,
        allocate_node_cidrs=args.allocate_node_cidrs,
        max_endpoints_per_slice=args.max_endpoints_per_slice,
        terminated_pod_gc_threshold=args.terminated_pod_gc_threshold,
    )
    mgr = ControllerManager(
        client,
        names,
        opts,
        leader_elect=args.leader_elect,
        lease_duration=args.leader_elect_lease_duration,
        renew_deadline=args.leader_elect_renew_deadline,
        retry_period=args.leader_elect_retry_period,
        lease_namespace=args.leader_elect_resource_namespace,
        bind_address=args.bind_address,
        port=args.secure_port,
    )
    await mgr.start_http()
    print(
        f"hyperkube controller-manager: {', '.join(names)}; /healthz and /metrics on "
        f"http://{args.bind_address}:{mgr.port}",
        flush=True,
    )
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(mgr.run())
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        return 0
    finally:
        await client.close()


def run(args: argparse.Namespace) -> int:
    if not args.server and not args.kubeconfig:
        print("hyperkube controller-manager: give --kubeconfig FILE or --server URL", file=sys.stderr)
        return 2
    if args.leader_elect and leader_election_error("controller-manager", args):
        return 2
    return run_daemon("controller-manager", lambda: _main(args))


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "controller-manager", help="run the controller manager (replicasets, deployments, nodes ...)"
    )
    p.add_argument("--kubeconfig", help="kubeconfig of the API server")
    p.add_argument("--server", help="API server URL (instead of --kubeconfig)")
    p.add_argument("--token", help="bearer token (with --server)")
    p.add_argument(
        "--controllers",
        default="*",
        help="comma-separated: '*' for all, 'name' to enable, '-name' to disable (replicaset, deployment, "
        "nodelifecycle, nodeipam, endpoint, endpointslice, namespace, garbagecollector, serviceaccount, podgc)",
    )
    p.add_argument("--bind-address", default="127.0.0.1", help="address of /healthz and /metrics")
    p.add_argument(
        "--secure-port", "--port", type=int, default=10257, help="port of /healthz and /metrics (0: any)"
    )
    p.add_argument("--leader-elect", type=_bool, default=True, nargs="?", const=True)
    p.add_argument("--leader-elect-lease-duration", type=duration, default=15.0)
    p.add_argument("--leader-elect-renew-deadline", type=duration, default=10.0)
    p.add_argument("--leader-elect-retry-period", type=duration, default=2.0)
    p.add_argument("--leader-elect-resource-namespace", default="kube-system")
    p.add_argument("--concurrent-syncs", type=int, default=5, help="workers per controller")
    p.add_argument("--node-monitor-period", type=duration, default=5.0)
    p.add_argument("--node-monitor-grace-period", type=duration, default=40.0)
    p.add_argument("--node-startup-grace-period", type=duration, default=60.0)
    p.add_argument("--node-eviction-rate", type=float, default=0.1)
    p.add_argument("--secondary-node-eviction-rate", type=float, default=0.01)
    p.add_argument("--large-cluster-size-threshold", type=int, default=50)
    p.add_argument("--unhealthy-zone-threshold", type=float, default=0.55)
    p.add_argument(
        "--default-toleration-seconds",
        type=duration,
        default=300.0,
        help="eviction delay for pods without a not-ready/unreachable toleration",
    )
    p.add_argument("--cluster-cidr", default="10.244.0.0/16")
    p.add_argument("--node-cidr-mask-size", type=int, default=24)
    p.add_argument("--allocate-node-cidrs", type=_bool, default=True, nargs="?", const=True)
    p.add_argument("--max-endpoints-per-slice", type=int, default=100)
    p.add_argument("--terminated-pod-gc-threshold", type=int, default=12500)
    p.set_defaults(func=run)
