"""Simulated hosts for ``hyperkube up --nodes N``: one network namespace per node.

kind runs a container per node; we run a network namespace per node. The node's daemons
(kubelet, proxy) stay in the host namespace, where the API server is reachable on 127.0.0.1,
and do every network operation (CNI, iptables/nft) inside their node's namespace
(``--netns``). The host's own interfaces, routes and firewall tables are never touched.

Topology for a cluster whose id is ``<id>`` (derived from its data dir):

    host                        veth hk<id>-h = 10.250.0.1/24 (so the API server reaches
                                kubelets at their node IPs); no other host change
    netns hk<id>-net            bridge "br0" (L2 only), veths to every node and to the host
    netns hk<id>-n1 .. -nN      eth0 = node IP 10.250.0.(10+i)/24, ip_forward on,
                                routes to every other node's pod CIDR via that node's IP
                                (host-gw), pod CIDR 10.244.i.0/24 served by the CNI bridge

Everything is created idempotently and removed by :func:`teardown`, including pod namespaces
left behind whose names carry the cluster prefix.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass

NODE_NET = "10.250.0"
HOST_IP = f"{NODE_NET}.1"
POD_NET = "10.244"
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/12"


@dataclass(frozen=True)
class NodeNet:
    index: int  # 1-based
    netns: str
    ip: str
    pod_cidr: str


def cluster_id(data_dir: str) -> str:
    return hashlib.sha256(os.path.abspath(data_dir).encode()).hexdigest()[:5]


def plan(data_dir: str, nodes: int) -> tuple[str, list[NodeNet]]:
    cid = cluster_id(data_dir)
    return f"hk{cid}-net", [
        NodeNet(i, f"hk{cid}-n{i}", f"{NODE_NET}.{10 + i}", f"{POD_NET}.{i}.0/24")
        for i in range(1, nodes + 1)
    ]


def _ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", *(["-n", netns] if netns else []), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr.strip()}")
    return r


def _netns_list() -> list[str]:
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def available() -> str | None:
    """None when local node namespaces can be made here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "not running as root"
    if subprocess.run(["ip", "-V"], capture_output=True).returncode != 0:
        return "the ip command (iproute2) is missing"
    return None


def setup(data_dir: str, nodes: int) -> list[NodeNet]:
    bridge_ns, node_nets = plan(data_dir, nodes)
    existing = set(_netns_list())
    if bridge_ns not in existing:
        _ip("netns", "add", bridge_ns)
    _ip("link", "set", "lo", "up", netns=bridge_ns)
    if _ip("link", "show", "br0", netns=bridge_ns, check=False).returncode != 0:
        _ip("link", "add", "br0", "type", "bridge", netns=bridge_ns)
    _ip("link", "set", "br0", "up", netns=bridge_ns)
    host_if = f"hk{cluster_id(data_dir)}-h"
    if _ip("link", "show", host_if, check=False).returncode != 0:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", "host", "netns", bridge_ns)
        _ip("link", "set", "host", "master", "br0", netns=bridge_ns)
        _ip("link", "set", "host", "up", netns=bridge_ns)
        _ip("addr", "add", f"{HOST_IP}/24", "dev", host_if)
    _ip("link", "set", host_if, "up")
    for n in node_nets:
        if n.netns not in existing:
            _ip("netns", "add", n.netns)
        _ip("link", "set", "lo", "up", netns=n.netns)
        if _ip("link", "show", "eth0", netns=n.netns, check=False).returncode != 0:
            peer = f"n{n.index}"
            _ip(
                "link",
                "add",
                "eth0",
                "netns",
                n.netns,
                "type",
                "veth",
                "peer",
                "name",
                peer,
                "netns",
                bridge_ns,
            )
            _ip("link", "set", peer, "master", "br0", netns=bridge_ns)
            _ip("link", "set", peer, "up", netns=bridge_ns)
            _ip("addr", "add", f"{n.ip}/24", "dev", "eth0", netns=n.netns)
        _ip("link", "set", "eth0", "up", netns=n.netns)
        subprocess.run(
            ["ip", "netns", "exec", n.netns, "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True, timeout=30
        )
    for n in node_nets:
        for other in node_nets:
            if other is not n:
                _ip("route", "replace", other.pod_cidr, "via", other.ip, netns=n.netns)
    return node_nets


def teardown(data_dir: str, nodes: int | None = None) -> list[str]:
    """Delete every namespace of this cluster (nodes, bridge, leftover pods); returns their names."""
    prefix = f"hk{cluster_id(data_dir)}-"
    removed = []
    # the host end first: a namespace's own veths go when the kernel reaps it, which is lazy
    _ip("link", "delete", f"{prefix}h", check=False)
    for name in _netns_list():
        if name.startswith(prefix):
            _ip("netns", "delete", name, check=False)
            removed.append(name)
    return removed
