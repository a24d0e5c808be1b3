"""`hyperkube up`: a whole cluster from one command; Ctrl-C stops it cleanly; `up` again resumes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from hyperkube.cli import localnet
from tests.integration.conftest import KUBECTL, free_port, run_kubectl


def _start(data_dir: str, *extra: str) -> tuple[subprocess.Popen[str], list[str]]:
    ports = [str(free_port()) for _ in range(3)]
    argv = [
        sys.executable, "-m", "hyperkube.cli.main", "up", "--data-dir", data_dir,
        "--port", ports[0], "--scheduler-port", ports[1], "--controller-manager-port", ports[2], *extra,
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("Ctrl-C stops the cluster"):
            return proc, lines
    proc.kill()
    raise AssertionError("hyperkube up did not come up:\n" + "".join(lines))


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_up_hollow_cluster_stops_and_resumes(tmp_path) -> None:
    data_dir = str(tmp_path / "cluster")
    proc, lines = _start(data_dir, "--nodes", "0", "--hollow-nodes", "2")
    kubeconfig = os.path.join(data_dir, "kubeconfig")
    try:
        text = "".join(lines)
        assert f"export KUBECONFIG={kubeconfig}" in text
        nodes = run_kubectl(kubeconfig, "get", "nodes").stdout
        assert nodes.count(" Ready ") == 2, nodes
        cs = run_kubectl(kubeconfig, "get", "cs").stdout
        assert "controller-manager   Healthy" in cs and "etcd-0               Healthy" in cs
        run_kubectl(kubeconfig, "create", "configmap", "keep-me", "--from-literal=a=b")
        # scheduler + controllers + hollow kubelets: a Deployment becomes available (the pods
        # carry the ServiceAccount token volume that admission adds)
        run_kubectl(kubeconfig, "create", "deployment", "web", "--image=busybox", "--replicas=3")
        run_kubectl(kubeconfig, "rollout", "status", "deployment/web", "--timeout=60s", timeout=90)
        pods = run_kubectl(kubeconfig, "get", "pods", "-o", "wide").stdout
        assert pods.count(" Running ") == 3 and "hollow-node-" in pods, pods
        status = subprocess.run(
            [sys.executable, "-m", "hyperkube.cli.main", "status", "--data-dir", data_dir],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert status.returncode == 0, status.stderr
        assert "Nodes          2 total, 2 Ready, 0 NotReady, 0 cordoned (2 hollow)" in status.stdout
        assert "etcd-0               Healthy" in status.stdout
        children = _children(proc.pid)
        assert len(children) >= 3
    finally:
        out = _stop(proc)
    assert proc.returncode == 0, out
    assert "apiserver            stopped" in out
    assert not any(_alive(p) for p in children)
    proc, _ = _start(data_dir, "--nodes", "0")
    try:
        got = run_kubectl(kubeconfig, "get", "configmap", "keep-me", "-o", "jsonpath={.data.a}").stdout
        assert got == "b"
    finally:
        _stop(proc)


@pytest.mark.skipif(localnet.available() is not None, reason=f"local runc nodes: {localnet.available()}")
@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_up_runc_nodes_leave_no_namespace(tmp_path) -> None:
    data_dir = str(tmp_path / "cluster")
    proc, _ = _start(data_dir, "--nodes", "2")
    kubeconfig = os.path.join(data_dir, "kubeconfig")
    prefix = f"hk{localnet.cluster_id(data_dir)}-"
    try:
        wide = run_kubectl(kubeconfig, "get", "nodes", "-o", "wide").stdout
        assert "node-1" in wide and "10.250.0.11" in wide and "runc://" in wide
        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert f"{prefix}n1" in netns and f"{prefix}n2" in netns
    finally:
        out = _stop(proc)
    assert "removed network namespaces" in out
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in netns
    assert f"{prefix}h" not in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_agent_joins_with_a_bootstrap_token(tmp_path) -> None:
    data_dir = str(tmp_path / "cluster")
    proc, _ = _start(data_dir, "--nodes", "0")
    kubeconfig = os.path.join(data_dir, "kubeconfig")
    hk = [sys.executable, "-m", "hyperkube.cli.main"]
    agent = None
    try:
        join = subprocess.run(
            [*hk, "token", "create", "--data-dir", data_dir, "--print-join-command"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout.strip().splitlines()[-1]  # fmt: skip
        assert (
            join.startswith("hyperkube agent --server https://")
            and "--discovery-token-ca-cert-hash sha256:" in join
        )
        node_dir = str(tmp_path / "node")
        argv = [*hk, *join.split()[1:], "--node-name", "joiner", "--runtime", "fake", "--data-dir", node_dir]
        agent = subprocess.Popen(
            [*argv, "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            nodes = run_kubectl(kubeconfig, "get", "nodes", check=False).stdout
            if "joiner" in nodes and " Ready " in nodes:
                break
            time.sleep(0.5)
        else:
            agent.kill()
            raise AssertionError(f"node did not join: {nodes}\n{agent.communicate()[0]}")
        csr = run_kubectl(
            kubeconfig,
            "get",
            "csr",
            "-o",
            "jsonpath={.items[0].spec.username} {.items[0].status.conditions[*].type}",
        ).stdout
        assert csr.startswith("system:bootstrap:") and csr.endswith("Approved"), csr
        who = run_kubectl(os.path.join(node_dir, "kubelet-joiner.kubeconfig"), "auth", "whoami").stdout
        assert "system:node:joiner" in who
    finally:
        if agent is not None and agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            agent.wait(30)
        _stop(proc)
