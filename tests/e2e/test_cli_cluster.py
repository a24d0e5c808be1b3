"""Issue 10's acceptance: `hyperkube up --nodes 2` on runc, a busybox Deployment behind a Service
reachable through its ClusterIP from a pod on another node, the same `get pods` table from both
kubectls, Ctrl-C leaving nothing behind, and `up` again resuming the same Deployment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from hyperkube.cli import localnet
from tests.integration.conftest import KUBECTL, run_kubectl
from tests.integration.test_cli_kubectl import norm
from tests.integration.test_cli_up import _start, _stop

pytestmark = [
    pytest.mark.skipif(localnet.available() is not None, reason=f"local runc nodes: {localnet.available()}"),
    pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed"),
    pytest.mark.skipif(
        subprocess.run(["which", "runc"], capture_output=True).returncode != 0, reason="no runc"
    ),
]

APP = textwrap.dedent(
    """
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      replicas: 2
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec:
          nodeSelector: {kubernetes.io/hostname: node-2}
          containers:
          - name: web
            image: busybox:latest
            imagePullPolicy: Never
            command: ["sh", "-c", "echo hello from $(hostname) > /www/index.html; exec httpd -f -p 8080 -h /www"]
            ports: [{containerPort: 8080}]
            volumeMounts: [{name: www, mountPath: /www}]
          volumes: [{name: www, emptyDir: {}}]
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: web}
    spec:
      selector: {app: web}
      ports: [{port: 80, targetPort: 8080}]
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: client}
    spec:
      nodeSelector: {kubernetes.io/hostname: node-1}
      containers: [{name: c, image: busybox:latest, imagePullPolicy: Never, command: ["sh", "-c", "echo client up; exec sleep 3600"]}]
    """
)
FETCH = "import urllib.request as u; print(u.urlopen('http://{ip}/', timeout=3).read().decode().strip())"


def _wait(pred, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"{what} not reached in {timeout}s (last: {last!r})")


def _pods(kubeconfig: str) -> list[dict]:
    return json.loads(run_kubectl(kubeconfig, "get", "pods", "-o", "json").stdout)["items"]


def _container_ids(data_dir: str) -> set[str]:
    ids: set[str] = set()
    kubelet = os.path.join(data_dir, "kubelet")
    for node in os.listdir(kubelet) if os.path.isdir(kubelet) else []:
        d = os.path.join(kubelet, node, "containers")
        ids.update(os.listdir(d) if os.path.isdir(d) else [])
    return ids


def _leftovers(data_dir: str, ids: set[str]) -> dict[str, list[str]]:
    """What this cluster left: pod/node namespaces, mounts under its data dir, and processes in
    the cgroup of any container it ever ran."""
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    mounts = open("/proc/mounts").read()
    procs = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cgroup = open(f"/proc/{pid}/cgroup").read()
        except OSError:
            continue
        if any(i in cgroup for i in ids):
            procs.append(pid)
    prefixes = ("hk-node-", f"hk{localnet.cluster_id(data_dir)}-")
    return {
        "netns": [line for line in netns.splitlines() if line.startswith(prefixes)],
        "mounts": [line for line in mounts.splitlines() if data_dir in line],
        "procs": procs,
    }


def test_one_command_cluster_end_to_end(tmp_path) -> None:
    data_dir = str(tmp_path / "cluster")
    os.makedirs(data_dir)
    image = str(tmp_path / "busybox.tar")
    hk = [sys.executable, "-m", "hyperkube.cli.main"]
    subprocess.run(
        [*hk, "image", "build-busybox", "--data-dir", data_dir, "--import", image], check=True, timeout=120
    )
    proc, _ = _start(data_dir, "--nodes", "2")
    kubeconfig = os.path.join(data_dir, "kubeconfig")
    try:
        cs = run_kubectl(kubeconfig, "get", "cs").stdout
        for name in ("scheduler", "controller-manager", "etcd-0"):
            assert any(line.startswith(name) and " Healthy " in line for line in cs.splitlines()), cs
        nodes = run_kubectl(kubeconfig, "get", "nodes").stdout
        assert nodes.count(" Ready ") == 2, nodes
        run_kubectl(kubeconfig, "apply", "-f", "-", input=APP)

        def running() -> bool:
            pods = _pods(kubeconfig)
            return len(pods) == 3 and all((p.get("status") or {}).get("phase") == "Running" for p in pods)

        _wait(running, 120, "3 Running pods")
        ip = json.loads(run_kubectl(kubeconfig, "get", "svc", "web", "-o", "json").stdout)["spec"][
            "clusterIP"
        ]
        client = next(p for p in _pods(kubeconfig) if p["metadata"]["name"] == "client")
        netns = f"hk-node-1-{client['metadata']['uid']}"

        def fetch() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["ip", "netns", "exec", netns, sys.executable, "-c", FETCH.format(ip=ip)],
                capture_output=True, text=True, timeout=20,
            )  # fmt: skip

        # Running pods come before ready endpoints and the proxy's next sync: wait for the first answer
        _wait(lambda: fetch().returncode == 0, 60, "the Service answering through its ClusterIP")
        seen: set[str] = set()
        for _ in range(20):
            r = fetch()
            assert r.returncode == 0, r.stderr
            seen.add(r.stdout.strip())
        assert len(seen) == 2 and all(s.startswith("hello from web-") for s in seen), seen
        # kubectl logs: the API server calls node-1's kubelet over HTTPS (the kubelet's serving
        # certificate verified against the cluster CA; the API server's client certificate
        # kube-apiserver-kubelet-client, which the kubelet requires and authorizes)
        assert run_kubectl(kubeconfig, "logs", "client").stdout == "client up\n"
        assert "server https://" in open(os.path.join(data_dir, "logs", "node-1.log")).read()
        env = dict(os.environ, KUBECONFIG=kubeconfig)
        ours = subprocess.run(
            [*hk, "kubectl", "get", "pods"], capture_output=True, text=True, env=env, timeout=60
        )
        assert norm(ours.stdout) == norm(run_kubectl(kubeconfig, "get", "pods").stdout)
        ids = _container_ids(data_dir)
    finally:
        out = _stop(proc)
    assert proc.returncode == 0, out
    assert len(ids) >= 3
    left = _leftovers(data_dir, ids)
    assert not any(left.values()), left
    proc, _ = _start(data_dir, "--nodes", "2")
    try:
        got = run_kubectl(kubeconfig, "get", "deployment", "web", "-o", "jsonpath={.spec.replicas}").stdout
        assert got == "2"
        _wait(running, 120, "the pods running again after the restart")
        ids |= _container_ids(data_dir)
    finally:
        _stop(proc)
    left = _leftovers(data_dir, ids)
    assert not any(left.values()), left
