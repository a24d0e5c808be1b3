"""Rule generation: upstream golden values, Rust vs the Python reference, and a packet tracer."""

from __future__ import annotations

import random
import subprocess
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hyperkube import _native
from hyperkube.cli.main import main
from hyperkube.proxy.backends import IptablesBackend, NftablesBackend
from hyperkube.proxy.model import ModelBuilder, ModelError, build_model
from tests.reference import proxy as ref

CIDR = "10.0.0.0/8"


def svc(
    name: str,
    ip: str,
    port: int = 80,
    *,
    ns: str = "ns1",
    pname: str = "p80",
    typ: str = "ClusterIP",
    node_port: int | None = None,
    **spec: Any,
) -> dict[str, Any]:
    p: dict[str, Any] = {"name": pname, "port": port, "protocol": "TCP"}
    if node_port:
        p["nodePort"] = node_port
    status = spec.pop("status", {})
    return {
        "kind": "Service",
        "metadata": {"namespace": ns, "name": name},
        "spec": {"type": typ, "clusterIP": ip, "ports": [p], **spec},
        "status": status,
    }


def eps(
    name: str, *addrs: str | tuple[str, dict[str, Any]], ns: str = "ns1", port: int = 80, pname: str = "p80"
):
    endpoints = []
    for a in addrs:
        if isinstance(a, tuple):
            endpoints.append({"addresses": [a[0]], **a[1]})
        else:
            endpoints.append({"addresses": [a]})
    return {
        "kind": "EndpointSlice",
        "metadata": {"namespace": ns, "name": name + "-x", "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "ports": [{"name": pname, "port": port, "protocol": "TCP"}],
        "endpoints": endpoints,
    }


def test_golden_chain_names():
    assert _native.proxy_service_chain_name("default/kubernetes:https", "tcp") == "KUBE-SVC-NPX46M4PTMTKRN6Y"
    assert ref.service_chain_name("default/kubernetes:https", "tcp") == "KUBE-SVC-NPX46M4PTMTKRN6Y"
    # upstream proxier_test.go fixtures
    assert _native.proxy_service_chain_name("ns1/svc1:p80", "tcp") == "KUBE-SVC-XPGD46QRK7WJZT7O"
    assert (
        _native.proxy_endpoint_chain_name("ns1/svc1:p80", "tcp", "10.180.0.1:80")
        == "KUBE-SEP-SXIVWICOYRO3J4NJ"
    )


def upstream_services(n: int, per: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """As upstream's generateServiceEndpoints (number_generated_rules_test.go)."""
    svcs, slices = [], []
    for i in range(n):
        s = svc(f"svc{i}", f"10.0.0.{1 + i}", 80 + i, ns="namespace", pname="8080")
        svcs.append(s)
        slices.append(
            eps(
                f"svc{i}", *[f"172.16.0.{1 + j}" for j in range(per)], ns="namespace", port=8080, pname="8080"
            )
        )
    return svcs, slices


@pytest.mark.parametrize(
    ("n", "per", "nat", "filt"),
    [
        (0, 0, 5, 3),
        (1, 0, 5, 4),
        (1, 1, 10, 3),
        (1, 2, 13, 3),
        (1, 10, 37, 3),
        (10, 0, 5, 13),
        (10, 10, 325, 3),
    ],
)
def test_number_of_rules_as_upstream(n, per, nat, filt):
    m = build_model(*upstream_services(n, per))
    _, _, stats = _native.proxy_render_iptables(m, cluster_cidr=CIDR)
    assert (stats["nat_rules"], stats["filter_rules"]) == (nat, filt)


def test_comments_dropped_above_1000_endpoints():
    small = build_model(*upstream_services(10, 100))
    big = build_model(*upstream_services(11, 100))
    t_small = _native.proxy_render_iptables(small, cluster_cidr=CIDR)[0].decode()
    t_big = _native.proxy_render_iptables(big, cluster_cidr=CIDR)[0].decode()
    assert '-m comment --comment "namespace/svc0:8080 -> 172.16.0.1:8080"' in t_small
    assert "-> 172.16.0.1:8080" not in t_big
    assert "-A KUBE-SEP-" in t_big and "--comment namespace/svc0:8080 -s" not in t_big


def test_probabilities_and_last_endpoint():
    m = build_model(*upstream_services(1, 3))
    text = _native.proxy_render_iptables(m)[0].decode()
    svc_rules = [ln for ln in text.splitlines() if ln.startswith("-A KUBE-SVC-") and "KUBE-SEP-" in ln]
    assert "--probability 0.3333333333" in svc_rules[0]
    assert "--probability 0.5000000000" in svc_rules[1]
    assert "statistic" not in svc_rules[2]


# --- Rust agrees with the reference ---------------------------------------------------------

ips = st.integers(1, 40).map(lambda i: f"10.{i % 3}.0.{i}")
cond = st.fixed_dictionaries(
    {},
    optional={
        "ready": st.booleans(),
        "serving": st.booleans(),
        "terminating": st.booleans(),
    },
)


@st.composite
def services_and_slices(draw):
    n = draw(st.integers(0, 6))
    svcs, slices = [], []
    for i in range(n):
        typ = draw(st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer"]))
        spec: dict[str, Any] = {}
        if draw(st.booleans()):
            spec["externalIPs"] = draw(
                st.lists(st.sampled_from([f"192.168.{i}.1", f"192.168.{i}.2"]), max_size=2)
            )
        if draw(st.booleans()):
            spec["sessionAffinity"] = "ClientIP"
            if draw(st.booleans()):
                spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": draw(st.integers(1, 100))}}
        if draw(st.booleans()):
            spec["externalTrafficPolicy"] = "Local"
            spec["healthCheckNodePort"] = 32000 + i
        if draw(st.booleans()):
            spec["internalTrafficPolicy"] = "Local"
        if typ == "LoadBalancer":
            spec["status"] = {"loadBalancer": {"ingress": [{"ip": f"5.5.5.{i + 1}"}]}}
            if draw(st.booleans()):
                spec["loadBalancerSourceRanges"] = draw(
                    st.lists(st.sampled_from(["1.2.3.0/24", "10.9.0.0/16"]), max_size=2)
                )
        np = 30000 + i if typ != "ClusterIP" else None
        svcs.append(
            svc(f"s{i}", f"172.30.0.{i + 1}", 80 + draw(st.integers(0, 2)), typ=typ, node_port=np, **spec)
        )
        addrs = draw(
            st.lists(
                st.tuples(ips, cond, st.sampled_from([None, "node1", "node2"])),
                max_size=draw(st.sampled_from([3, 12])),
            )
        )
        endpoints = [(ip, {"conditions": c, **({"nodeName": nn} if nn else {})}) for ip, c, nn in addrs]
        slices.append(eps(f"s{i}", *endpoints, port=draw(st.sampled_from([80, 8080]))))
    return svcs, slices


OPTS = st.fixed_dictionaries(
    {
        "cluster_cidr": st.sampled_from([None, CIDR]),
        "node_ip": st.sampled_from([None, "10.9.1.1"]),
        "masquerade_all": st.booleans(),
    }
)


@settings(max_examples=60, deadline=None)
@given(services_and_slices(), services_and_slices(), OPTS, st.data())
def test_rust_agrees_with_reference(a, b, opts, data):
    m1, m2 = build_model(*a, "node1"), build_model(*b, "node1")
    # iptables, full then partial against the first sync's chains
    t1, act1, s1 = _native.proxy_render_iptables(m1, **opts)
    assert (t1, act1, s1) == ref.render_iptables(m1, **opts)
    changed = data.draw(st.lists(st.booleans(), min_size=len(m2["names"]), max_size=len(m2["names"])))
    got = _native.proxy_render_iptables(m2, changed=changed, existing_chains=act1, **opts)
    assert got == ref.render_iptables(m2, changed=changed, existing_chains=act1, **opts)
    # nftables, full then incremental
    n1, st1, ns1 = _native.proxy_render_nftables(m1, **opts)
    r1, rst1, rs1 = ref.render_nftables(m1, **opts)
    assert (n1, ns1) == (r1, rs1)
    n2, st2, ns2 = _native.proxy_render_nftables(m2, previous=st1, **opts)
    r2, _, rs2 = ref.render_nftables(m2, previous=rst1, **opts)
    assert (n2, ns2) == (r2, rs2)
    # applying the difference to the first state gives the second state's elements
    full2 = _native.proxy_render_nftables(m2, **opts)[1]
    assert sorted(st2.chains) == sorted(full2.chains)
    for name, _ in ref.CONTAINERS:
        assert st2.elements(name) == full2.elements(name)


@settings(max_examples=40, deadline=None)
@given(st.lists(services_and_slices(), min_size=2, max_size=4), OPTS)
def test_table_incremental_agrees_with_reference(states, opts):
    """The persistent table's syncs equal the reference full diff between consecutive states."""
    ipt = _native.ProxyTable("iptables", **opts)
    nft = _native.ProxyTable("nftables", **opts)
    prev_m = None
    ref_state = None
    for svcs, slices in states:
        m = build_model(svcs, slices, "node1")
        ipt.replace(m)
        nft.replace(m)
        text, stats = nft.render()
        want, ref_state, want_stats = ref.render_nftables(m, previous=ref_state, **opts)
        assert text == want
        for k in ("elements", "chains", "rules", "added", "deleted"):
            assert stats[k] == want_stats[k], k
        nft.commit()
        itext, istats = ipt.render()
        if prev_m is None:
            assert istats["full"]
            assert itext == ref.render_iptables(m, **opts)[0]
        else:
            before = ref.render_iptables(prev_m, **opts)[1]
            changed = [not _same_row(prev_m, m, i) for i in range(len(m["names"]))]
            assert itext == ref.render_iptables(m, changed=changed, existing_chains=before, **opts)[0]
        ipt.commit()
        prev_m = m


def _same_row(a, b, i):
    """Whether row i of b is in a with the same contents."""
    key = (b["names"][i], b["protocols"][i])
    keys = list(zip(a["names"], a["protocols"], strict=True))
    if key not in keys:
        return False
    j = keys.index(key)

    def row(m, k):
        out = []
        for col in (
            "cluster_ips",
            "ports",
            "node_ports",
            "health_check_node_ports",
            "flags",
            "affinity_timeouts",
        ):
            out.append(m[col][k])
        for col in ("external_ip", "lb_ip", "source_range"):
            o = m[col + "_offsets"]
            out.append(m[col + "s"][o[k] : o[k + 1]])
        o = m["ep_offsets"]
        out.append([(m["ep_ips"][e], m["ep_ports"][e], m["ep_flags"][e]) for e in range(o[k], o[k + 1])])
        return out

    return row(a, j) == row(b, i)


def test_model_builder_changes_only_touched_services():
    svcs, slices = upstream_services(50, 3)
    b = ModelBuilder()
    for s in svcs:
        b.set_service(s)
    for s in slices:
        b.set_slice(s)
    m, removed = b.changes()
    assert len(m["names"]) == 50 and removed == []
    t = _native.ProxyTable("nftables", cluster_cidr=CIDR)
    t.update(m, removed)
    t.render()
    t.commit()
    slices[7]["endpoints"].pop()
    b.set_slice(slices[7])
    m, removed = b.changes()
    assert m["names"] == ["namespace/svc7:8080"] and len(m["ep_ips"]) == 2
    t.update(m, removed)
    text, stats = t.render()
    assert stats["changed_rows"] == 1 and stats["deleted"] >= 1
    full = _native.proxy_render_nftables(build_model(svcs, slices), cluster_cidr=CIDR)[2]
    assert stats["elements"] == full["elements"]
    b.delete_service("namespace", "svc8")
    m, removed = b.changes()
    assert m["names"] == [] and removed == [("namespace/svc8:8080", 0)]


def test_nftables_rules_do_not_grow():
    small = _native.proxy_render_nftables(build_model(*upstream_services(5, 10)), cluster_cidr=CIDR)[2]
    big = _native.proxy_render_nftables(build_model(*upstream_services(200, 10)), cluster_cidr=CIDR)[2]
    assert (small["rules"], small["chains"]) == (big["rules"], big["chains"])
    assert big["elements"] > small["elements"]


def test_nftables_one_endpoint_change_is_few_elements():
    svcs, slices = upstream_services(200, 10)
    m1 = build_model(svcs, slices)
    _, state, _ = _native.proxy_render_nftables(m1, cluster_cidr=CIDR)
    slices[57]["endpoints"][3]["addresses"] = ["172.16.9.9"]
    text, _, stats = _native.proxy_render_nftables(
        build_model(svcs, slices), cluster_cidr=CIDR, previous=state
    )
    lines = text.decode().splitlines()
    assert all(ln.startswith(("add element", "delete element")) for ln in lines), lines
    # only the changed service's buckets (re-sorted endpoints) and one hairpin pair; not O(services)
    assert stats["added"] + stats["deleted"] <= 2 * 10 + 2
    assert all("10.0.0.58 . tcp . 137" in ln or "hairpin" in ln for ln in lines), lines


def test_partial_sync_writes_only_changed_chains():
    svcs, slices = upstream_services(3, 2)
    m = build_model(svcs, slices)
    _, active, _ = _native.proxy_render_iptables(m)
    del svcs[1], slices[1]
    slices[0]["endpoints"].append({"addresses": ["172.16.0.7"]})
    m2 = build_model(svcs, slices)
    text = _native.proxy_render_iptables(m2, changed=[True, False], existing_chains=active)[0].decode()
    svc0 = _native.proxy_service_chain_name("namespace/svc0:8080", "tcp")
    svc1 = _native.proxy_service_chain_name("namespace/svc1:8080", "tcp")
    svc2 = _native.proxy_service_chain_name("namespace/svc2:8080", "tcp")
    assert f":{svc0} - [0:0]" in text and f"-A {svc0} " in text
    assert f":{svc2}" not in text and f"-A {svc2} " not in text  # unchanged: left alone
    assert '-A KUBE-SERVICES -m comment --comment "namespace/svc2:8080 cluster IP"' in text
    assert f"-X {svc1}" in text  # deleted service's chains removed


# --- packet tracer ----------------------------------------------------------------------------


def rules(services, slices, node="node1") -> bytes:
    return _native.proxy_render_iptables(
        build_model(services, slices, node), cluster_cidr=CIDR, node_ip="192.168.0.2"
    )[0]


def test_trace_cluster_ip():
    t = rules([svc("web", "172.30.0.41")], [eps("web", "10.180.0.1", "10.180.0.2")])
    v = ref.trace(t, ref.Packet("10.0.0.5", "172.30.0.41", 80))
    assert v.action == "DNAT" and v.endpoints == {"10.180.0.1:80", "10.180.0.2:80"} and not v.masquerade
    v = ref.trace(t, ref.Packet("192.168.7.7", "172.30.0.41", 80))  # from outside the cluster CIDR
    assert v.masquerade
    assert ref.trace(t, ref.Packet("10.0.0.5", "172.30.0.41", 81)).action == "ACCEPT"
    hairpin = ref.trace(t, ref.Packet("10.180.0.1", "172.30.0.41", 80), rng=random.Random(1))
    if hairpin.endpoints == {"10.180.0.1:80"}:
        assert hairpin.masquerade


def test_trace_nodeport():
    t = rules(
        [svc("web", "172.30.0.41", typ="NodePort", node_port=3001)], [eps("web", "10.180.0.1", "10.180.0.2")]
    )
    v = ref.trace(t, ref.Packet("8.8.8.8", "192.168.0.2", 3001, dst_local=True))
    assert v.action == "DNAT" and len(v.endpoints) == 2 and v.masquerade
    assert ref.trace(t, ref.Packet("8.8.8.8", "192.168.0.9", 3001)).action == "ACCEPT"  # not a local address


def test_trace_affinity_pins_client():
    s = svc("web", "172.30.0.41", sessionAffinity="ClientIP")
    t = rules([s], [eps("web", *[f"10.180.0.{i}" for i in range(1, 6)])])
    recent: dict[str, set[str]] = {}
    rng = random.Random(7)
    first = ref.trace(t, ref.Packet("10.0.0.5", "172.30.0.41", 80), recent, rng).endpoints
    for _ in range(20):
        assert ref.trace(t, ref.Packet("10.0.0.5", "172.30.0.41", 80), recent, rng).endpoints == first
    others = {
        frozenset(ref.trace(t, ref.Packet(f"10.0.1.{i}", "172.30.0.41", 80), recent, rng).endpoints)
        for i in range(30)
    }
    assert len(others) > 1


def test_trace_local_policy():
    s = svc("web", "172.30.0.41", typ="NodePort", node_port=3001, externalTrafficPolicy="Local")
    local = ("10.180.0.1", {"nodeName": "node1"})
    remote = ("10.180.0.2", {"nodeName": "node2"})
    t = rules([s], [eps("web", local, remote)])
    v = ref.trace(t, ref.Packet("8.8.8.8", "192.168.0.2", 3001, dst_local=True))
    assert v.endpoints == {"10.180.0.1:80"} and not v.masquerade  # source IP preserved
    v = ref.trace(t, ref.Packet("10.0.0.5", "192.168.0.2", 3001, dst_local=True))  # pod: short-circuit
    assert v.endpoints == {"10.180.0.1:80", "10.180.0.2:80"}
    t = rules([s], [eps("web", remote)])
    v = ref.trace(t, ref.Packet("8.8.8.8", "192.168.0.2", 3001, dst_local=True))
    assert v.action == "DROP"
    i = svc("web", "172.30.0.41", internalTrafficPolicy="Local")
    t = rules([i], [eps("web", remote)])
    assert ref.trace(t, ref.Packet("10.0.0.5", "172.30.0.41", 80)).action == "DROP"
    assert b"has no local endpoints" in t


def test_trace_no_endpoints_and_terminating_fallback():
    t = rules([svc("web", "172.30.0.41", typ="NodePort", node_port=3001)], [eps("web")])
    assert ref.trace(t, ref.Packet("10.0.0.5", "172.30.0.41", 80)).action == "REJECT"
    assert ref.trace(t, ref.Packet("8.8.8.8", "192.168.0.2", 3001, dst_local=True)).action == "REJECT"
    term = ("10.180.0.3", {"conditions": {"ready": False, "serving": True, "terminating": True}})
    notready = ("10.180.0.4", {"conditions": {"ready": False}})
    t = rules([svc("web", "172.30.0.41")], [eps("web", term, notready)])
    assert ref.trace(t, ref.Packet("10.0.0.5", "172.30.0.41", 80)).endpoints == {"10.180.0.3:80"}
    t = rules([svc("web", "172.30.0.41")], [eps("web", term, notready, "10.180.0.5")])
    assert ref.trace(t, ref.Packet("10.0.0.5", "172.30.0.41", 80)).endpoints == {"10.180.0.5:80"}


def test_model_errors_are_clear():
    bad = svc("web", "172.30.0.41")
    bad["spec"]["ports"][0]["protocol"] = "ICMP"
    with pytest.raises(ModelError, match='Unsupported value: .ICMP.: supported values: "SCTP", "TCP", "UDP"'):
        build_model([bad], [])
    with pytest.raises(ValueError, match="ep_offsets"):
        m = build_model([svc("web", "172.30.0.41")], [])
        m["ep_offsets"] = [0]
        _native.proxy_render_iptables(m)


def test_headless_and_external_name_skipped():
    m = build_model([svc("h", "None"), svc("x", "", typ="ExternalName")], [])
    assert m["names"] == []


# --- CLI and backends (fake runner) -------------------------------------------------------------


def test_cli_render(tmp_path, capsys):
    import yaml

    f = tmp_path / "svc.yaml"
    f.write_text(yaml.safe_dump_all([svc("web", "172.30.0.41"), eps("web", "10.180.0.1")]))
    assert main(["proxy", "render", "--mode", "iptables", "-f", str(f), "--cluster-cidr", CIDR]) == 0
    out = capsys.readouterr().out
    assert '-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP"' not in out
    assert "--to-destination 10.180.0.1:80" in out and out.startswith("*filter\n")
    assert main(["proxy", "render", "--mode", "nftables", "-f", str(f)]) == 0
    out = capsys.readouterr().out
    assert "172.30.0.41 . tcp . 80 . 0 : 10.180.0.1 . 80" in out
    assert main(["proxy", "render", "-f", str(tmp_path / "missing.yaml")]) == 1
    assert "No such file" in capsys.readouterr().err


class FakeRunner:
    def __init__(self, fail: set[str] | None = None) -> None:
        self.calls: list[tuple[list[str], bytes | None]] = []
        self.fail = fail or set()

    def __call__(self, argv, input=None):
        self.calls.append((list(argv), input))
        rc = 1 if argv[0] in self.fail else 0
        self.fail.discard(argv[0])
        return subprocess.CompletedProcess(list(argv), rc, b"", b"boom" if rc else b"")


def test_iptables_partial_failure_falls_back_to_full():
    svcs, slices = upstream_services(3, 2)
    r = FakeRunner()
    b = IptablesBackend(r, cluster_cidr=CIDR)
    assert b.sync(build_model(svcs, slices)).full
    first = r.calls[-1][1] or b""
    assert b'-I PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES' in first
    slices[0]["endpoints"].append({"addresses": ["172.16.0.9"]})
    res = b.sync(build_model(svcs, slices))
    assert not res.full and res.stats["nat_chains"] < 10
    slices[0]["endpoints"].pop()
    r.fail = {"iptables-restore"}
    res = b.sync(build_model(svcs, slices))
    assert res.full and res.fell_back


def test_nftables_backend_incremental_then_recovers():
    svcs, slices = upstream_services(3, 2)
    r = FakeRunner()
    b = NftablesBackend(r)
    assert b.sync(build_model(svcs, slices)).full
    slices[0]["endpoints"].append({"addresses": ["172.16.0.9"]})
    res = b.sync(build_model(svcs, slices))
    assert not res.full and b"delete table" not in (r.calls[-1][1] or b"")
    slices[0]["endpoints"].pop()
    r.fail = {"nft"}
    res = b.sync(build_model(svcs, slices))
    assert res.full and res.fell_back


def test_parallel_generation_matches_reference():
    """Above 2,000 rows the Rust generator splits the rows over threads; the text must not change."""
    svcs, slices = upstream_services(2500, 2)
    for i, s in enumerate(svcs):
        s["spec"]["clusterIP"] = f"10.{i // 250}.{i % 250}.1"
        s["spec"]["ports"][0]["port"] = 80
    m = build_model(svcs, slices)
    assert _native.proxy_render_iptables(m, cluster_cidr=CIDR) == ref.render_iptables(m, cluster_cidr=CIDR)
    changed = [i % 7 == 0 for i in range(len(m["names"]))]
    got = _native.proxy_render_iptables(m, cluster_cidr=CIDR, changed=changed, existing_chains=["KUBE-SVC-X"])
    assert got == ref.render_iptables(m, cluster_cidr=CIDR, changed=changed, existing_chains=["KUBE-SVC-X"])
    text, _, stats = _native.proxy_render_nftables(m, cluster_cidr=CIDR)
    want, _, want_stats = ref.render_nftables(m, cluster_cidr=CIDR)
    assert (text, stats) == (want, want_stats)
    t = _native.ProxyTable("nftables", cluster_cidr=CIDR)
    t.replace(m)
    assert t.render()[0] == want
