"""Issue 7's integration item at test size: 100 hollow nodes (``hyperkube kubelet --hollow``, one process,
as kubemark runs them) register and stay Ready, and a 1,000-replica Deployment reaches 1,000 Running pods
through the real API server, the real scheduler (``hyperkube scheduler``) and the real controller-manager
(Deployment -> ReplicaSet -> pods). The full size (1,000 nodes, 30,000 pods) is
``python -m benchmarks.kubelet --only cluster``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from hyperkube.client import DEPLOYMENTS, NODES, PODS, Client
from tests.integration.conftest import start_apiserver
from tests.integration.conftest_client import ControllerManagerProcess, eventually

NODES_N = 100
REPLICAS = 1000


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "hyperkube.cli.main", *args], stdout=f, stderr=subprocess.STDOUT
        )


def _ready(node: dict) -> bool:
    conds = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


async def test_hollow_nodes_run_a_deployment(tmp_path: Path) -> None:
    srv = start_apiserver(tmp_path / "api")
    procs: list[subprocess.Popen[bytes]] = []
    # upstream's node-monitor grace (40 s) against the hollow kubelets' 10 s lease renewals (the helper's
    # fast 3 s grace is for controllers tests whose simulated nodes renew every 0.5 s)
    cm = ControllerManagerProcess(srv.kubeconfig, str(tmp_path), extra=["--node-monitor-grace-period", "40s"])
    try:
        cm.start()
        procs.append(_spawn(["scheduler", "--kubeconfig", srv.kubeconfig, "--secure-port", "0",
                             "--leader-elect", "false"], tmp_path / "scheduler.log"))  # fmt: skip
        procs.append(_spawn(["kubelet", "--hollow", str(NODES_N), "--kubeconfig", srv.kubeconfig, "--data-dir",
                             str(tmp_path / "hollow"), "--quiet"], tmp_path / "hollow.log"))  # fmt: skip
        async with Client.from_kubeconfig(srv.kubeconfig) as c:

            async def nodes_ready() -> bool:
                items = (await c.list(NODES))["items"]
                return len(items) == NODES_N and all(_ready(n) for n in items)

            await eventually(nodes_ready, timeout=120, what=f"{NODES_N} hollow nodes Ready")
            deploy = {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "load", "namespace": "default"},
                "spec": {
                    "replicas": REPLICAS,
                    "selector": {"matchLabels": {"app": "load"}},
                    "template": {
                        "metadata": {"labels": {"app": "load"}},
                        "spec": {
                            "containers": [
                                {
                                    "name": "c",
                                    "image": "busybox",
                                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                                }
                            ]
                        },  # fmt: skip
                    },
                },
            }
            srv.kubectl("apply", "-f", "-", input=json.dumps(deploy))

            async def running() -> bool:
                pods = (await c.list(PODS, "default", label_selector="app=load"))["items"]
                return sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Running") == REPLICAS

            await eventually(running, timeout=300, interval=1, what=f"{REPLICAS} Running pods")
            pods = (await c.list(PODS, "default", label_selector="app=load"))["items"]
            assert len(pods) == REPLICAS
            by_node: dict[str, int] = {}
            for p in pods:
                node = p["spec"]["nodeName"]
                by_node[node] = by_node.get(node, 0) + 1
                assert p["status"]["podIP"]
            # the scheduler spread them over the fleet (every node, within its 110-pod capacity)
            assert len(by_node) == NODES_N and max(by_node.values()) <= 110, by_node
            # the nodes stayed Ready through the load, and the Deployment counts its pods available
            assert await nodes_ready(), [
                n["metadata"]["name"] for n in (await c.list(NODES))["items"] if not _ready(n)
            ]

            async def available() -> bool:
                d = await c.get(DEPLOYMENTS, "load", "default")
                return (d.get("status") or {}).get("availableReplicas") == REPLICAS

            await eventually(available, timeout=60, interval=0.5, what="availableReplicas == 1000")
    finally:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(5)
        cm.stop()
        srv.stop()
