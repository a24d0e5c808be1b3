"""``hyperkube scheduler``: the scheduling daemon (kube-scheduler) over the compiled engine.

Flags keep upstream's names: ``--kubeconfig``, ``--config`` (a KubeSchedulerConfiguration YAML:
profile weights and plugin args, ``leaderElection``), ``--leader-elect`` and its durations,
``--bind-address`` / ``--secure-port`` (alias ``--port``) for /healthz and /metrics, which are
plain HTTP on 127.0.0.1:10259 for now.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

import yaml

from hyperkube.cli.controller_manager_cmd import _bool, duration
from hyperkube.cli.daemon import leader_election_error, run_daemon


async def _main(args: argparse.Namespace, config: dict[str, Any]) -> int:
    from hyperkube.client import Client
    from hyperkube.scheduler.daemon import Scheduler

    client = Client(args.server, token=args.token) if args.server else Client.from_kubeconfig(args.kubeconfig)
    le = config.get("leaderElection") or {}
    leader_elect = args.leader_elect if args.leader_elect is not None else bool(le.get("leaderElect", True))
    sched = Scheduler(
        client,
        config=config,
        leader_elect=leader_elect,
        lease_name=le.get("resourceName") or "kube-scheduler",
        lease_namespace=args.leader_elect_resource_namespace or le.get("resourceNamespace") or "kube-system",
        lease_duration=args.leader_elect_lease_duration,
        renew_deadline=args.leader_elect_renew_deadline,
        retry_period=args.leader_elect_retry_period,
        bind_address=args.bind_address,
        port=args.secure_port,
    )
    port = await sched.start_http()
    print(
        f"hyperkube scheduler ({sched.scheduler_name}): /healthz and /metrics on http://{args.bind_address}:{port}",
        flush=True,
    )
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(sched.run())
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
        return 0
    except asyncio.CancelledError:
        return 0
    finally:
        await client.close()


def run(args: argparse.Namespace) -> int:
    if not args.server and not args.kubeconfig:
        print("hyperkube scheduler: give --kubeconfig FILE or --server URL", file=sys.stderr)
        return 2
    config: dict[str, Any] = {}
    if args.config:
        try:
            with open(args.config) as f:
                config = yaml.safe_load(f) or {}
            from hyperkube.scheduler import profile_from_config

            profile_from_config(config)
        except (OSError, yaml.YAMLError, ValueError) as e:
            print(f"hyperkube scheduler: --config {args.config}: {e}", file=sys.stderr)
            return 2
    if leader_election_error("scheduler", args):
        return 2
    return run_daemon("scheduler", lambda: _main(args, config))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scheduler", help="run the scheduler (kube-scheduler) against an API server")
    p.add_argument("--kubeconfig", help="kubeconfig of the API server")
    p.add_argument("--server", help="API server URL (instead of --kubeconfig)")
    p.add_argument("--token", help="bearer token (with --server)")
    p.add_argument("--config", help="KubeSchedulerConfiguration YAML (profile weights, plugin args)")
    p.add_argument("--bind-address", default="127.0.0.1", help="address of /healthz and /metrics")
    p.add_argument(
        "--secure-port",
        "--port",
        dest="secure_port",
        type=int,
        default=10259,
        help="port of /healthz and /metrics",
    )
    p.add_argument(
        "--leader-elect", type=_bool, default=None, help="elect a leader on a Lease (default true)"
    )
    p.add_argument("--leader-elect-lease-duration", type=duration, default=15.0)
    p.add_argument("--leader-elect-renew-deadline", type=duration, default=10.0)
    p.add_argument("--leader-elect-retry-period", type=duration, default=2.0)
    p.add_argument("--leader-elect-resource-namespace", default=None)
    p.set_defaults(func=run)
