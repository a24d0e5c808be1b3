"""The ``hyperkube proxy`` daemon against a real API server, programming a network namespace (root)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import APIServerProcess, free_port, start_apiserver

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "nft", "iptables-restore")),
    reason="needs root, iproute2, nft and iptables to create and program a network namespace",
)

MANIFEST = """
apiVersion: v1
kind: Namespace
metadata: {name: prx}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: prx}
spec:
  type: NodePort
  clusterIP: 10.96.7.7
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30777, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc
  namespace: prx
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- addresses: [10.244.1.5]
  conditions: {ready: true}
- addresses: [10.244.1.6]
  conditions: {ready: true}
"""


def ns_exec(ns: str, *argv: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, check=False
    ).stdout


def wait_for(cond: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


@pytest.fixture
def apiserver(tmp_path: Path) -> Iterator[APIServerProcess]:
    srv = start_apiserver(tmp_path / "hk")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.mark.parametrize("mode", ["nftables", "iptables"])
def test_daemon_programs_and_cleans_up(apiserver: APIServerProcess, tmp_path: Path, mode: str) -> None:
    ns = f"hk-prx-{os.getpid() % 10000}-d{mode[0]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    port = free_port()
    log = open(tmp_path / "proxy.log", "wb")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "hyperkube.cli.main", "proxy", "--kubeconfig", apiserver.kubeconfig,
            "--mode", mode, "--netns", ns, "--node-name", "n1", "--cluster-cidr", "10.244.0.0/16",
            "--min-sync-period", "0.1", "--sync-period", "3",
            "--healthz-bind-address", f"127.0.0.1:{port}", "--metrics-bind-address", f"127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip

    def rules() -> str:
        if mode == "nftables":
            return ns_exec(ns, "nft", "list", "table", "ip", "hyperkube")
        return ns_exec(ns, "iptables-save", "-t", "nat")

    def captured() -> bool:
        """Whether the ClusterIP is dispatched (its entry in svc-ips / KUBE-SERVICES)."""
        if mode == "nftables":
            return "10.96.7.7 . tcp . 80 : goto" in rules()
        return any(ln.startswith("-A KUBE-SERVICES") and "10.96.7.7" in ln for ln in rules().splitlines())

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return 0, ""

    try:
        apiserver.kubectl("apply", "-f", "-", input=MANIFEST)
        assert wait_for(lambda: "10.244.1.6" in rules()), (rules(), (tmp_path / "proxy.log").read_text())
        assert captured()
        assert wait_for(lambda: get("/healthz")[0] == 200)
        assert json.loads(get("/healthz")[1])["nodeName"] == "n1"

        # an endpoint removed from the slice is gone from the kernel
        apiserver.kubectl(
            "patch", "endpointslice", "web-abc", "-n", "prx", "--type=json",
            "-p", '[{"op": "remove", "path": "/endpoints/1"}]',
        )  # fmt: skip
        assert wait_for(lambda: "10.244.1.6" not in rules() and "10.244.1.5" in rules())
        metrics = get("/metrics")[1]
        assert "kubeproxy_network_programming_duration_seconds_count" in metrics
        assert 'kind="partial"} ' in metrics and 'kind="partial"} 0' not in metrics, metrics

        # tampering is repaired by the periodic full resync
        if mode == "nftables":
            ns_exec(ns, "nft", "flush", "map", "ip", "hyperkube", "svc-ips")
        else:
            ns_exec(ns, "iptables", "-t", "nat", "-F", "KUBE-SERVICES")
        assert not captured()
        assert wait_for(captured, timeout=10)

        # deleting the service removes it
        apiserver.kubectl("delete", "service", "web", "-n", "prx")
        assert wait_for(lambda: "10.96.7.7" not in rules())
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        left = ns_exec(ns, "nft", "list", "ruleset")
        subprocess.run(["ip", "netns", "del", ns], check=False)
        log.close()
    assert proc.returncode == 0, (tmp_path / "proxy.log").read_text()
    assert "hyperkube" not in left and "KUBE-" not in left, left
