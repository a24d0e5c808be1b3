"""The kubelet HTTP server (with the process runtime: real processes, real log files) and hollow nodes."""

from __future__ import annotations

import aiohttp
import pytest

from hyperkube.client import Client
from hyperkube.kubelet import server
from hyperkube.kubelet.agent import Kubelet
from hyperkube.kubelet.hollow import HollowNodes
from hyperkube.kubelet.runtime.process import ProcessRuntime
from tests.unit.conftest_client import FakeApiServer, eventually


@pytest.fixture
async def fake_api():  # type: ignore[no-untyped-def]
    srv = FakeApiServer()
    await srv.start()
    yield srv
    await srv.stop()


def _pod(name: str, command: str, policy: str = "Always") -> dict:
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": "node-p",
            "restartPolicy": policy,
            "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", command]}],
        },
    }


async def test_container_logs_pods_and_healthz(fake_api: FakeApiServer, tmp_path) -> None:
    client = Client(fake_api.url)
    kl = Kubelet(client, "node-p", ProcessRuntime(str(tmp_path / "rt")), root_dir=str(tmp_path), node_ip="127.0.0.1",
                 relist_interval=0.05)  # fmt: skip
    runner, port = await server.serve(kl, "127.0.0.1", 0)
    await kl.start()
    base = f"http://127.0.0.1:{port}"
    try:
        fake_api.put("", "pods", _pod("talker", "echo one; echo two; sleep 30"))
        fake_api.put("", "pods", _pod("crasher", "echo run-$$; exit 1"))
        async with aiohttp.ClientSession() as http:

            async def get(path: str) -> tuple[int, str]:
                async with http.get(base + path) as r:
                    return r.status, await r.text()

            assert await get("/healthz") == (200, "ok")
            await eventually(lambda: get("/containerLogs/default/talker/c"), timeout=10)
            await eventually(
                lambda: _eq(get("/containerLogs/default/talker/c"), (200, "one\ntwo\n")), timeout=10
            )
            assert await get("/containerLogs/default/talker/c?tailLines=1") == (200, "two\n")
            assert await get("/containerLogs/default/talker/c?limitBytes=2") == (200, "on")
            code, body = await get("/containerLogs/default/talker/nope")
            assert code == 404 and '"reason": "NotFound"' in body
            code, body = await get("/pods")
            assert code == 200 and {
                p["metadata"]["name"] for p in __import__("json").loads(body)["items"]
            } == {
                "talker",
                "crasher",
            }
            # the crashing container was restarted (PLEG noticed the exit): its previous log is served
            prev = await eventually(
                lambda: _ok(get("/containerLogs/default/crasher/c?previous=true")), timeout=10
            )
            assert prev.startswith("run-")

            def crasher() -> dict:
                return fake_api.objects[("", "pods")][("default", "crasher")]["status"]["containerStatuses"][
                    0
                ]

            st = await eventually(lambda: crasher()["restartCount"] >= 1 and crasher(), timeout=10)
            assert st["lastState"]["terminated"]["exitCode"] == 1
    finally:
        for w in list(kl.workers.values()):
            w.removed = True  # as if the pods were deleted from the API
            w.kick()
        await eventually(lambda: not kl.workers, timeout=20)
        await kl.stop()
        await runner.cleanup()
        await client.close()
    assert await kl.runtime.list() == []


async def _eq(coro, want):  # type: ignore[no-untyped-def]
    return (await coro) == want


async def _ok(coro):  # type: ignore[no-untyped-def]
    code, body = await coro
    return body if code == 200 and body else None


async def test_hollow_nodes(fake_api: FakeApiServer, tmp_path) -> None:
    client = Client(fake_api.url)
    nodes = HollowNodes(client, 3, root_dir=str(tmp_path), lease_interval=0.2)
    await nodes.start()
    try:
        names = {n for _, n in fake_api.objects[("", "nodes")]}
        assert names == {"hollow-node-0", "hollow-node-1", "hollow-node-2"}
        fake_api.put("", "pods", {"metadata": {"name": "p", "namespace": "default"},
                                  "spec": {"nodeName": "hollow-node-1", "containers": [{"name": "c", "image": "x"}]}})  # fmt: skip
        st = await eventually(lambda: (fake_api.objects[("", "pods")][("default", "p")].get("status") or {}).get("phase") == "Running"
                              and fake_api.objects[("", "pods")][("default", "p")]["status"])  # fmt: skip
        assert st["podIP"].startswith("10.128.1.") and st["hostIP"] == "10.64.0.1"
        assert not nodes.kubelets["hollow-node-0"].workers
        leases = await eventually(
            lambda: len(fake_api.objects.get(("coordination.k8s.io", "leases"), {})) == 3
        )
        assert leases
    finally:
        await nodes.stop()
        await client.close()
