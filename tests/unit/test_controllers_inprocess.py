"""Controllers run in-process against the fake API server: slow-start batches and failure
reporting of the ReplicaSet controller, rate-limited and disruption-aware tainting of the node
lifecycle controller."""

from __future__ import annotations

import asyncio
import time

from hyperkube.client import EVENTS, NODES, PODS, REPLICASETS, Client, SharedInformerFactory
from hyperkube.controllers.base import ControllerContext, Options
from hyperkube.controllers.nodelifecycle import NodeLifecycleController
from hyperkube.controllers.replicaset import ReplicaSetController
from tests.unit import conftest_client
from tests.unit.conftest_client import FakeApiServer, eventually

fake_api = conftest_client.fake_api  # the shared fixtures
fake_client = conftest_client.fake_client


def rs(name: str, replicas: int) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "default", "generation": 1},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        },
    }


async def start(ctrl, ctx: ControllerContext) -> asyncio.Task:
    ctx.factory.start()
    await ctx.factory.wait_for_sync(5)
    return asyncio.create_task(ctrl.run())


async def stop(task: asyncio.Task, ctx: ControllerContext) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await ctx.factory.stop()
    await ctx.close()


async def test_replicaset_slow_start_stops_at_first_failure(
    fake_client: Client, fake_api: FakeApiServer
) -> None:
    ctx = ControllerContext(fake_client, SharedInformerFactory(fake_client), Options(concurrent_syncs=1))
    ctrl = ReplicaSetController(ctx)
    # pod creates fail: the controller must try one pod, not 10, then report the failure
    await fake_client.create(REPLICASETS, rs("web", 10))
    fake_api.fail_next(403, "Forbidden", method="POST", times=1000)
    task = await start(ctrl, ctx)
    try:

        async def failed() -> bool:
            st = (await fake_client.get(REPLICASETS, "web", "default")).get("status") or {}
            return any(
                c["type"] == "ReplicaFailure" and c["reason"] == "FailedCreate"
                for c in st.get("conditions") or ()
            )

        await eventually(failed, 5)
        await asyncio.sleep(0.2)  # a few retries with backoff
        posts = [r for r in fake_api.requests if r[0] == "POST" and r[1].endswith("/pods")]
        assert 1 <= len(posts) == ctrl.errors  # slow start: each failing sync tried one pod, not 10
        fake_api.failures.clear()
        # after the failure, retries create all 10, in batches 1, 2, 4, 3 and no more
        await eventually(lambda: len(fake_api.objects.get(("", "pods"), {})) == 10, 10)
        await asyncio.sleep(0.3)
        assert len(fake_api.objects[("", "pods")]) == 10
        await eventually(lambda: _no_failure(fake_client), 5)

        async def counted() -> bool:
            st = (await fake_client.get(REPLICASETS, "web", "default"))["status"]
            return st["replicas"] == 10 and st["observedGeneration"] == 1

        await eventually(counted, 5)
        await ctx.recorder("replicaset-controller").flush()
        reasons = [e["reason"] for e in (await fake_client.list(EVENTS, "default"))["items"]]
        assert reasons.count("SuccessfulCreate") == 10  # (FailedCreate events failed to POST too)
        # scale down: the least useful (unscheduled) pods go first
        pods = list(fake_api.objects[("", "pods")].values())
        for p in pods[:7]:
            p2 = dict(p, spec=dict(p["spec"], nodeName="n1"))
            fake_api.put("", "pods", p2)
        await fake_client.patch(REPLICASETS, "web", {"spec": {"replicas": 7}}, "default")
        await eventually(lambda: len(fake_api.objects[("", "pods")]) == 7, 5)
        assert all(p["spec"].get("nodeName") == "n1" for p in fake_api.objects[("", "pods")].values())
    finally:
        await stop(task, ctx)


async def _no_failure(c: Client) -> bool:
    st = (await c.get(REPLICASETS, "web", "default")).get("status") or {}
    return not any(x["type"] == "ReplicaFailure" for x in st.get("conditions") or ())


def node(name: str, zone: str = "z1") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}},
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-01-01T00:00:00Z"}]
        },
    }


async def lifecycle(fake_client: Client, n: int, **opts) -> tuple[NodeLifecycleController, ControllerContext]:
    for i in range(n):
        await fake_client.create(NODES, node(f"n{i}"))
    ctx = ControllerContext(
        fake_client,
        SharedInformerFactory(fake_client),
        Options(node_monitor_grace_period=5, node_startup_grace_period=5, node_monitor_period=0.2, **opts),
    )
    ctrl = NodeLifecycleController(ctx)
    ctx.factory.start()
    await ctx.factory.wait_for_sync(5)
    for i in range(n):
        ctrl._touch(f"n{i}")
    return ctrl, ctx


def silence(ctrl: NodeLifecycleController, *names: str) -> None:
    for n in names:
        ctrl.probe[n] = time.monotonic() - 60


async def noexec(fake_client: Client, name: str) -> bool:
    n = await fake_client.get(NODES, name)
    return any(t["effect"] == "NoExecute" for t in (n.get("spec") or {}).get("taints") or ())


