"""``hyperkube scheduler`` against a real ``hyperkube server``: informers, batch placement,
binding, PodScheduled/FailedScheduling, re-queue on cluster change, leader election, /healthz
and /metrics."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from hyperkube.client import EVENTS, LEASES, NODES, PODS, Client
from hyperkube.client.resources import PRIORITYCLASSES
from tests.integration.conftest import APIServerProcess


class SchedulerProcess:
    def __init__(self, srv: APIServerProcess, tmp: Path, *extra: str) -> None:
        self.log_path = tmp / f"scheduler-{time.monotonic_ns()}.log"
        self.logf = open(self.log_path, "wb")  # noqa: SIM115
        cmd = [
            sys.executable,
            "-m",
            "hyperkube.cli.main",
            "scheduler",
            "--kubeconfig",
            srv.kubeconfig,
            "--port",
            "0",
            *extra,
        ]
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        self.url = ""
        while time.monotonic() < deadline and not self.url:
            if self.proc.poll() is not None:
                raise RuntimeError(f"scheduler exited: {self.log()}")
            m = re.search(r"on (http://[0-9.:]+)", self.log())
            if m:
                self.url = m.group(1)
            time.sleep(0.1)
        assert self.url, self.log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.logf.close()


@pytest.fixture
def srv(apiserver: APIServerProcess) -> APIServerProcess:
    return apiserver


def node(
    name: str, cpu: str = "2", zone: str = "z1", taints: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": zone},
        },
        "spec": {"taints": taints or []},
        "status": {
            "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
        },
    }


def pod(name: str, cpu: str = "500m", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {
            "containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}],
            **spec,
        },
    }


async def wait_for(fn: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await fn()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"condition not met in {timeout}s (last: {last!r})")


async def test_schedules_binds_reports_and_requeues(srv: APIServerProcess, tmp_path: Path) -> None:
    sched = SchedulerProcess(srv, tmp_path, "--leader-elect", "false")
    client = Client.from_kubeconfig(srv.kubeconfig)
    try:
        for i in range(3):
            await client.create(
                NODES,
                node(
                    f"n{i}",
                    taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}] if i == 2 else None,
                ),
            )
        for i in range(6):
            await client.create(PODS, pod(f"web-{i}"), "default")

        async def all_bound() -> list[str] | None:
            pods = (await client.list(PODS, "default"))["items"]
            nodes = [p["spec"].get("nodeName") for p in pods if p["metadata"]["name"].startswith("web-")]
            return nodes if len(nodes) == 6 and all(nodes) else None

        nodes = await wait_for(all_bound)
        # 2 cpu per node, 500m each, the tainted node is out: 4 + 4 would fit; LeastAllocated spreads 3/3
        assert sorted(nodes) == ["n0"] * 3 + ["n1"] * 3
        p0 = await client.get(PODS, "web-0", "default")
        cond = [c for c in p0["status"]["conditions"] if c["type"] == "PodScheduled"]
        assert cond and cond[0]["status"] == "True"

        await client.create(PODS, pod("big", cpu="3"), "default")
        msg = (
            "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient cpu."
            " preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling,"
            " 2 No preemption victims found for incoming pod.."
        )

        async def unschedulable() -> dict[str, Any] | None:
            p = await client.get(PODS, "big", "default")
            for c in (p.get("status") or {}).get("conditions") or []:
                if c["type"] == "PodScheduled" and c["status"] == "False":
                    return c
            return None

        cond = await wait_for(unschedulable)
        assert cond["reason"] == "Unschedulable" and cond["message"] == msg

        async def failed_event() -> list[dict[str, Any]] | None:
            evs = (await client.list(EVENTS, "default"))["items"]
            return [
                e
                for e in evs
                if e.get("reason") == "FailedScheduling" and e["involvedObject"]["name"] == "big"
            ] or None

        ev = (await wait_for(failed_event))[0]
        assert ev["type"] == "Warning" and ev["message"] == msg

        # a new node that fits: the unschedulable pod is re-queued and bound
        await client.create(NODES, node("n3", cpu="4"))

        async def big_bound() -> str | None:
            return (await client.get(PODS, "big", "default"))["spec"].get("nodeName")

        assert await wait_for(big_bound) == "n3"

        # a pod pinned by nodeName elsewhere is left alone; one for another scheduler too
        await client.create(PODS, pod("other", schedulerName="someone-else"), "default")
        status, body = sched.get("/healthz")
        assert status == 200 and body == "ok"
        status, metrics = sched.get("/metrics")
        assert status == 200
        assert (
            'scheduler_schedule_attempts_total{profile="default-scheduler",result="scheduled"} 7' in metrics
        )
        assert re.search(
            r'scheduler_schedule_attempts_total\{profile="default-scheduler",result="unschedulable"\} [1-9]',
            metrics,
        )
        await asyncio.sleep(0.5)
        assert not (await client.get(PODS, "other", "default"))["spec"].get("nodeName")
    finally:
        await client.close()
        sched.stop()


async def test_two_schedulers_elect_one_leader(srv: APIServerProcess, tmp_path: Path) -> None:
    flags = (
        "--leader-elect",
        "true",
        "--leader-elect-lease-duration",
        "3s",
        "--leader-elect-renew-deadline",
        "2s",
        "--leader-elect-retry-period",
        "500ms",
    )
    a = SchedulerProcess(srv, tmp_path, *flags)
    b = SchedulerProcess(srv, tmp_path, *flags)
    client = Client.from_kubeconfig(srv.kubeconfig)
    try:
        await client.create(NODES, node("solo", cpu="8"))
        for i in range(5):
            await client.create(PODS, pod(f"p{i}"), "default")

        async def lease_holder() -> str | None:
            try:
                lease = await client.get(LEASES, "kube-scheduler", "kube-system")
            except Exception:  # noqa: BLE001
                return None
            return (lease.get("spec") or {}).get("holderIdentity")

        holder = await wait_for(lease_holder)
        assert holder

        async def bound() -> bool:
            pods = (await client.list(PODS, "default"))["items"]
            return all(p["spec"].get("nodeName") == "solo" for p in pods) and len(pods) == 5

        await wait_for(bound)
        ma, mb = a.get("/metrics")[1], b.get("/metrics")[1]
        leaders = [m for m in (ma, mb) if 'leader_election_master_status{name="kube-scheduler"} 1' in m]
        assert len(leaders) == 1
        total = sum(
            int(re.search(r'result="scheduled"\} (\d+)', m).group(1))  # type: ignore[union-attr]
            for m in (ma, mb)
        )
        assert total == 5
        # the leader goes away: the other one takes over and schedules new pods
        leader, follower = (a, b) if leaders[0] is ma else (b, a)
        leader.stop()
        await client.create(PODS, pod("after"), "default")

        async def after_bound() -> str | None:
            return (await client.get(PODS, "after", "default"))["spec"].get("nodeName")

        assert await wait_for(after_bound, timeout=30) == "solo"
        assert 'leader_election_master_status{name="kube-scheduler"} 1' in follower.get("/metrics")[1]
    finally:
        await client.close()
        a.stop()
        b.stop()


async def test_preemption(srv: APIServerProcess, tmp_path: Path) -> None:
    """DefaultPreemption: the lowest-priority victims go, nominatedNodeName is set and the pod binds
    there; preemptionPolicy Never and equal priority do not preempt."""
    sched = SchedulerProcess(srv, tmp_path, "--leader-elect", "false")
    client = Client.from_kubeconfig(srv.kubeconfig)
    try:
        await client.create(NODES, node("p0", cpu="2"))
        await client.create(NODES, node("p1", cpu="2"))
        for pc, value in (
            ("hk-sched-low", 1),
            ("hk-sched-mid", 5),
            ("hk-sched-high", 10),
            ("hk-sched-top", 100),
        ):
            body = {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": pc}}
            await client.create(PRIORITYCLASSES, {**body, "value": value})
        classes = {"low-0": "low", "low-1": "low", "mid-0": "mid", "mid-1": "mid"}
        for i, (name, pc) in enumerate(classes.items()):
            spec = {"priorityClassName": f"hk-sched-{pc}", "nodeName": f"p{i % 2}"}
            await client.create(PODS, pod(name, cpu="1", **spec), "default")

        async def fits_nowhere(name: str) -> str | None:
            p = await client.get(PODS, name, "default")
            for c in (p.get("status") or {}).get("conditions") or []:
                if c["type"] == "PodScheduled" and c["status"] == "False":
                    return str(c["message"])
            return None

        # equal priority (1 vs the lowest, 1) and preemptionPolicy Never: no victims
        await client.create(PODS, pod("equal", cpu="1", priorityClassName="hk-sched-low"), "default")
        await client.create(
            PODS, pod("never", cpu="1", priorityClassName="hk-sched-top", preemptionPolicy="Never"), "default"
        )
        base = "0/2 nodes are available: 2 Insufficient cpu."
        msg = await wait_for(lambda: fits_nowhere("equal"))
        assert (
            msg
            == f"{base} preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod.."
        )
        msg = await wait_for(lambda: fits_nowhere("never"))
        assert msg == f"{base} preemption: not eligible due to preemptionPolicy=Never.."
        await client.delete(PODS, "never", "default", grace_period_seconds=0)
        await client.delete(PODS, "equal", "default", grace_period_seconds=0)

        # priority 10: removing low-0 (priority 1) on p0 is enough; mid-* are kept
        await client.create(PODS, pod("high", cpu="1", priorityClassName="hk-sched-high"), "default")

        async def bound() -> str | None:
            return (await client.get(PODS, "high", "default"))["spec"].get("nodeName")

        assert await wait_for(bound) == "p0"
        high = await client.get(PODS, "high", "default")
        assert high["status"].get("nominatedNodeName") == "p0"
        left = {
            p["metadata"]["name"]
            for p in (await client.list(PODS, "default"))["items"]
            if not p["metadata"].get("deletionTimestamp")
        }
        assert left == {"low-1", "mid-0", "mid-1", "high"}

        async def preempted_event() -> list[dict[str, Any]] | None:
            evs = (await client.list(EVENTS, "default"))["items"]
            return [e for e in evs if e.get("reason") == "Preempted"] or None

        evs = await wait_for(preempted_event)
        assert [e["involvedObject"]["name"] for e in evs] == ["low-0"]
        assert evs[0]["message"] == f"Preempted by pod {high['metadata']['uid']} on node p0"
    finally:
        await client.close()
        sched.stop()
