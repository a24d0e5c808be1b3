"""kube-proxy rules in real network namespaces, both modes (root).

Topology (all created here, names hk-prx-*): a "node" namespace routes between a client namespace
and two backend namespaces over veth pairs; the proxy's rules are applied in the node namespace
(`ip netns exec NODE iptables-restore` / `nft -f`), so traffic from the client to a ClusterIP or to
the node's NodePort is DNAT'ed in the node's PREROUTING and forwarded to a backend. Each backend
runs a tiny TCP server that answers with its name.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from hyperkube.proxy.backends import CommandRunner, new_backend
from hyperkube.proxy.model import build_model

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "nft", "iptables-restore")),
    reason="needs root, iproute2, nft and iptables to create network namespaces and program them",
)

CIDR = "10.77.2.0/23"  # the backends ("pods")
CLUSTER_IP, NO_EP_IP, AFF_IP = "10.96.0.10", "10.96.0.11", "10.96.0.12"
NODE_IP = "10.77.1.1"

SERVER = textwrap.dedent(
    """
    import socket, sys
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(128)
    print("ready", flush=True)
    while True:
        c, _ = s.accept(); c.sendall(sys.argv[2].encode()); c.close()
    """
)

CLIENT = textwrap.dedent(
    """
    import json, socket, sys
    ip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    out = []
    for _ in range(n):
        try:
            c = socket.create_connection((ip, port), timeout=2)
            out.append(c.recv(64).decode() or "empty"); c.close()
        except ConnectionRefusedError:
            out.append("refused")
        except OSError as e:
            out.append(type(e).__name__)
    print(json.dumps(out))
    """
)


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check)


class Topology:
    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.node, self.client = f"hk-prx-{tag}-node", f"hk-prx-{tag}-cl"
        self.backends = {f"b{i}": f"hk-prx-{tag}-b{i}" for i in (1, 2)}
        self.procs: list[subprocess.Popen[str]] = []

    def up(self) -> None:
        ns = [self.node, self.client, *self.backends.values()]
        for n in ns:
            sh("ip", "netns", "add", n)
            sh("ip", "-n", n, "link", "set", "lo", "up")
        sh("ip", "netns", "exec", self.node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        # the node's default route (a real node has one; service IPs are routed, not local)
        d, e = f"hkp{self.tag}d", f"hkp{self.tag}e"
        sh("ip", "-n", self.node, "link", "add", d, "type", "veth", "peer", "name", e)
        sh("ip", "-n", self.node, "addr", "add", "10.98.0.1/24", "dev", d)
        sh("ip", "-n", self.node, "link", "set", d, "up")
        sh("ip", "-n", self.node, "link", "set", e, "up")
        sh("ip", "-n", self.node, "route", "add", "default", "via", "10.98.0.2")
        links = [(self.client, "1"), (self.backends["b1"], "2"), (self.backends["b2"], "3")]
        for peer, net in links:
            a, b = f"hkp{self.tag}n{net}", f"hkp{self.tag}p{net}"
            sh("ip", "link", "add", a, "netns", self.node, "type", "veth", "peer", "name", b, "netns", peer)
            sh("ip", "-n", self.node, "addr", "add", f"10.77.{net}.1/24", "dev", a)
            sh("ip", "-n", peer, "addr", "add", f"10.77.{net}.2/24", "dev", b)
            sh("ip", "-n", self.node, "link", "set", a, "up")
            sh("ip", "-n", peer, "link", "set", b, "up")
            sh("ip", "-n", peer, "route", "add", "default", "via", f"10.77.{net}.1")
        for name, n in self.backends.items():
            p = subprocess.Popen(
                ["ip", "netns", "exec", n, sys.executable, "-c", SERVER, "8080", name],
                stdout=subprocess.PIPE,
                text=True,
            )
            self.procs.append(p)
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"

    def down(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()
        for n in [self.node, self.client, *self.backends.values()]:
            sh("ip", "netns", "del", n, check=False)

    def connect(self, ip: str, port: int, n: int) -> list[str]:
        out = sh("ip", "netns", "exec", self.client, sys.executable, "-c", CLIENT, ip, str(port), str(n))
        return list(json.loads(out.stdout))


@pytest.fixture
def topo(request: pytest.FixtureRequest) -> Iterator[Topology]:
    t = Topology(f"{os.getpid() % 10000}{request.node.callspec.params['mode'][0]}")
    try:
        t.up()
        yield t
    finally:
        t.down()


def service(name: str, ip: str, node_port: int | None = None, **spec: Any) -> dict[str, Any]:
    port: dict[str, Any] = {"name": "http", "port": 80, "protocol": "TCP"}
    if node_port:
        port["nodePort"] = node_port
    typ = "NodePort" if node_port else "ClusterIP"
    return {
        "metadata": {"namespace": "e2e", "name": name},
        "spec": {"type": typ, "clusterIP": ip, "ports": [port], **spec},
    }


def slice_(name: str, *ips: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "e2e", "name": name, "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
    }


BACKEND_IPS = ("10.77.2.2", "10.77.3.2")


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_services_in_netns(topo: Topology, mode: str) -> None:
    b = new_backend(mode, CommandRunner(topo.node), cluster_cidr=CIDR, node_ip=NODE_IP)
    services = [
        service("web", CLUSTER_IP, node_port=30080),
        service("empty", NO_EP_IP),
        service("sticky", AFF_IP, sessionAffinity="ClientIP"),
    ]
    slices = [slice_("web", *BACKEND_IPS), slice_("empty"), slice_("sticky", *BACKEND_IPS)]
    res = b.sync(build_model(services, slices, "node"))
    assert res.full

    # ClusterIP and NodePort reach both backends, roughly evenly
    for ip, port in ((CLUSTER_IP, 80), (NODE_IP, 30080)):
        got = Counter(topo.connect(ip, port, 60))
        assert set(got) == {"b1", "b2"}, got
        assert min(got.values()) >= 12, got
    # affinity pins the client
    assert len(set(topo.connect(AFF_IP, 80, 20))) == 1
    # a service without endpoints refuses
    assert set(topo.connect(NO_EP_IP, 80, 3)) == {"refused"}

    # removing a backend stops traffic to it (incremental / partial sync)
    slices[0] = slice_("web", BACKEND_IPS[0])
    res = b.sync(build_model(services, slices, "node"))
    assert not res.full and not res.fell_back
    time.sleep(0.05)
    assert set(topo.connect(CLUSTER_IP, 80, 20)) == {"b1"}
    assert set(topo.connect(NODE_IP, 30080, 10)) == {"b1"}
    # ... and adding it back restores it
    slices[0] = slice_("web", *BACKEND_IPS)
    b.sync(build_model(services, slices, "node"))
    assert set(topo.connect(CLUSTER_IP, 80, 40)) == {"b1", "b2"}

    # a periodic full resync repairs tampering
    if mode == "nftables":
        sh("ip", "netns", "exec", topo.node, "nft", "flush", "map", "ip", "hyperkube", "svc-ips")
    else:
        sh("ip", "netns", "exec", topo.node, "iptables", "-t", "nat", "-F", "KUBE-SERVICES")
    assert set(topo.connect(CLUSTER_IP, 80, 2)) != {"b1", "b2"}
    b.sync(build_model(services, slices, "node"), full=True)
    assert set(topo.connect(CLUSTER_IP, 80, 40)) == {"b1", "b2"}

    # cleanup leaves no table, chain or rule
    b.cleanup()
    ruleset = sh("ip", "netns", "exec", topo.node, "nft", "list", "ruleset").stdout
    assert "hyperkube" not in ruleset and "KUBE-" not in ruleset, ruleset
    for table in ("nat", "filter"):
        saved = sh("ip", "netns", "exec", topo.node, "iptables-save", "-t", table).stdout
        assert "KUBE-" not in saved, saved
