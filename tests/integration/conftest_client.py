"""Helpers for the controller integration tests: a controller-manager subprocess and a simulated
node fleet (scheduler + kubelets as API objects) driven from the test.

:class:`ControllerManagerProcess` runs the real ``hyperkube controller-manager`` against the
``apiserver`` fixture's kubeconfig with short timings. :class:`SimNodes` plays what the real
scheduler and kubelets would do, through the API only: it registers Nodes (Ready) with Leases in
``kube-node-lease`` renewed every 0.5 s, binds pending pods to live untainted nodes, reports
bound pods Running and Ready with an IP, and removes terminating pods (grace 0) as a kubelet
does once their containers stopped. ``kill(node)`` makes a node silent: no lease renewals, its
pods left as they are.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hyperkube.client import (
    LEASES,
    NODES,
    PODS,
    AlreadyExists,
    ApiError,
    Client,
    NotFound,
    SharedInformer,
    WorkQueue,
    run_worker,
)
from hyperkube.client.timeutil import micro_time, rfc3339

FAST_FLAGS = [
    "--node-monitor-period",
    "0.5s",
    "--node-monitor-grace-period",
    "3s",
    "--node-startup-grace-period",
    "5s",
    "--leader-elect-lease-duration",
    "3s",
    "--leader-elect-renew-deadline",
    "2s",
    "--leader-elect-retry-period",
    "0.5s",
    "--node-eviction-rate",
    "10",
]


class ControllerManagerProcess:
    def __init__(self, kubeconfig: str, log_dir: str, extra: list[str] | None = None):
        self.kubeconfig = kubeconfig
        self.log_path = str(Path(log_dir) / f"controller-manager-{time.monotonic_ns()}.log")
        self.extra = extra or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.health_url = ""

    def start(self) -> ControllerManagerProcess:
        cmd = [
            sys.executable,
            "-m",
            "hyperkube.cli.main",
            "controller-manager",
            "--kubeconfig",
            self.kubeconfig,
            "--secure-port",
            "0",
            *FAST_FLAGS,
            *self.extra,
        ]
        env = dict(os.environ, HYPERKUBE_LOG=os.environ.get("HYPERKUBE_LOG", "INFO"))
        with open(self.log_path, "wb") as f:
            self.proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"controller-manager exited:\n{self.log()}")
            for line in self.log().splitlines():
                if "/healthz and /metrics on " in line:
                    self.health_url = line.rsplit(" ", 1)[-1]
                    return self
            time.sleep(0.05)
        raise RuntimeError(f"controller-manager did not start:\n{self.log()}")

    def log(self) -> str:
        try:
            return Path(self.log_path).read_text()
        except OSError:
            return ""

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def node_object(name: str, zone: str = "") -> dict[str, Any]:
    now = rfc3339()
    labels = {"kubernetes.io/hostname": name}
    if zone:
        labels["topology.kubernetes.io/zone"] = zone
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "status": {
            "capacity": {"cpu": "64", "memory": "256Gi", "pods": "500"},
            "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "500"},
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
            ],
        },
    }


class SimNodes:
    """Scheduler + kubelets for tests, through the API server only."""

    def __init__(
        self, client: Client, names: list[str], *, ready_delay: float = 0.0, namespace: str | None = None
    ):
        self.client = client
        self.names = list(names)
        self.alive = set(names)
        self.ready_delay = ready_delay
        self.namespace = namespace
        self.pods = SharedInformer(client, PODS, namespace=namespace)
        self.queue = WorkQueue("sim")
        self.tasks: list[asyncio.Task] = []
        self._ip = itertools.count(2)
        self.pods.add_event_handler(self._enqueue, lambda o, n: self._enqueue(n), None)

    def _enqueue(self, pod: dict) -> None:
        self.queue.add((pod["metadata"]["namespace"], pod["metadata"]["name"]))

    async def start(self) -> SimNodes:
        for n in self.names:
            await self.add_node(n)
        self.pods.start()
        await self.pods.wait_for_sync(10)
        self.tasks.append(asyncio.create_task(self._renew()))
        self.tasks += [asyncio.create_task(run_worker(self.queue, self._sync)) for _ in range(4)]
        return self

    async def add_node(self, name: str) -> None:
        try:
            await self.client.create(NODES, node_object(name))
        except AlreadyExists:
            pass
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro_time()},
        }
        try:
            await self.client.create(LEASES, lease, "kube-node-lease")
        except AlreadyExists:
            pass
        if name not in self.names:
            self.names.append(name)
        self.alive.add(name)

    def kill(self, name: str) -> None:
        self.alive.discard(name)

    async def stop(self) -> None:
        self.queue.shut_down()
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.pods.stop()

    async def _renew(self) -> None:
        while True:
            for n in list(self.alive):
                try:
                    await self.client.patch(
                        LEASES, n, {"spec": {"renewTime": micro_time()}}, "kube-node-lease"
                    )
                except ApiError:
                    pass
            await asyncio.sleep(0.5)

    def _pick_node(self) -> str | None:
        counts = {n: 0 for n in self.alive}
        for p in self.pods.list():
            n = (p.get("spec") or {}).get("nodeName")
            if n in counts:
                counts[n] += 1
        return min(sorted(counts), key=lambda n: counts[n]) if counts else None

    async def _sync(self, key: tuple[str, str]) -> float | None:
        ns, name = key
        pod = self.pods.get(name, ns)
        if pod is None:
            return None
        node = (pod.get("spec") or {}).get("nodeName")
        if pod["metadata"].get("deletionTimestamp"):
            if not node or node in self.alive:
                try:
                    await self.client.delete(PODS, name, ns, grace_period_seconds=0)
                except NotFound:
                    pass
            return None
        if not node:
            target = self._pick_node()
            if target is None:
                return 0.2
            node_obj = await self.client.get(NODES, target)
            if any(
                t.get("effect") in ("NoSchedule", "NoExecute")
                for t in (node_obj.get("spec") or {}).get("taints") or ()
            ):
                return 0.2
            try:
                await self.client.bind(ns, name, target)
            except (ApiError, NotFound):
                return None
            return None
        if node not in self.alive:
            return None
        status = pod.get("status") or {}
        if status.get("phase") == "Running":
            return None
        if self.ready_delay:
            await asyncio.sleep(self.ready_delay)
        now = rfc3339()
        conds = [
            {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
            for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
        ]
        ip = next(self._ip)
        new_status = {
            "phase": "Running",
            "conditions": conds,
            "hostIP": "10.0.0.1",
            "podIP": f"10.244.{ip // 250}.{ip % 250 + 1}",
            "podIPs": [{"ip": f"10.244.{ip // 250}.{ip % 250 + 1}"}],
            "startTime": now,
            "containerStatuses": [
                {
                    "name": c["name"],
                    "ready": True,
                    "restartCount": 0,
                    "image": c.get("image", ""),
                    "imageID": "",
                    "started": True,
                    "state": {"running": {"startedAt": now}},
                }
                for c in (pod.get("spec") or {}).get("containers") or ()
            ],
        }
        try:
            await self.client.update(PODS, dict(pod, status=new_status), ns, subresource="status")
        except ApiError:
            return 0.05
        return None


async def eventually(pred: Any, timeout: float = 30.0, interval: float = 0.1, what: str = "") -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while True:
        last = pred()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if loop.time() > deadline:
            raise AssertionError(f"{what or 'condition'} not met within {timeout}s (last: {last!r})")
        await asyncio.sleep(interval)
