"""``hyperkube schedule --nodes nodes.yaml --pods pods.yaml``: place pods without a cluster.

Reads Node objects and Pod objects (multi-document YAML or ``kind: List``; ``-`` reads stdin),
runs the embedded scheduler engine (:mod:`hyperkube.scheduler`, the daemon's profile and
weights; ``--config`` for a KubeSchedulerConfiguration) and prints one row per pod: ``NAMESPACE``,
``POD`` and ``NODE``, or the FitError message for a pod that fits nowhere. Pods that already
have ``spec.nodeName`` in ``--pods`` are scheduled too (NodeName filter); pass running pods with
``--running`` to count them on their nodes first. Exit status 0 when every pod was placed, 1
otherwise, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    with open(path) as f:
        return f.read()


def run(args: argparse.Namespace) -> int:
    from hyperkube.scheduler import Cluster, SpecError, load_objects

    try:
        config: Any = yaml.safe_load(_read(args.config)) if args.config else None
        nodes = load_objects(_read(args.nodes))
        pods = load_objects(_read(args.pods))
        running = load_objects(_read(args.running)) if args.running else []
        cluster = Cluster(nodes, running, config=config, seed=args.seed)
        results = cluster.place(pods)
    except (OSError, yaml.YAMLError, SpecError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.output == "json":
        print(json.dumps([{"pod": r.pod, "node": r.node, "message": r.message} for r in results], indent=2))
    else:
        rows: list[tuple[str, str, str]] = [("NAMESPACE", "POD", "NODE")]
        for r in results:
            ns, _, name = r.pod.partition("/")
            rows.append((ns, name, r.node if r.node else f"<none>  {r.message}"))
        w0 = max(len(row[0]) for row in rows)
        w1 = max(len(row[1]) for row in rows)
        for row in rows:
            print(f"{row[0]:<{w0}}   {row[1]:<{w1}}   {row[2]}".rstrip())
    return 0 if all(r.node for r in results) else 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "schedule",
        help="place pods on nodes from YAML files with the embedded scheduler (no cluster needed)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--nodes", required=True, metavar="FILE", help="Node objects (YAML; - for stdin)")
    p.add_argument("--pods", required=True, metavar="FILE", help="Pod objects to place, in order (YAML)")
    p.add_argument("--running", metavar="FILE", help="pods already running (with spec.nodeName)")
    p.add_argument("--config", metavar="FILE", help="KubeSchedulerConfiguration YAML (weights, plugin args)")
    p.add_argument("--seed", type=int, default=None, help="seed for the random tie-break")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")
    p.set_defaults(func=run)
