"""The proxy daemon's event handling, sync loop and HTTP endpoints with a fake command runner."""

from __future__ import annotations

import asyncio
import subprocess
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from hyperkube.proxy.backends import NftablesBackend
from hyperkube.proxy.daemon import ProxyDaemon


class FakeRunner:
    def __init__(self) -> None:
        self.inputs: list[bytes] = []

    def __call__(self, argv: Any, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        self.inputs.append(input or b"")
        return subprocess.CompletedProcess(list(argv), 0, b"", b"")


class FakeInformer:
    def __init__(self) -> None:
        self.handlers: tuple[Any, ...] = ()

    def add_event_handler(self, *h: Any) -> None:
        self.handlers = h


def service(name: str, ip: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": name},
        "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
    }


def eps(name: str, *ips: str) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "ns",
            "name": name + "-x",
            "labels": {"kubernetes.io/service-name": name},
            "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": "2020-01-01T00:00:00Z"},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ip]} for ip in ips],
    }


async def test_daemon_syncs_batches_and_serves_metrics() -> None:
    runner = FakeRunner()
    d = ProxyDaemon(None, NftablesBackend(runner), node_name="n1", min_sync_period=0.05, sync_period=60)
    svc_inf, slice_inf = FakeInformer(), FakeInformer()
    task = asyncio.create_task(d.run((svc_inf, slice_inf)))
    try:
        await asyncio.sleep(0)
        on_svc, _, on_svc_del = svc_inf.handlers
        on_slice, on_slice_upd, _ = slice_inf.handlers
        on_svc(service("web", "10.96.0.1"))
        on_slice(eps("web", "10.1.0.1", "10.1.0.2"))
        await asyncio.wait_for(d.synced.wait(), 5)
        assert d.syncs["full"] == 1
        assert b"10.96.0.1 . tcp . 80 . 1 : 10.1.0.2 . 8080" in runner.inputs[-1]
        d.synced.clear()
        # two changes in quick succession are one incremental sync
        old = eps("web", "10.1.0.1", "10.1.0.2")
        on_slice_upd(old, eps("web", "10.1.0.1"))
        on_svc(service("other", "10.96.0.2"))
        await asyncio.wait_for(d.synced.wait(), 5)
        await asyncio.sleep(0.2)
        assert d.syncs == {"full": 1, "partial": 1}
        last = runner.inputs[-1].decode()
        assert "delete table" not in last and "10.96.0.2 . tcp . 80 : goto reject-chain" in last
        async with TestClient(TestServer(d.app())) as c:
            r = await c.get("/healthz")
            body = await r.json()
            assert r.status == 200 and body["nodeName"] == "n1" and body["lastUpdated"]
            text = await (await c.get("/metrics")).text()
        assert 'kubeproxy_sync_proxy_rules_total{mode="nftables",kind="partial"} 1' in text
        assert "kubeproxy_sync_proxy_rules_nftables_elements " in text
        # the slices' trigger time (years ago) is beyond the last finite bucket; the others are not
        lines = dict(ln.rsplit(" ", 1) for ln in text.splitlines() if not ln.startswith("#"))
        total = int(lines['kubeproxy_network_programming_duration_seconds_bucket{le="+Inf"}'])
        finite = int(lines['kubeproxy_network_programming_duration_seconds_bucket{le="16.384"}'])
        assert total == 4 and finite == 2
        on_svc_del(service("other", "10.96.0.2"))
        await asyncio.sleep(0.3)
        assert d.syncs["partial"] == 2 and "10.96.0.2" in runner.inputs[-1].decode()
    finally:
        task.cancel()


async def test_healthz_unhealthy_before_first_sync() -> None:
    d = ProxyDaemon(None, NftablesBackend(FakeRunner()), node_name="n1")
    async with TestClient(TestServer(d.app())) as c:
        assert (await c.get("/healthz")).status == 503
