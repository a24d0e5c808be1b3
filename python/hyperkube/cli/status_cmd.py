"""``hyperkube status``: the cluster on one screen.

Components' health (the componentstatuses the API server computes), nodes (Ready / NotReady /
cordoned, hollow or real), pods by phase and by node, Deployments not yet at their desired
replicas, and the scheduler's throughput read from its ``/metrics`` when it serves them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
from collections import Counter

import aiohttp

from hyperkube.client import DEPLOYMENTS, NODES, PODS, Client
from hyperkube.client.resources import COMPONENTSTATUSES


def _ready(node: dict) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (node.get("status") or {}).get("conditions") or []
    )


async def _scheduler_rate(url: str) -> str | None:
    """Pods scheduled per second over one second, from the scheduler's Prometheus counters."""

    async def total(session: aiohttp.ClientSession) -> float:
        async with session.get(url) as r:
            text = await r.text()
        n = 0.0
        for m in re.finditer(
            r'^scheduler_schedule_attempts_total\{[^}]*result="scheduled"[^}]*\}\s+([0-9.e+]+)', text, re.M
        ):
            n += float(m.group(1))
        return n

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as s:
            a = await total(s)
            await asyncio.sleep(1)
            b = await total(s)
    except (aiohttp.ClientError, OSError, TimeoutError):
        return None
    return f"{b - a:.0f} pods/s now, {b:.0f} scheduled in total"


async def status(kubeconfig: str | None, scheduler_metrics: str) -> str:
    lines: list[str] = []
    async with Client.from_kubeconfig(kubeconfig) as c:
        cs, nodes, pods, deps = await asyncio.gather(
            c.list(COMPONENTSTATUSES), c.list(NODES), c.list(PODS), c.list(DEPLOYMENTS)
        )
        lines.append(f"API server     {c.base_url}")
    lines.append("Components")
    for item in cs.get("items") or []:
        cond = (item.get("conditions") or [{}])[0]
        health = "Healthy" if cond.get("status") == "True" else "Unhealthy"
        detail = cond.get("error") or cond.get("message") or ""
        lines.append(f"  {item['metadata']['name']:<20} {health:<10} {detail}")
    node_items = nodes.get("items") or []
    ready = sum(1 for n in node_items if _ready(n))
    cordoned = sum(1 for n in node_items if (n.get("spec") or {}).get("unschedulable"))
    hollow = sum(
        1 for n in node_items if (n["metadata"].get("labels") or {}).get("hyperkube.io/hollow") == "true"
    )
    lines.append(
        f"Nodes          {len(node_items)} total, {ready} Ready, {len(node_items) - ready} NotReady, "
        f"{cordoned} cordoned ({hollow} hollow)"
    )
    for n in sorted((n for n in node_items if not _ready(n)), key=lambda n: n["metadata"]["name"])[:5]:
        lines.append(f"  NotReady: {n['metadata']['name']}")
    pod_items = pods.get("items") or []
    phases = Counter((p.get("status") or {}).get("phase") or "Pending" for p in pod_items)
    unscheduled = sum(1 for p in pod_items if not (p.get("spec") or {}).get("nodeName"))
    by_phase = ", ".join(f"{k} {v}" for k, v in sorted(phases.items())) or "none"
    lines.append(f"Pods           {len(pod_items)} total: {by_phase}; {unscheduled} not scheduled")
    dep_items = deps.get("items") or []
    behind = [
        d
        for d in dep_items
        if (d.get("status") or {}).get("availableReplicas", 0) < (d.get("spec") or {}).get("replicas", 1)
    ]
    lines.append(f"Deployments    {len(dep_items)} total, {len(behind)} not fully available")
    for d in behind[:5]:
        st = d.get("status") or {}
        lines.append(
            f"  {d['metadata']['namespace']}/{d['metadata']['name']}: "
            f"{st.get('availableReplicas', 0)}/{d['spec'].get('replicas', 1)} available"
        )
    rate = await _scheduler_rate(scheduler_metrics)
    lines.append(f"Scheduler      {rate or 'metrics not reachable at ' + scheduler_metrics}")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    kubeconfig = args.kubeconfig or os.environ.get("KUBECONFIG") or None
    if kubeconfig is None and os.path.exists(os.path.join(args.data_dir, "kubeconfig")):
        kubeconfig = os.path.join(args.data_dir, "kubeconfig")
    print(asyncio.run(status(kubeconfig, args.scheduler_metrics)), end="")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "status", help="the cluster on one screen: components, nodes, pods, scheduler throughput"
    )
    p.add_argument("--kubeconfig", default=None)
    p.add_argument("--data-dir", default=".hyperkube", help="used to find the kubeconfig when none is given")
    p.add_argument("--scheduler-metrics", default="http://127.0.0.1:10259/metrics")
    p.set_defaults(func=run)
