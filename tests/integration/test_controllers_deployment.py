"""Deployments and ReplicaSets against a real API server and a real controller-manager process.

Nodes are API objects; the test plays scheduler and kubelets (SimNodes). One API server and one
controller-manager serve the whole module; each test works in its own namespace.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from hyperkube.client import DEPLOYMENTS, EVENTS, NAMESPACES, PODS, REPLICASETS, Client, NotFound
from tests.integration.conftest_client import ControllerManagerProcess, SimNodes, eventually


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


async def make_ns(client: Client, name: str) -> str:
    await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


@pytest.fixture
async def sim(client: Client, request) -> AsyncIterator[SimNodes]:
    ns = request.node.name.replace("_", "-")[:50].strip("-")
    await make_ns(client, ns)
    s = SimNodes(client, [f"{ns}-n1", f"{ns}-n2", f"{ns}-n3"], namespace=ns)
    await s.start()
    s.ns = ns  # type: ignore[attr-defined]
    yield s
    await s.stop()


def deployment(name: str, replicas: int = 5, image: str = "busybox:1", **spec) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}], "terminationGracePeriodSeconds": 0},
            },
            **spec,
        },
    }


async def ready_count(client: Client, ns: str, app: str) -> int:
    pods = (await client.list(PODS, ns, label_selector=f"app={app}"))["items"]
    return sum(
        1
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in (p.get("status") or {}).get("conditions") or ()
        )
    )


async def dep_status(client: Client, ns: str, name: str) -> dict:
    return (await client.get(DEPLOYMENTS, name, ns)).get("status") or {}


async def test_deployment_of_5_becomes_ready(cm, client: Client, sim: SimNodes, shared_apiserver) -> None:
    ns = sim.ns  # type: ignore[attr-defined]
    await client.create(DEPLOYMENTS, deployment("web"), ns)

    async def done() -> bool:
        st = await dep_status(client, ns, "web")
        return (
            st.get("readyReplicas") == 5
            and st.get("availableReplicas") == 5
            and st.get("updatedReplicas") == 5
        )

    await eventually(done, 30, what="5 ready replicas")
    assert await ready_count(client, ns, "web") == 5
    rss = (await client.list(REPLICASETS, ns))["items"]
    assert len(rss) == 1
    rs = rss[0]
    h = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"web-{h}"
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    assert rs["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    assert rs["status"]["availableReplicas"] == 5 and rs["status"]["observedGeneration"] >= 1
    pods = (await client.list(PODS, ns))["items"]
    assert {p["metadata"]["ownerReferences"][0]["uid"] for p in pods} == {rs["metadata"]["uid"]}
    assert all(p["metadata"]["labels"]["pod-template-hash"] == h for p in pods)
    st = await dep_status(client, ns, "web")
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Available"]["status"] == "True"
    assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"
    out = await asyncio.to_thread(
        shared_apiserver.kubectl, "-n", ns, "rollout", "status", "deployment/web", "--timeout=20s"
    )
    assert "successfully rolled out" in out.stdout

    async def events() -> set:
        return {(e["reason"], e["involvedObject"]["kind"]) for e in (await client.list(EVENTS, ns))["items"]}

    await eventually(lambda: events_ok(events), 10, what="events")


async def events_ok(events) -> bool:
    got = await events()
    return ("ScalingReplicaSet", "Deployment") in got and ("SuccessfulCreate", "ReplicaSet") in got


class BoundsChecker:
    """Checks maxSurge / maxUnavailable on every pod watch event."""

    def __init__(self, client: Client, ns: str, app: str, replicas: int, surge: int, unavailable: int):
        self.client, self.ns, self.app = client, ns, app
        self.max_total = replicas + surge
        self.min_ready = replicas - unavailable
        self.pods: dict[str, dict] = {}
        self.violations: list[str] = []
        self.events = 0
        self.max_seen = 0
        self.min_ready_seen = 10**9
        self.task: asyncio.Task | None = None

    def _check(self) -> None:
        active = [p for p in self.pods.values() if not p["metadata"].get("deletionTimestamp")]
        ready = sum(
            1
            for p in active
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in (p.get("status") or {}).get("conditions") or ()
            )
        )
        self.max_seen = max(self.max_seen, len(active))
        self.min_ready_seen = min(self.min_ready_seen, ready)
        if len(active) > self.max_total:
            self.violations.append(f"{len(active)} pods > {self.max_total}")
        if ready < self.min_ready:
            self.violations.append(f"{ready} ready < {self.min_ready}")

    async def start(self) -> None:
        lst = await self.client.list(PODS, self.ns, label_selector=f"app={self.app}")
        for p in lst["items"]:
            self.pods[p["metadata"]["name"]] = p
        self._check()
        rv = lst["metadata"]["resourceVersion"]

        async def run() -> None:
            async for ev in self.client.watch(
                PODS, self.ns, resource_version=rv, label_selector=f"app={self.app}"
            ):
                if ev.type == "BOOKMARK":
                    continue
                self.events += 1
                if ev.type == "DELETED":
                    self.pods.pop(ev.object["metadata"]["name"], None)
                else:
                    self.pods[ev.object["metadata"]["name"]] = ev.object
                self._check()

        self.task = asyncio.create_task(run())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


async def test_rolling_update_respects_bounds_then_rollback(
    cm, client: Client, sim: SimNodes, shared_apiserver
) -> None:
    ns = sim.ns  # type: ignore[attr-defined]
    await client.create(DEPLOYMENTS, deployment("roll"), ns)
    await eventually(lambda: _avail(client, ns, "roll", 5), 30, what="initial rollout")
    first_rs = (await client.list(REPLICASETS, ns))["items"][0]["metadata"]["name"]
    checker = BoundsChecker(
        client, ns, "roll", 5, surge=2, unavailable=1
    )  # 25% of 5: surge ceil 2, unavailable floor 1
    await checker.start()
    await asyncio.to_thread(
        shared_apiserver.kubectl, "-n", ns, "set", "image", "deployment/roll", "c=busybox:2"
    )
    out = await asyncio.to_thread(
        shared_apiserver.kubectl,
        "-n",
        ns,
        "rollout",
        "status",
        "deployment/roll",
        "--timeout=60s",
        timeout=70,
    )
    assert "successfully rolled out" in out.stdout
    await eventually(
        lambda: _all_images(client, ns, "roll", "busybox:2", 5), 20, what="all pods on busybox:2"
    )
    await checker.stop()
    assert checker.events > 10  # the rollout was actually observed
    assert checker.violations == [], checker.violations[:5]
    assert checker.max_seen > 5  # surge was used
    dep = await client.get(DEPLOYMENTS, "roll", ns)
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    hist = await asyncio.to_thread(
        shared_apiserver.kubectl, "-n", ns, "rollout", "history", "deployment/roll"
    )
    assert "1" in hist.stdout and "2" in hist.stdout

    # rollback: kubectl copies the old ReplicaSet's template back; that ReplicaSet becomes new again
    checker = BoundsChecker(client, ns, "roll", 5, surge=2, unavailable=1)
    await checker.start()
    await asyncio.to_thread(shared_apiserver.kubectl, "-n", ns, "rollout", "undo", "deployment/roll")
    out = await asyncio.to_thread(
        shared_apiserver.kubectl,
        "-n",
        ns,
        "rollout",
        "status",
        "deployment/roll",
        "--timeout=60s",
        timeout=70,
    )
    assert "successfully rolled out" in out.stdout
    await eventually(
        lambda: _all_images(client, ns, "roll", "busybox:1", 5), 20, what="all pods back on busybox:1"
    )
    await checker.stop()
    assert checker.violations == [], checker.violations[:5]
    dep = await client.get(DEPLOYMENTS, "roll", ns)
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1"
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    rs = await client.get(REPLICASETS, first_rs, ns)
    assert (
        rs["spec"]["replicas"] == 5
        and rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    )
    assert len((await client.list(REPLICASETS, ns))["items"]) == 2


async def _avail(client: Client, ns: str, name: str, n: int) -> bool:
    st = await dep_status(client, ns, name)
    return st.get("availableReplicas") == n and st.get("updatedReplicas") == n and st.get("replicas") == n


async def _all_images(client: Client, ns: str, app: str, image: str, n: int) -> bool:
    pods = [
        p
        for p in (await client.list(PODS, ns, label_selector=f"app={app}"))["items"]
        if not p["metadata"].get("deletionTimestamp")
    ]
    return len(pods) == n and all(p["spec"]["containers"][0]["image"] == image for p in pods)


async def test_deleted_pod_is_replaced_and_scale(cm, client: Client, sim: SimNodes, shared_apiserver) -> None:
    ns = sim.ns  # type: ignore[attr-defined]
    await client.create(DEPLOYMENTS, deployment("heal", replicas=3), ns)
    await eventually(lambda: _avail(client, ns, "heal", 3), 30, what="3 available")
    pods = (await client.list(PODS, ns))["items"]
    victim = pods[0]["metadata"]["name"]
    await client.delete(PODS, victim, ns)

    async def replaced() -> bool:
        names = {
            p["metadata"]["name"]
            for p in (await client.list(PODS, ns))["items"]
            if not p["metadata"].get("deletionTimestamp")
        }
        return victim not in names and len(names) == 3 and await ready_count(client, ns, "heal") == 3

    await eventually(replaced, 30, what="replacement pod")
    # scale subresource (kubectl scale) down and up
    await asyncio.to_thread(shared_apiserver.kubectl, "-n", ns, "scale", "deployment/heal", "--replicas=1")
    await eventually(lambda: _avail(client, ns, "heal", 1), 30, what="scaled to 1")
    assert len((await client.list(PODS, ns))["items"]) == 1
    # pause: a template change does not roll out; resume: it does
    await asyncio.to_thread(shared_apiserver.kubectl, "-n", ns, "rollout", "pause", "deployment/heal")
    await asyncio.to_thread(
        shared_apiserver.kubectl, "-n", ns, "set", "image", "deployment/heal", "c=busybox:9"
    )

    async def paused_cond() -> bool:
        st = await dep_status(client, ns, "heal")
        return any(
            c["type"] == "Progressing" and c["reason"] == "DeploymentPaused"
            for c in st.get("conditions") or ()
        )

    await eventually(paused_cond, 20, what="DeploymentPaused")
    assert len((await client.list(REPLICASETS, ns))["items"]) == 1
    await asyncio.to_thread(shared_apiserver.kubectl, "-n", ns, "rollout", "resume", "deployment/heal")
    await eventually(lambda: _all_images(client, ns, "heal", "busybox:9", 1), 30, what="resumed rollout")


async def test_replicaset_adopts_orphans_and_releases(cm, client: Client, sim: SimNodes) -> None:
    ns = sim.ns  # type: ignore[attr-defined]
    orphan = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "orphan", "labels": {"app": "adopt"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    await client.create(PODS, orphan, ns)
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "adopt"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "adopt"}},
            "template": orphan | {"metadata": {"labels": {"app": "adopt"}}},
        },
    }
    rs["spec"]["template"].pop("apiVersion")
    rs["spec"]["template"].pop("kind")
    created = await client.create(REPLICASETS, rs, ns)

    async def adopted() -> bool:
        p = await client.get(PODS, "orphan", ns)
        refs = p["metadata"].get("ownerReferences") or []
        n = len((await client.list(PODS, ns))["items"])
        return bool(refs) and refs[0]["uid"] == created["metadata"]["uid"] and n == 2

    await eventually(adopted, 20, what="adoption")
    # relabel: released, and a replacement is created
    await client.patch(PODS, "orphan", {"metadata": {"labels": {"app": "other"}}}, ns)

    async def released() -> bool:
        p = await client.get(PODS, "orphan", ns)
        n = len((await client.list(PODS, ns, label_selector="app=adopt"))["items"])
        return not p["metadata"].get("ownerReferences") and n == 2

    await eventually(released, 20, what="release")
    # foreground deletion of the ReplicaSet removes its pods first
    await client.delete(REPLICASETS, "adopt", ns, propagation_policy="Foreground")

    async def gone() -> bool:
        try:
            await client.get(REPLICASETS, "adopt", ns)
            return False
        except NotFound:
            return not (await client.list(PODS, ns, label_selector="app=adopt"))["items"]

    await eventually(gone, 20, what="foreground deletion")
    assert (await client.get(PODS, "orphan", ns))["metadata"]["name"] == "orphan"


async def test_progress_deadline_and_recreate(cm, client: Client, shared_apiserver) -> None:
    ns = await make_ns(client, "deadline")
    # no nodes serve this namespace: pods stay Pending, so the rollout cannot progress
    await client.create(DEPLOYMENTS, deployment("stuck", replicas=2, progressDeadlineSeconds=2), ns)

    async def exceeded() -> bool:
        st = await dep_status(client, ns, "stuck")
        return any(
            c["type"] == "Progressing"
            and c["status"] == "False"
            and c["reason"] == "ProgressDeadlineExceeded"
            for c in st.get("conditions") or ()
        )

    await eventually(exceeded, 20, what="ProgressDeadlineExceeded")
    out = await asyncio.to_thread(
        shared_apiserver.kubectl,
        "-n",
        ns,
        "rollout",
        "status",
        "deployment/stuck",
        "--timeout=10s",
        check=False,
    )
    assert out.returncode != 0 and "exceeded its progress deadline" in out.stderr

    # Recreate: the old ReplicaSet is scaled to 0 and its pods gone before the new one scales up
    sim = await SimNodes(client, ["dl-a"], namespace=ns).start()
    try:
        await client.create(DEPLOYMENTS, deployment("rec", replicas=3, strategy={"type": "Recreate"}), ns)
        await eventually(lambda: _avail(client, ns, "rec", 3), 30, what="recreate initial")
        overlap: list[set] = []

        async def watch_images() -> None:
            pods: dict[str, dict] = {}
            async for ev in client.watch(PODS, ns, label_selector="app=rec"):
                if ev.type == "DELETED":
                    pods.pop(ev.object["metadata"]["name"], None)
                elif ev.type != "BOOKMARK":
                    pods[ev.object["metadata"]["name"]] = ev.object
                imgs = {p["spec"]["containers"][0]["image"] for p in pods.values()}  # terminating ones too
                if len(imgs) > 1:
                    overlap.append(imgs)

        w = asyncio.create_task(watch_images())
        await client.patch(
            DEPLOYMENTS,
            "rec",
            {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}}},
            ns,
            patch_type="strategic",
        )
        await eventually(lambda: _all_images(client, ns, "rec", "busybox:2", 3), 30, what="recreate rollout")
        await eventually(lambda: _avail(client, ns, "rec", 3), 30, what="recreate available")
        w.cancel()
        await asyncio.gather(w, return_exceptions=True)
        assert overlap == []  # never old and new pods at once
    finally:
        await sim.stop()
