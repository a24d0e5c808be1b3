"""The kubelet agent against the in-memory fake API server, with the fake runtime."""

from __future__ import annotations

import pytest

from hyperkube.client import LEASES, NODES, PODS, Client
from hyperkube.kubelet.agent import Kubelet
from hyperkube.kubelet.runtime.base import LABEL_CONTAINER_NAME, State
from hyperkube.kubelet.runtime.fake import FakeRuntime
from tests.unit.conftest_client import FakeApiServer, eventually

NODE = "node-a"


def pod(name: str, containers: list[dict], **spec) -> dict:  # type: ignore[no-untyped-def]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": NODE, "containers": containers, **spec},
    }


@pytest.fixture
async def fake_api():  # type: ignore[no-untyped-def]
    srv = FakeApiServer()
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def kubelet(fake_api, tmp_path):  # type: ignore[no-untyped-def]
    fake_client = Client(fake_api.url)
    rt = FakeRuntime(images={"busybox"})
    kl = Kubelet(
        fake_client, NODE, rt, root_dir=str(tmp_path), node_ip="192.0.2.10", pod_cidr="10.244.3.0/24",
        relist_interval=0.05, lease_interval=0.2, labels={"node-role.kubernetes.io/worker": ""},
    )  # fmt: skip
    await kl.start()
    yield kl
    await kl.stop()
    await fake_client.close()


def _get(api: FakeApiServer, name: str) -> dict | None:
    return api.objects.get(("", "pods"), {}).get(("default", name))


def _cs(api: FakeApiServer, name: str, i: int = 0) -> dict:
    p = _get(api, name) or {}
    return ((p.get("status") or {}).get("containerStatuses") or [{}])[i]


def _cid(kl: Kubelet, name: str, container: str = "c") -> str:
    w = next(w for w in kl.workers.values() if w.pod["metadata"]["name"] == name)
    return w.containers[container][-1]


async def test_registers_node_and_renews_lease(kubelet: Kubelet, fake_api: FakeApiServer) -> None:
    node = fake_api.objects[("", "nodes")][("", NODE)]
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == NODE and labels["kubernetes.io/os"] == "linux"
    assert "kubernetes.io/arch" in labels and "node-role.kubernetes.io/worker" in labels
    conds = {c["type"]: c for c in node["status"]["conditions"]}
    assert conds["Ready"]["status"] == "True" and conds["Ready"]["reason"] == "KubeletReady"
    assert {conds[t]["status"] for t in ("MemoryPressure", "DiskPressure", "PIDPressure")} == {"False"}
    assert {"cpu", "memory", "pods", "ephemeral-storage"} <= set(node["status"]["capacity"])
    assert node["status"]["addresses"][0] == {"type": "InternalIP", "address": "192.0.2.10"}
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"] == "fake://0.1.0"
    assert node["status"]["nodeInfo"]["kubeletVersion"].startswith("v1.")
    lease = await eventually(
        lambda: fake_api.objects.get(("coordination.k8s.io", "leases"), {}).get(("kube-node-lease", NODE))
    )
    assert lease["spec"]["holderIdentity"] == NODE and lease["spec"]["leaseDurationSeconds"] == 40
    first = lease["spec"]["renewTime"]
    await eventually(
        lambda: (
            fake_api.objects[("coordination.k8s.io", "leases")][("kube-node-lease", NODE)]["spec"][
                "renewTime"
            ]
            != first
        )
    )
    assert LEASES and NODES


