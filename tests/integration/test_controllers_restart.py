"""Killing the controller-manager (SIGKILL) mid-rollout and starting a new one finishes the rollout
with no duplicate and no lost pods; the new process takes the leader Lease over."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator

import pytest

from hyperkube.client import DEPLOYMENTS, LEASES, NAMESPACES, PODS, REPLICASETS, Client
from tests.integration.conftest_client import ControllerManagerProcess, SimNodes, eventually
from tests.integration.test_controllers_deployment import BoundsChecker, _all_images, _avail, deployment


@pytest.fixture
async def client(apiserver) -> AsyncIterator[Client]:
    c = Client.from_kubeconfig(apiserver.kubeconfig)
    yield c
    await c.close()


async def test_kill_mid_rollout_and_restart(apiserver, client: Client) -> None:
    ns = "restart"
    await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    cm1 = ControllerManagerProcess(apiserver.kubeconfig, apiserver.data_dir).start()
    # slow kubelets: pods take a while to become ready, so the rollout is in flight when we kill
    sim = await SimNodes(client, ["r-a", "r-b"], namespace=ns, ready_delay=0.3).start()
    cm2 = None
    try:
        with urllib.request.urlopen(cm1.health_url + "/healthz", timeout=5) as r:
            assert r.read() == b"ok"
        await client.create(DEPLOYMENTS, deployment("r", replicas=8), ns)
        await eventually(lambda: _avail(client, ns, "r", 8), 40, what="initial rollout")
        with urllib.request.urlopen(cm1.health_url + "/metrics", timeout=5) as r:
            metrics = r.read().decode()
        assert 'workqueue_depth{name="replicaset"}' in metrics
        assert 'leader_election_master_status{name="kube-controller-manager"} 1' in metrics
        adds = next(
            ln for ln in metrics.splitlines() if ln.startswith('workqueue_adds_total{name="deployment"}')
        )
        assert int(adds.split()[-1]) > 0
        checker = BoundsChecker(client, ns, "r", 8, surge=2, unavailable=2)
        await checker.start()
        await client.patch(
            DEPLOYMENTS,
            "r",
            {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}}},
            ns,
            patch_type="strategic",
        )

        async def mid_rollout() -> bool:
            pods = (await client.list(PODS, ns))["items"]
            images = {
                p["spec"]["containers"][0]["image"]
                for p in pods
                if not p["metadata"].get("deletionTimestamp")
            }
            return images == {"busybox:1", "busybox:2"}

        await eventually(mid_rollout, 20, interval=0.02, what="rollout in progress")
        cm1.kill()
        before = await client.get(LEASES, "kube-controller-manager", "kube-system")
        cm2 = ControllerManagerProcess(apiserver.kubeconfig, apiserver.data_dir).start()

        async def new_leader() -> bool:
            lease = await client.get(LEASES, "kube-controller-manager", "kube-system")
            return lease["spec"]["holderIdentity"] != before["spec"]["holderIdentity"]

        await eventually(new_leader, 20, what="lease taken over")
        lease = await client.get(LEASES, "kube-controller-manager", "kube-system")
        assert lease["spec"]["leaseTransitions"] >= 1
        await eventually(lambda: _all_images(client, ns, "r", "busybox:2", 8), 60, what="rollout finished")
        await eventually(lambda: _avail(client, ns, "r", 8), 30, what="8 available")
        await asyncio.sleep(1.0)  # nothing more happens: no late duplicates
        await checker.stop()
        pods = (await client.list(PODS, ns))["items"]
        assert len(pods) == 8, [p["metadata"]["name"] for p in pods]
        rss = {rs["metadata"]["name"]: rs for rs in (await client.list(REPLICASETS, ns))["items"]}
        assert sorted(rs["spec"]["replicas"] for rs in rss.values()) == [0, 8]
        new_rs = next(rs for rs in rss.values() if rs["spec"]["replicas"] == 8)
        assert {p["metadata"]["ownerReferences"][0]["name"] for p in pods} == {new_rs["metadata"]["name"]}
        assert checker.violations == [], checker.violations[:5]
    finally:
        await sim.stop()
        cm1.stop()
        if cm2 is not None:
            cm2.stop()
