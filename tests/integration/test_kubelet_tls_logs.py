"""``kubectl logs`` against a secure API server (HTTPS, cluster PKI): the API server calls the kubelet over
HTTPS with its client certificate (kube-apiserver-kubelet-client) and verifies the kubelet's serving
certificate against the cluster CA. A kubelet serving plain HTTP cannot be reached so, and the error says
what is missing. (The process runtime: no root needed.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hyperkube.apiserver.auth.pki import PKI
from tests.integration.conftest import KUBECTL, APIServerProcess, start_apiserver

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")

NODE = "hk-kl-tls"
POD = """{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "talker"}, "spec": {"nodeName": "hk-kl-tls",
 "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", "echo hello over tls; exec sleep 60"]}]}}"""


def _kubelet(srv: APIServerProcess, data: Path, *extra: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "hyperkube.cli.main", "kubelet", "--kubeconfig", srv.kubeconfig, "--node-name",
           NODE, "--data-dir", str(data), "--runtime", "process", "--node-ip", "127.0.0.1", "--address",
           "127.0.0.1", "--port", "0", "--cleanup-on-exit", *extra]  # fmt: skip
    with open(data / "kubelet.log", "ab") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


def _stop(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        os.kill(p.pid, signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(5)


def _logs(srv: APIServerProcess, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    deadline = time.monotonic() + timeout
    while True:
        r = srv.kubectl("logs", "talker", check=False)
        if r.returncode == 0 and r.stdout or time.monotonic() > deadline:
            return r
        time.sleep(0.3)


def test_logs_over_https_and_plain_kubelet_refused(tmp_path: Path) -> None:
    srv = start_apiserver(tmp_path / "api", secure=True)
    data = tmp_path / "node"
    data.mkdir()
    pki = PKI(str(tmp_path / "api" / "pki"))
    serving = pki.ensure_kubelet_serving(NODE, ["127.0.0.1"])
    try:
        kl = _kubelet(srv, data, "--tls-cert-file", serving.cert, "--tls-private-key-file", serving.key,
                      "--client-ca-file", pki.ca.cert)  # fmt: skip
        try:
            srv.kubectl("create", "-f", "-", input=POD)
            r = _logs(srv)
            assert r.returncode == 0 and r.stdout == "hello over tls\n", (
                r.stderr,
                (data / "kubelet.log").read_text(),
            )
            assert "server https://127.0.0.1:" in (data / "kubelet.log").read_text()
        finally:
            _stop(kl)
        # the same node without a serving certificate: plain HTTP, which the secure API server will not use
        kl = _kubelet(srv, data)
        try:
            deadline = time.monotonic() + 60
            while "server http://" not in (data / "kubelet.log").read_text() and time.monotonic() < deadline:
                time.sleep(0.2)
            log = (data / "kubelet.log").read_text()
            assert "PLAIN HTTP WITHOUT AUTHENTICATION" in log
            srv.kubectl("delete", "pod", "talker", "--grace-period", "0", "--force", check=False)
            srv.kubectl("create", "-f", "-", input=POD)
            time.sleep(1)
            r = _logs(srv, timeout=5)
            assert r.returncode != 0 and "serving certificate of the cluster CA" in r.stderr, r.stderr
        finally:
            _stop(kl)
    finally:
        srv.stop()