async def test_pod_runs_and_reports_status(kubelet: Kubelet, fake_api: FakeApiServer) -> None:
    fake_api.put("", "pods", pod("web", [{"name": "c", "image": "busybox"}]))
    await eventually(lambda: (_get(fake_api, "web") or {}).get("status", {}).get("phase") == "Running")
    st = _get(fake_api, "web")["status"]  # type: ignore[index]
    assert st["podIP"].startswith("10.244.3.") and st["hostIP"] == "192.0.2.10"
    cs = st["containerStatuses"][0]
    assert cs["ready"] and cs["started"] and "running" in cs["state"] and cs["restartCount"] == 0
    assert cs["containerID"].startswith("fake://")
    conds = {c["type"]: c["status"] for c in st["conditions"]}
    assert conds == {"PodScheduled": "True", "PodReadyToStartContainers": "True", "Initialized": "True",
                     "ContainersReady": "True", "Ready": "True"}  # fmt: skip
    assert st["qosClass"] == "BestEffort"


async def test_image_never_pulled(kubelet: Kubelet, fake_api: FakeApiServer) -> None:
    fake_api.put("", "pods", pod("nope", [{"name": "c", "image": "nginx:1.25", "imagePullPolicy": "Never"}]))
    fake_api.put("", "pods", pod("pull", [{"name": "c", "image": "nginx:1.25"}]))
    cs = await eventually(
        lambda: (
            _cs(fake_api, "nope").get("state", {}).get("waiting", {}).get("reason") == "ErrImageNeverPull"
            and _cs(fake_api, "nope")
        )
    )
    assert (
        'Container image "nginx:1.25" is not present with pull policy of Never'
        in cs["state"]["waiting"]["message"]
    )
    assert _get(fake_api, "nope")["status"]["phase"] == "Pending"  # type: ignore[index]

    # IfNotPresent (a tagged image): the "pull" fails - images are never pulled here - and says what to do
    def reason() -> str:
        return _cs(fake_api, "pull").get("state", {}).get("waiting", {}).get("reason", "")

    await eventually(lambda: reason() == "ImagePullBackOff")
    msg = _cs(fake_api, "pull")["state"]["waiting"]["message"]
    assert msg.startswith('Back-off pulling image "nginx:1.25"') and "hyperkube image import FILE" in msg


@pytest.mark.parametrize(
    "policy,code,phase,reason", [("Never", 3, "Failed", "Error"), ("OnFailure", 0, "Succeeded", "Completed")]
)
async def test_run_to_completion(
    kubelet: Kubelet, fake_api: FakeApiServer, policy: str, code: int, phase: str, reason: str
) -> None:
    fake_api.put("", "pods", pod("job", [{"name": "c", "image": "busybox"}], restartPolicy=policy))
    await eventually(lambda: (_get(fake_api, "job") or {}).get("status", {}).get("phase") == "Running")
    kubelet.runtime.exit(_cid(kubelet, "job"), code)  # type: ignore[attr-defined]
    await eventually(lambda: _get(fake_api, "job")["status"]["phase"] == phase)  # type: ignore[index]
    term = _cs(fake_api, "job")["state"]["terminated"]
    assert term["exitCode"] == code and term["reason"] == reason
    assert _cs(fake_api, "job")["restartCount"] == 0


async def test_crash_loop_backoff(kubelet: Kubelet, fake_api: FakeApiServer) -> None:
    fake_api.put("", "pods", pod("crash", [{"name": "c", "image": "busybox"}]))
    await eventually(lambda: (_get(fake_api, "crash") or {}).get("status", {}).get("phase") == "Running")
    rt: FakeRuntime = kubelet.runtime  # type: ignore[assignment]
    rt.exit(_cid(kubelet, "crash"), 1)
    # first crash: restarted at once
    await eventually(
        lambda: (
            _cs(fake_api, "crash").get("restartCount") == 1 and "running" in _cs(fake_api, "crash")["state"]
        )
    )
    assert _cs(fake_api, "crash")["lastState"]["terminated"]["exitCode"] == 1
    rt.exit(_cid(kubelet, "crash"), 2)
    # second crash within the back-off: waiting CrashLoopBackOff, 10 s
    cs = await eventually(
        lambda: (
            _cs(fake_api, "crash").get("state", {}).get("waiting", {}).get("reason") == "CrashLoopBackOff"
            and _cs(fake_api, "crash")
        )
    )
    assert cs["state"]["waiting"]["message"].startswith(
        "back-off 10s restarting failed container=c pod=crash_default("
    )
    assert cs["lastState"]["terminated"]["exitCode"] == 2 and cs["restartCount"] == 1
    assert _get(fake_api, "crash")["status"]["phase"] == "Running"  # type: ignore[index]
    assert {c["type"]: c["status"] for c in _get(fake_api, "crash")["status"]["conditions"]}[
        "Ready"
    ] == "False"  # type: ignore[index]


