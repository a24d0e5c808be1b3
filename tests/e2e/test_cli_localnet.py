"""Local node namespaces for `hyperkube up --nodes N` (root: creates network namespaces)."""

from __future__ import annotations

import os
import subprocess

import pytest

from hyperkube.cli import localnet

pytestmark = pytest.mark.skipif(localnet.available() is not None, reason=f"{localnet.available()}")


def _netns() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_nodes_reach_each_other_and_teardown_leaves_nothing(tmp_path) -> None:
    data_dir = str(tmp_path)
    try:
        nodes = localnet.setup(data_dir, 2)
        localnet.setup(data_dir, 2)  # idempotent
        assert {n.netns for n in nodes} <= _netns()
        a, b = nodes
        r = subprocess.run(
            ["ip", "netns", "exec", a.netns, "busybox", "ping", "-c1", "-W2", b.ip],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        routes = subprocess.run(["ip", "-n", a.netns, "route"], capture_output=True, text=True).stdout
        assert f"{b.pod_cidr} via {b.ip}" in routes
        # the host reaches node IPs through its one veth (the API server proxies to kubelets)
        assert subprocess.run(["busybox", "ping", "-c1", "-W2", b.ip], capture_output=True).returncode == 0
        host_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        assert f"hk{localnet.cluster_id(data_dir)}-h" in host_links
    finally:
        removed = localnet.teardown(data_dir)
    prefix = f"hk{localnet.cluster_id(data_dir)}-"
    assert len(removed) == 3
    assert not any(n.startswith(prefix) for n in _netns())
    host_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f"{prefix}h" not in host_links
    assert os.path.isdir(data_dir)