async def test_noexecute_taints_are_rate_limited_per_zone(
    fake_client: Client, fake_api: FakeApiServer
) -> None:
    ctrl, ctx = await lifecycle(fake_client, 10, node_eviction_rate=0.1)
    try:
        silence(ctrl, "n0", "n1")
        await ctrl.monitor_once()
        await eventually(
            lambda: ctrl.node_informer.get("n0")["status"]["conditions"][0]["status"] == "Unknown", 5
        )
        await ctrl.monitor_once()
        tainted = [n for n in ("n0", "n1") if await noexec(fake_client, n)]
        assert len(tainted) == 1  # burst 1, then 0.1 node/s: the second waits ~10 s
        other = await fake_client.get(NODES, "n1" if tainted == ["n0"] else "n0")
        assert ("node.kubernetes.io/unreachable", "NoSchedule") in {
            (t["key"], t["effect"]) for t in other["spec"]["taints"]
        }
        assert ctrl.zone_states
        assert set(ctrl.zone_states.values()) == {"Normal"}
    finally:
        await ctx.factory.stop()
        await ctx.close()


async def test_partial_and_full_disruption_stop_evictions(
    fake_client: Client, fake_api: FakeApiServer
) -> None:
    ctrl, ctx = await lifecycle(fake_client, 5, node_eviction_rate=100)
    try:
        silence(ctrl, "n0", "n1", "n2", "n3")  # 4 of 5 down in a small zone: PartialDisruption, rate 0
        await ctrl.monitor_once()
        await asyncio.sleep(0.2)
        await ctrl.monitor_once()
        assert set(ctrl.zone_states.values()) == {"PartialDisruption"}
        assert not [n for n in ("n0", "n1", "n2", "n3") if await noexec(fake_client, n)]
        silence(ctrl, "n4")  # everything down: FullDisruption everywhere, no NoExecute taints
        await ctrl.monitor_once()
        await asyncio.sleep(0.2)
        await ctrl.monitor_once()
        assert set(ctrl.zone_states.values()) == {"FullDisruption"}
        assert not [n for n in ("n0", "n1", "n2", "n3", "n4") if await noexec(fake_client, n)]
    finally:
        await ctx.factory.stop()
        await ctx.close()


async def test_pod_evicted_after_toleration(fake_client: Client, fake_api: FakeApiServer) -> None:
    ctrl, ctx = await lifecycle(fake_client, 3, node_eviction_rate=100)
    tol = [
        {
            "key": "node.kubernetes.io/unreachable",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 1,
        }
    ]
    for name, tols in (("short", tol), ("forever", [{"operator": "Exists"}])):
        await fake_client.create(
            PODS,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"nodeName": "n0", "tolerations": tols, "containers": []},
            },
        )
    task = asyncio.create_task(ctrl.run())
    try:
        silence(ctrl, "n0")
        await eventually(lambda: noexec(fake_client, "n0"), 10)
        await eventually(lambda: ("default", "short") not in fake_api.objects[("", "pods")], 10)
        assert ("default", "forever") in fake_api.objects[("", "pods")]
        assert ctrl.evictions == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await ctx.factory.stop()
        await ctx.close()


async def test_podgc_force_deletes_orphans_and_unscheduled_terminating(
    fake_client: Client, fake_api: FakeApiServer
) -> None:
    from hyperkube.controllers.podgc import PodGCController

    await fake_client.create(NODES, node("alive"))
    for name, node_name in (("on-alive", "alive"), ("on-gone", "gone"), ("unsched-term", "")):
        await fake_client.create(
            PODS,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"nodeName": node_name, "containers": []},
            },
        )
    fake_api.put(
        "",
        "pods",
        dict(
            fake_api.objects[("", "pods")][("default", "unsched-term")],
            metadata=dict(
                fake_api.objects[("", "pods")][("default", "unsched-term")]["metadata"],
                deletionTimestamp="2026-01-01T00:00:00Z",
            ),
        ),
    )
    for i in range(4):
        await fake_client.create(
            PODS,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"done-{i}",
                    "namespace": "default",
                    "creationTimestamp": f"2026-01-0{i + 1}T00:00:00Z",
                },
                "spec": {"nodeName": "alive", "containers": []},
                "status": {"phase": "Succeeded"},
            },
        )
    ctx = ControllerContext(
        fake_client,
        SharedInformerFactory(fake_client),
        Options(pod_gc_quarantine=0.0, terminated_pod_gc_threshold=2),
    )
    gc = PodGCController(ctx)
    ctx.factory.start()
    await ctx.factory.wait_for_sync(5)
    try:
        await gc.gc_once()
        left = {name for (_, name) in fake_api.objects[("", "pods")]}
        assert "on-alive" in left and "on-gone" not in left and "unsched-term" not in left
        assert len([n for n in left if n.startswith("done-")]) == 2
    finally:
        await ctx.factory.stop()
        await ctx.close()


async def test_node_reporting_not_ready_gets_not_ready_taints(
    fake_client: Client, fake_api: FakeApiServer
) -> None:
    ctrl, ctx = await lifecycle(fake_client, 3, node_eviction_rate=100)
    try:
        n = await fake_client.get(NODES, "n1")
        n["status"]["conditions"][0].update(status="False", reason="KubeletNotReady")
        await fake_client.update(NODES, n, subresource="status")
        await eventually(
            lambda: ctrl.node_informer.get("n1")["status"]["conditions"][0]["status"] == "False", 5
        )
        await ctrl.monitor_once()
        taints = {(t["key"], t["effect"]) for t in (await fake_client.get(NODES, "n1"))["spec"]["taints"]}
        assert taints == {
            ("node.kubernetes.io/not-ready", "NoExecute"),
            ("node.kubernetes.io/not-ready", "NoSchedule"),
        }
    finally:
        await ctx.factory.stop()
        await ctx.close()