async def test_init_containers_run_first_in_order(kubelet: Kubelet, fake_api: FakeApiServer) -> None:
    rt: FakeRuntime = kubelet.runtime  # type: ignore[assignment]
    fake_api.put("", "pods", pod("init", [{"name": "c", "image": "busybox"}],
                                 initContainers=[{"name": "i1", "image": "busybox"}, {"name": "i2", "image": "busybox"}]))  # fmt: skip

    def names() -> list[str]:
        return [s.labels[LABEL_CONTAINER_NAME] for s in rt.containers.values()]

    await eventually(lambda: names() == ["i1"])
    st = await eventually(lambda: (_get(fake_api, "init") or {}).get("status"))
    assert (
        st["phase"] == "Pending"
        and {c["type"]: c["status"] for c in st["conditions"]}["Initialized"] == "False"
    )
    rt.exit(_cid(kubelet, "init", "i1"), 0)
    await eventually(lambda: names() == ["i1", "i2"])
    rt.exit(_cid(kubelet, "init", "i2"), 0)
    await eventually(lambda: (_get(fake_api, "init") or {}).get("status", {}).get("phase") == "Running")
    st = _get(fake_api, "init")["status"]  # type: ignore[index]
    assert [s["state"]["terminated"]["reason"] for s in st["initContainerStatuses"]] == [
        "Completed",
        "Completed",
    ]


async def test_graceful_deletion_then_final_delete(kubelet: Kubelet, fake_api: FakeApiServer) -> None:
    fake_api.put("", "pods", pod("bye", [{"name": "c", "image": "busybox"}]))
    await eventually(lambda: (_get(fake_api, "bye") or {}).get("status", {}).get("phase") == "Running")
    cid = _cid(kubelet, "bye")
    p = _get(fake_api, "bye")
    p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"  # type: ignore[index]
    p["metadata"]["deletionGracePeriodSeconds"] = 30  # type: ignore[index]
    fake_api.put("", "pods", p)  # type: ignore[arg-type]
    await eventually(lambda: _get(fake_api, "bye") is None)
    rt: FakeRuntime = kubelet.runtime  # type: ignore[assignment]
    assert ("kill", cid) in rt.calls and cid not in rt.containers
    assert not kubelet.workers
    deletes = [r for r in fake_api.requests if r[0] == "DELETE"]
    assert deletes, "the kubelet deletes the pod object itself"


async def test_missing_configmap_is_a_config_error(kubelet: Kubelet, fake_api: FakeApiServer) -> None:
    c = {
        "name": "c",
        "image": "busybox",
        "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}],
    }
    fake_api.put("", "pods", pod("cfg", [c]))
    cs = await eventually(
        lambda: (
            _cs(fake_api, "cfg").get("state", {}).get("waiting", {}).get("reason")
            == "CreateContainerConfigError"
            and _cs(fake_api, "cfg")
        )
    )
    assert cs["state"]["waiting"]["message"] == 'configmap "cfg" not found'
    fake_api.put("", "configmaps", {"metadata": {"name": "cfg", "namespace": "default"}, "data": {"k": "v"}})
    kubelet.workers[next(iter(kubelet.workers))].kick()
    await eventually(
        lambda: (_get(fake_api, "cfg") or {}).get("status", {}).get("phase") == "Running", timeout=10
    )
    rt: FakeRuntime = kubelet.runtime  # type: ignore[assignment]
    assert ("X", "v") in next(iter(rt.specs.values())).env
    assert State.RUNNING and PODS
