"""Node lifecycle, node IPAM, service accounts, namespaces, endpoints and the garbage collector
against a real API server and controller-manager process (short node-monitor timings)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from hyperkube.client import (
    DEPLOYMENTS,
    ENDPOINTS,
    ENDPOINTSLICES,
    EVENTS,
    NAMESPACES,
    NODES,
    PODS,
    REPLICASETS,
    SERVICEACCOUNTS,
    SERVICES,
    Client,
    NotFound,
)
from tests.integration.conftest_client import ControllerManagerProcess, SimNodes, eventually
from tests.integration.test_controllers_deployment import _avail, deployment


@pytest.fixture(scope="module")
def cm(shared_apiserver) -> Iterator[ControllerManagerProcess]:
    p = ControllerManagerProcess(shared_apiserver.kubeconfig, shared_apiserver.data_dir).start()
    yield p
    p.stop()


@pytest.fixture
async def client(shared_apiserver) -> AsyncIterator[Client]:
    c = Client.from_kubeconfig(shared_apiserver.kubeconfig)
    yield c
    await c.close()


async def new_ns(client: Client, name: str) -> str:
    await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def taints(node: dict) -> set[tuple[str, str]]:
    return {(t["key"], t["effect"]) for t in (node.get("spec") or {}).get("taints") or ()}


async def test_silent_node_goes_unknown_tainted_and_its_pods_move(cm, client: Client) -> None:
    ns = await new_ns(client, "lifecycle")
    sim = await SimNodes(client, ["lc-a", "lc-b"], namespace=ns).start()
    try:
        dep = deployment("lc", replicas=4)
        # a short toleration for the unreachable taint (the default would be 300 s)
        dep["spec"]["template"]["spec"]["tolerations"] = [
            {
                "key": "node.kubernetes.io/unreachable",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 2,
            },
            {
                "key": "node.kubernetes.io/not-ready",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 2,
            },
        ]
        await client.create(DEPLOYMENTS, dep, ns)
        await eventually(lambda: _avail(client, ns, "lc", 4), 30, what="4 available")
        on_a = [
            p["metadata"]["name"]
            for p in (await client.list(PODS, ns))["items"]
            if p["spec"].get("nodeName") == "lc-a"
        ]
        assert on_a, "the simulated scheduler spreads pods over both nodes"
        # node IPAM gave both nodes a /24 from 10.244.0.0/16
        cidrs = {(await client.get(NODES, n))["spec"].get("podCIDR") for n in ("lc-a", "lc-b")}
        assert len(cidrs) == 2 and all(c and c.startswith("10.244.") and c.endswith("/24") for c in cidrs)

        sim.kill("lc-a")  # its lease stops being renewed

        async def unreachable() -> bool:
            node = await client.get(NODES, "lc-a")
            ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
            return ready["status"] == "Unknown" and ("node.kubernetes.io/unreachable", "NoExecute") in taints(
                node
            )

        await eventually(unreachable, 20, what="lc-a Unknown + unreachable taint")
        node = await client.get(NODES, "lc-a")
        assert ("node.kubernetes.io/unreachable", "NoSchedule") in taints(node)
        assert (
            next(c for c in node["status"]["conditions"] if c["type"] == "Ready")["reason"]
            == "NodeStatusUnknown"
        )
        assert taints(await client.get(NODES, "lc-b")) == set()

        async def moved() -> bool:
            pods = (await client.list(PODS, ns))["items"]
            live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
            evicted = [p for p in pods if p["metadata"]["name"] in on_a]
            return (
                all(p["metadata"].get("deletionTimestamp") for p in evicted)
                and len(live) == 4
                and all(p["spec"].get("nodeName") == "lc-b" for p in live)
                and await _avail(client, ns, "lc", 4)
            )

        await eventually(moved, 30, what="pods evicted from lc-a and replaced on lc-b")
        evs = {
            (e["reason"], e["involvedObject"]["name"])
            for e in (await client.list(EVENTS, "default"))["items"]
        }
        assert ("NodeNotReady", "lc-a") in evs

        # the node comes back: Ready again (the kubelet reports it), taints removed
        sim.alive.add("lc-a")
        node = await client.get(NODES, "lc-a")
        for c in node["status"]["conditions"]:
            if c["type"] == "Ready":
                c.update(status="True", reason="KubeletReady", lastHeartbeatTime=_now())
        await client.update(NODES, node, subresource="status")

        async def healed() -> bool:
            return taints(await client.get(NODES, "lc-a")) == set()

        await eventually(healed, 20, what="taints removed")
    finally:
        await sim.stop()


def _now() -> str:
    from hyperkube.client.timeutil import rfc3339

    return rfc3339()


async def test_service_endpoints_follow_pods(cm, client: Client) -> None:
    ns = await new_ns(client, "endpoints")
    sim = await SimNodes(client, ["ep-a"], namespace=ns).start()
    try:
        dep = deployment("api", replicas=2)
        dep["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"name": "http", "containerPort": 8080}]
        await client.create(DEPLOYMENTS, dep, ns)
        svc = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "api"},
            "spec": {
                "selector": {"app": "api"},
                "ports": [{"name": "web", "port": 80, "targetPort": "http"}],
            },
        }
        await client.create(SERVICES, svc, ns)

        async def two_ready() -> bool:
            try:
                ep = await client.get(ENDPOINTS, "api", ns)
            except NotFound:
                return False
            subsets = ep.get("subsets") or []
            return len(subsets) == 1 and len(subsets[0].get("addresses") or []) == 2

        await eventually(two_ready, 30, what="2 ready addresses")
        ep = await client.get(ENDPOINTS, "api", ns)
        assert ep["subsets"][0]["ports"] == [{"name": "web", "port": 8080, "protocol": "TCP"}]
        assert {a["targetRef"]["kind"] for a in ep["subsets"][0]["addresses"]} == {"Pod"}

        async def slice_with_two() -> dict | None:
            items = (await client.list(ENDPOINTSLICES, ns, label_selector="kubernetes.io/service-name=api"))[
                "items"
            ]
            return items[0] if len(items) == 1 and len(items[0].get("endpoints") or []) == 2 else None

        # the EndpointSlice controller works independently of the Endpoints one
        sl = await eventually(slice_with_two, 30, what="an EndpointSlice with 2 endpoints")
        assert sl["addressType"] == "IPv4" and sl["ports"] == [
            {"name": "web", "port": 8080, "protocol": "TCP"}
        ]
        assert len(sl["endpoints"]) == 2 and all(e["conditions"]["ready"] for e in sl["endpoints"])
        assert sl["metadata"]["ownerReferences"][0]["kind"] == "Service"

        # a pod turning unready moves to notReadyAddresses
        pod = next(
            p for p in (await client.list(PODS, ns))["items"] if not p["metadata"].get("deletionTimestamp")
        )
        for c in pod["status"]["conditions"]:
            if c["type"] == "Ready":
                c["status"] = "False"
        await client.update(PODS, pod, ns, subresource="status")

        async def one_not_ready() -> bool:
            ep = await client.get(ENDPOINTS, "api", ns)
            s = (ep.get("subsets") or [{}])[0]
            return len(s.get("addresses") or []) == 1 and len(s.get("notReadyAddresses") or []) == 1

        await eventually(one_not_ready, 10, what="not-ready address")

        # the default ServiceAccount exists in the new namespace
        assert (await client.get(SERVICEACCOUNTS, "default", ns))["metadata"]["name"] == "default"

        # deleting the Service removes its Endpoints; the GC removes its slices
        await client.delete(SERVICES, "api", ns)

        async def cleaned() -> bool:
            try:
                await client.get(ENDPOINTS, "api", ns)
                return False
            except NotFound:
                pass
            return not (
                await client.list(ENDPOINTSLICES, ns, label_selector="kubernetes.io/service-name=api")
            )["items"]

        await eventually(cleaned, 20, what="endpoints and slices removed")
    finally:
        await sim.stop()


async def test_namespace_deletion_and_cascading_gc(cm, client: Client) -> None:
    ns = await new_ns(client, "doomed")
    sim = await SimNodes(client, ["gc-a"], namespace=ns).start()
    try:
        await client.create(DEPLOYMENTS, deployment("a", replicas=2), ns)
        await client.create(DEPLOYMENTS, deployment("b", replicas=2), ns)
        await eventually(lambda: _avail(client, ns, "a", 2), 30, what="a available")
        await eventually(lambda: _avail(client, ns, "b", 2), 30, what="b available")
        # background cascade: deleting a Deployment removes its ReplicaSet and pods
        await client.delete(DEPLOYMENTS, "a", ns)

        async def a_gone() -> bool:
            rs = (await client.list(REPLICASETS, ns, label_selector="app=a"))["items"]
            pods = (await client.list(PODS, ns, label_selector="app=a"))["items"]
            return not rs and not pods

        await eventually(a_gone, 20, what="cascading delete of a")
        # orphan: the ReplicaSet of b stays, without its owner reference
        await client.delete(DEPLOYMENTS, "b", ns, propagation_policy="Orphan")

        async def b_orphaned() -> bool:
            try:
                await client.get(DEPLOYMENTS, "b", ns)
                return False
            except NotFound:
                pass
            rs = (await client.list(REPLICASETS, ns, label_selector="app=b"))["items"]
            return len(rs) == 1 and not rs[0]["metadata"].get("ownerReferences")

        await eventually(b_orphaned, 20, what="orphaned ReplicaSet")
        assert len((await client.list(PODS, ns, label_selector="app=b"))["items"]) == 2

        await client.delete(NAMESPACES, ns)

        async def ns_gone() -> bool:
            try:
                await client.get(NAMESPACES, ns)
                return False
            except NotFound:
                return (
                    not (await client.list(PODS, ns))["items"]
                    and not (await client.list(REPLICASETS, ns))["items"]
                )

        await eventually(ns_gone, 30, what="namespace emptied and removed")
    finally:
        await sim.stop()
