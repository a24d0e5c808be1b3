"""Plain-Python reference for the native proxy generators (core/src/proxy), plus a packet tracer.

``render_iptables`` / ``render_nftables`` take the same columnar model as
``hyperkube._native.proxy_render_iptables`` / ``proxy_render_nftables`` and must return the same
text; hypothesis tests check they agree. ``trace`` follows a packet through generated
``iptables-restore`` input the way upstream's proxier_test.go packet tracer does.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import random
from dataclasses import dataclass, field
from typing import Any

from hyperkube.proxy.model import (
    EP_LOCAL,
    EP_READY,
    EP_SERVING,
    EP_TERMINATING,
    PROTOCOLS,
    SVC_AFFINITY,
    SVC_EXTERNAL_LOCAL,
    SVC_INTERNAL_LOCAL,
    Model,
)

LARGE = 1000
MASQ = "0x4000"


def hash16(*parts: str) -> str:
    return base64.b32encode(hashlib.sha256("".join(parts).encode()).digest()).decode()[:16]


def service_chain_name(name: str, protocol: str) -> str:
    return "KUBE-SVC-" + hash16(name, protocol)


def endpoint_chain_name(name: str, protocol: str, endpoint: str) -> str:
    return "KUBE-SEP-" + hash16(name, protocol, endpoint)


class Row:
    def __init__(self, m: Model, i: int) -> None:
        self.m, self.i = m, i
        self.name: str = m["names"][i]
        self.proto = PROTOCOLS[m["protocols"][i]]
        self.cip: str = m["cluster_ips"][i]
        self.port: int = m["ports"][i]
        self.np: int = m["node_ports"][i]
        self.hc: int = m["health_check_node_ports"][i]
        self.flags: int = m["flags"][i]
        self.timeout: int = m["affinity_timeouts"][i]

        def sl(col: str) -> list[str]:
            o = m[col + "_offsets"]
            return list(m[col + "s"][o[i] : o[i + 1]])

        self.external_ips = sl("external_ip")
        self.lb_ips = sl("lb_ip")
        self.ranges = sl("source_range")
        self.eps = list(range(m["ep_offsets"][i], m["ep_offsets"][i + 1]))

    @property
    def accessible(self) -> bool:
        return self.np != 0 or bool(self.lb_ips) or bool(self.external_ips)

    @property
    def int_local(self) -> bool:
        return bool(self.flags & SVC_INTERNAL_LOCAL)

    @property
    def ext_local(self) -> bool:
        return bool(self.flags & SVC_EXTERNAL_LOCAL) and self.accessible

    @property
    def affinity(self) -> bool:
        return bool(self.flags & SVC_AFFINITY)

    @property
    def uses_cluster(self) -> bool:
        return not self.int_local or (self.accessible and not self.ext_local)

    @property
    def uses_local(self) -> bool:
        return self.int_local or (self.accessible and self.ext_local)

    def ep(self, e: int) -> str:
        return f"{self.m['ep_ips'][e]}:{self.m['ep_ports'][e]}"


@dataclass
class Cat:
    cluster: list[int] = field(default_factory=list)
    local: list[int] = field(default_factory=list)
    all: list[int] = field(default_factory=list)
    has_any: bool = False


def categorize(r: Row) -> Cat:
    f = r.m["ep_flags"]

    def ready(e: int) -> bool:
        return bool(f[e] & EP_READY)

    def st(e: int) -> bool:
        return bool(f[e] & EP_SERVING) and bool(f[e] & EP_TERMINATING)

    def local(e: int) -> bool:
        return bool(f[e] & EP_LOCAL)

    c = Cat()
    if r.uses_cluster:
        c.cluster = [e for e in r.eps if ready(e)] or [e for e in r.eps if st(e)]
        c.has_any = bool(c.cluster)
    if not r.uses_local:
        c.all = list(c.cluster)
        return c
    local_ready = local_st = False
    for e in r.eps:
        if ready(e):
            c.has_any = True
            local_ready |= local(e)
        elif st(e):
            c.has_any = True
            local_st |= local(e)
    use_st = False
    if local_ready:
        c.local = [e for e in r.eps if local(e) and ready(e)]
    elif local_st:
        use_st = True
        c.local = [e for e in r.eps if local(e) and st(e)]
    if not r.uses_cluster:
        c.all = list(c.local)
    elif not use_st:
        c.all = list(c.cluster)
    else:
        c.all = sorted(set(c.cluster) | set(c.local))
    return c


def _in_cidr(ip: str | None, cidr: str) -> bool:
    try:
        return ip is not None and ipaddress.IPv4Address(ip) in ipaddress.IPv4Network(
            cidr.strip(), strict=False
        )
    except ValueError:
        return False


SERVICE_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-SEP-", "KUBE-FW-", "KUBE-EXT-")


def render_iptables(
    m: Model,
    *,
    cluster_cidr: str | None = None,
    node_ip: str | None = None,
    masquerade_all: bool = False,
    changed: list[bool] | None = None,
    existing_chains: list[str] | None = None,
) -> tuple[bytes, list[str], dict[str, int]]:
    fc: list[str] = []
    fr: list[str] = []
    nc: list[str] = []
    nr: list[str] = []
    for c in (
        "KUBE-SERVICES",
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-FORWARD",
        "KUBE-NODEPORTS",
        "KUBE-PROXY-FIREWALL",
    ):
        fc.append(f":{c} - [0:0]")
    for c in ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"):
        nc.append(f":{c} - [0:0]")
    nr.append(f"-A KUBE-POSTROUTING -m mark ! --mark {MASQ}/{MASQ} -j RETURN")
    nr.append(f"-A KUBE-POSTROUTING -j MARK --xor-mark {MASQ}")
    nr.append(
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully'
    )
    nr.append(f"-A KUBE-MARK-MASQ -j MARK --or-mark {MASQ}")
    large = len(m["ep_ips"]) > LARGE
    cidr = cluster_cidr or None
    active: list[str] = []
    for i in range(len(m["names"])):
        r = Row(m, i)
        name, proto, cip, port = r.name, r.proto, r.cip, r.port
        h = hash16(name, proto)
        svc, svl, fw, ext = f"KUBE-SVC-{h}", f"KUBE-SVL-{h}", f"KUBE-FW-{h}", f"KUBE-EXT-{h}"
        c = categorize(r)
        uses_cluster_chain = bool(c.cluster) and r.uses_cluster
        uses_local_chain = bool(c.local) and r.uses_local
        internal_chain, has_internal = svc, c.has_any
        if r.int_local:
            internal_chain = svl
            if not c.local:
                has_internal = False
        ext_policy_chain, has_external = svc, c.has_any
        if r.ext_local:
            ext_policy_chain = svl
            if not c.local:
                has_external = False
        uses_ext = c.has_any and r.accessible
        uses_fw = c.has_any and bool(r.lb_ips) and bool(r.ranges)
        lb_chain = fw if uses_fw else ext
        if not c.has_any:
            tgt, comment = "REJECT", f'"{name} has no endpoints"'
        else:
            tgt, comment = "DROP", f'"{name} has no local endpoints"'
        mp = f"-m {proto} -p {proto}"
        if has_internal:
            nr.append(
                f'-A KUBE-SERVICES -m comment --comment "{name} cluster IP" {mp} -d {cip} --dport {port} -j {internal_chain}'
            )
        else:
            fr.append(
                f"-A KUBE-SERVICES -m comment --comment {comment} {mp} -d {cip} --dport {port} -j {tgt}"
            )
        for eip in r.external_ips:
            if c.has_any:
                nr.append(
                    f'-A KUBE-SERVICES -m comment --comment "{name} external IP" {mp} -d {eip} --dport {port} -j {ext}'
                )
            if not has_external:
                fr.append(
                    f"-A KUBE-EXTERNAL-SERVICES -m comment --comment {comment} {mp} -d {eip} --dport {port} -j {tgt}"
                )
        for lbip in r.lb_ips:
            if c.has_any:
                nr.append(
                    f'-A KUBE-SERVICES -m comment --comment "{name} loadbalancer IP" {mp} -d {lbip} --dport {port} -j {lb_chain}'
                )
            if uses_fw:
                fr.append(
                    f'-A KUBE-PROXY-FIREWALL -m comment --comment "{name} traffic not accepted by {fw}" {mp} -d {lbip} --dport {port} -j DROP'
                )
        if not has_external:
            for lbip in r.lb_ips:
                fr.append(
                    f"-A KUBE-EXTERNAL-SERVICES -m comment --comment {comment} {mp} -d {lbip} --dport {port} -j {tgt}"
                )
        if r.np:
            if c.has_any:
                nr.append(f"-A KUBE-NODEPORTS -m comment --comment {name} {mp} --dport {r.np} -j {ext}")
            if not has_external:
                fr.append(
                    f"-A KUBE-EXTERNAL-SERVICES -m comment --comment {comment} -m addrtype --dst-type LOCAL {mp} --dport {r.np} -j {tgt}"
                )
        if r.hc:
            fr.append(
                f'-A KUBE-NODEPORTS -m comment --comment "{name} health check node port" -m tcp -p tcp --dport {r.hc} -j ACCEPT'
            )
        skip = changed is not None and not changed[i]
        chains: list[str] = [] if skip else nc
        rules: list[str] = [] if skip else nr
        if has_internal:
            args = f'-m comment --comment "{name} cluster IP" {mp} -d {cip} --dport {port}'
            if masquerade_all:
                rules.append(f"-A {internal_chain} {args} -j KUBE-MARK-MASQ")
            elif cidr:
                rules.append(f"-A {internal_chain} {args} ! -s {cidr} -j KUBE-MARK-MASQ")
        if uses_ext:
            chains.append(f":{ext} - [0:0]")
            active.append(ext)
            if not r.ext_local:
                rules.append(
                    f'-A {ext} -m comment --comment "masquerade traffic for {name} external destinations" -j KUBE-MARK-MASQ'
                )
            else:
                if cidr:
                    rules.append(
                        f'-A {ext} -m comment --comment "pod traffic for {name} external destinations" -s {cidr} -j {svc}'
                    )
                rules.append(
                    f'-A {ext} -m comment --comment "masquerade LOCAL traffic for {name} external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ'
                )
                rules.append(
                    f'-A {ext} -m comment --comment "route LOCAL traffic for {name} external destinations" -m addrtype --src-type LOCAL -j {svc}'
                )
            if has_external:
                rules.append(f"-A {ext} -j {ext_policy_chain}")
        if uses_fw:
            chains.append(f":{fw} - [0:0]")
            active.append(fw)
            a = f'-A {fw} -m comment --comment "{name} loadbalancer IP"'
            allow = False
            for rg in r.ranges:
                rules.append(f"{a} -s {rg} -j {ext}")
                allow |= _in_cidr(node_ip, rg)
            if allow:
                for lbip in r.lb_ips:
                    rules.append(f"{a} -s {lbip} -j {ext}")
            rules.append(
                f'-A {fw} -m comment --comment "other traffic to {name} will be dropped by KUBE-PROXY-FIREWALL"'
            )
        sep = {e: endpoint_chain_name(name, proto, r.ep(e)) for e in c.all}

        def to_eps(
            chain: str,
            eps: list[int],
            rules: list[str] = rules,
            r: Row = r,
            name: str = name,
            sep: dict[int, str] = sep,
        ) -> None:
            if r.affinity:
                for e in eps:
                    cm = "" if large else f' -m comment --comment "{name} -> {r.ep(e)}"'
                    rules.append(
                        f"-A {chain}{cm} -m recent --name {sep[e]} --rcheck --seconds {r.timeout} --reap -j {sep[e]}"
                    )
            n = len(eps)
            for k, e in enumerate(eps):
                cm = "" if large else f' -m comment --comment "{name} -> {r.ep(e)}"'
                st = f" -m statistic --mode random --probability {1.0 / (n - k):.10f}" if k < n - 1 else ""
                rules.append(f"-A {chain}{cm}{st} -j {sep[e]}")

        if uses_cluster_chain:
            chains.append(f":{svc} - [0:0]")
            active.append(svc)
            to_eps(svc, c.cluster)
        if uses_local_chain:
            chains.append(f":{svl} - [0:0]")
            active.append(svl)
            to_eps(svl, c.local)
        for e in c.all:
            s = sep[e]
            chains.append(f":{s} - [0:0]")
            active.append(s)
            a = f"-A {s}" + ("" if large else f" -m comment --comment {name}")
            rules.append(f"{a} -s {m['ep_ips'][e]} -j KUBE-MARK-MASQ")
            if r.affinity:
                a += f" -m recent --name {s} --set"
            rules.append(f"{a} {mp} -j DNAT --to-destination {r.ep(e)}")
    active = sorted(set(active))
    act = set(active)
    stale = sorted({c for c in existing_chains or [] if c.startswith(SERVICE_PREFIXES) and c not in act})
    for c in stale:
        nc.append(f":{c} - [0:0]")
        nr.append(f"-X {c}")
    nr.append(
        '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS'
    )
    fr.append("-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP")
    fr.append(
        f'-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark {MASQ}/{MASQ} -j ACCEPT'
    )
    fr.append(
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT'
    )
    lines = ["*filter", *fc, *fr, "COMMIT", "*nat", *nc, *nr, "COMMIT"]
    stats = {
        "filter_rules": len(fr),
        "nat_rules": len(nr),
        "nat_chains": len(nc),
        "deleted_chains": len(stale),
        "large_cluster": large,
    }
    return ("\n".join(lines) + "\n").encode(), active, stats


# --- nftables -------------------------------------------------------------------------------

CONTAINERS = (
    ("svc-ips", "map svc-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }"),
    ("svc-nodeports", "map svc-nodeports { type inet_proto . inet_service : verdict ; }"),
    ("short-ips", "map short-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }"),
    ("short-nodeports", "map short-nodeports { type inet_proto . inet_service : verdict ; }"),
    (
        "backends",
        "map backends { typeof ip daddr . meta l4proto . th dport . numgen random mod 1 : ip daddr . tcp dport ; }",
    ),
    (
        "np-backends",
        "map np-backends { typeof meta l4proto . th dport . numgen random mod 1 : ip daddr . tcp dport ; }",
    ),
    (
        "short-backends",
        "map short-backends { typeof ip daddr . meta l4proto . th dport . numgen random mod 1 : ip daddr . tcp dport ; }",
    ),
    (
        "short-np-backends",
        "map short-np-backends { typeof meta l4proto . th dport . numgen random mod 1 : ip daddr . tcp dport ; }",
    ),
    ("no-endpoints", "map no-endpoints { type ipv4_addr . inet_proto . inet_service : verdict ; }"),
    ("no-endpoint-nodeports", "map no-endpoint-nodeports { type inet_proto . inet_service : verdict ; }"),
    ("hairpin", "set hairpin { type ipv4_addr . ipv4_addr ; }"),
    ("fw-ips", "set fw-ips { type ipv4_addr . inet_proto . inet_service ; }"),
    (
        "fw-allow",
        "set fw-allow { type ipv4_addr . inet_proto . inet_service . ipv4_addr ; flags interval ; }",
    ),
)
IDX = {n: k for k, (n, _) in enumerate(CONTAINERS)}
IPKEY = "ip daddr . meta l4proto . th dport"
NPKEY = "meta l4proto . th dport"


def static_chains() -> list[tuple[str, list[str]]]:
    return [
        ("nat-prerouting", ["type nat hook prerouting priority -100 ; policy accept ;", "jump services"]),
        ("nat-output", ["type nat hook output priority -100 ; policy accept ;", "jump services"]),
        (
            "nat-postrouting",
            ["type nat hook postrouting priority 100 ; policy accept ;", "jump masquerading"],
        ),
        (
            "filter-prerouting",
            [
                "type filter hook prerouting priority -110 ; policy accept ;",
                "ct state new jump firewall-check",
            ],
        ),
        (
            "filter-input",
            [
                "type filter hook input priority -110 ; policy accept ;",
                "ct state new jump nodeport-endpoints-check",
                "ct state new jump service-endpoints-check",
            ],
        ),
        (
            "filter-forward",
            [
                "type filter hook forward priority -110 ; policy accept ;",
                "ct state new jump service-endpoints-check",
            ],
        ),
        (
            "filter-output",
            [
                "type filter hook output priority -110 ; policy accept ;",
                "ct state new jump service-endpoints-check",
                "ct state new jump firewall-check",
            ],
        ),
        ("service-endpoints-check", [f"{IPKEY} vmap @no-endpoints"]),
        (
            "nodeport-endpoints-check",
            [f"fib daddr type local ip daddr != 127.0.0.0/8 {NPKEY} vmap @no-endpoint-nodeports"],
        ),
        ("firewall-check", [f"{IPKEY} @fw-ips {IPKEY} . ip saddr != @fw-allow drop"]),
        ("reject-chain", ["reject"]),
        (
            "services",
            [
                f"{IPKEY} vmap @svc-ips",
                f"fib daddr type local ip daddr != 127.0.0.0/8 {NPKEY} vmap @svc-nodeports",
            ],
        ),
        ("mark-for-masquerade", [f"meta mark set meta mark | {MASQ}"]),
        (
            "masquerading",
            [
                f"ct status dnat ip saddr . ip daddr @hairpin meta mark set meta mark | {MASQ}",
                f"meta mark & {MASQ} == 0 return",
                f"meta mark set meta mark ^ {MASQ}",
                "masquerade fully-random",
            ],
        ),
    ]


def chain_rules(name: str, cluster_cidr: str | None, masquerade_all: bool) -> list[str]:
    kind, rest = name.rsplit("-", 1)
    n = int(rest[1:])
    sel = f"jhash ip saddr mod {n} seed 0x6b756265" if rest[0] == "a" else f"numgen random mod {n}"
    cidr = cluster_cidr or None
    r: list[str] = []

    def local(key: str, short: str) -> None:
        if cidr:
            r.append(f"ip saddr {cidr} {key} vmap @{short}")
        r.append("fib saddr type local jump mark-for-masquerade")
        r.append(f"fib saddr type local {key} vmap @{short}")

    if kind == "svc":
        if masquerade_all:
            r.append("jump mark-for-masquerade")
        elif cidr:
            r.append(f"ip saddr != {cidr} jump mark-for-masquerade")
        r.append(f"dnat ip to {IPKEY} . {sel} map @backends")
    elif kind == "ext":
        r += ["jump mark-for-masquerade", f"dnat ip to {IPKEY} . {sel} map @backends"]
    elif kind == "extl":
        local(IPKEY, "short-ips")
        r.append("drop" if n == 0 else f"dnat ip to {IPKEY} . {sel} map @backends")
    elif kind == "short":
        r.append(f"dnat ip to {IPKEY} . {sel} map @short-backends")
    elif kind == "np":
        r += ["jump mark-for-masquerade", f"dnat ip to {NPKEY} . {sel} map @np-backends"]
    elif kind == "npl":
        local(NPKEY, "short-nodeports")
        r.append("drop" if n == 0 else f"dnat ip to {NPKEY} . {sel} map @np-backends")
    elif kind == "nps":
        r.append(f"dnat ip to {NPKEY} . {sel} map @short-np-backends")
    else:
        raise ValueError(kind)
    return r


def _lb(kind: str, aff: bool, n: int) -> str:
    return f"{kind}-{'a' if aff and n > 0 else 'r'}{n}"


@dataclass
class NftState:
    elements: list[dict[str, str]]
    chains: set[str]


def nft_elements(m: Model, node_ip: str | None) -> tuple[list[dict[str, str]], set[str]]:
    els: list[dict[str, str]] = [{} for _ in CONTAINERS]
    chains: set[str] = set()

    def add(c: str, k: str, v: str = "") -> None:
        els[IDX[c]].setdefault(k, v)

    def vmap(c: str, k: str, chain: str) -> None:
        chains.add(chain)
        add(c, k, f"goto {chain}")

    for i in range(len(m["names"])):
        r = Row(m, i)
        c = categorize(r)
        aff = r.affinity

        def ipkey(ip: str, r: Row = r) -> str:
            return f"{ip} . {r.proto} . {r.port}"

        npkey = f"{r.proto} . {r.np}"

        def ep(e: int) -> str:
            return f"{m['ep_ips'][e]} . {m['ep_ports'][e]}"

        ext_ips = r.external_ips + r.lb_ips
        if not c.has_any:
            add("no-endpoints", ipkey(r.cip), "goto reject-chain")
            for ip in ext_ips:
                add("no-endpoints", ipkey(ip), "goto reject-chain")
            if r.np:
                add("no-endpoint-nodeports", npkey, "goto reject-chain")
            continue

        def buckets(cont: str, key: str, eps: list[int]) -> None:
            for b, e in enumerate(eps):
                add(cont, f"{key} . {b}", ep(e))

        int_eps = c.local if r.int_local else c.cluster
        cip = ipkey(r.cip)
        if not int_eps:
            add("no-endpoints", cip, "drop")
        else:
            vmap("svc-ips", cip, _lb("svc", aff, len(int_eps)))
            buckets("backends", cip, int_eps)
        ext_eps = c.local if r.ext_local else c.cluster
        for ip in ext_ips:
            k = ipkey(ip)
            if r.ext_local:
                vmap("svc-ips", k, _lb("extl", aff, len(ext_eps)))
                if c.cluster:
                    vmap("short-ips", k, _lb("short", aff, len(c.cluster)))
                    buckets("short-backends", k, c.cluster)
            else:
                vmap("svc-ips", k, _lb("ext", aff, len(ext_eps)))
            buckets("backends", k, ext_eps)
        if r.np:
            if r.ext_local:
                vmap("svc-nodeports", npkey, _lb("npl", aff, len(ext_eps)))
                if c.cluster:
                    vmap("short-nodeports", npkey, _lb("nps", aff, len(c.cluster)))
                    buckets("short-np-backends", npkey, c.cluster)
            else:
                vmap("svc-nodeports", npkey, _lb("np", aff, len(ext_eps)))
            buckets("np-backends", npkey, ext_eps)
        if r.lb_ips and r.ranges:
            from_node = any(_in_cidr(node_ip, rg) for rg in r.ranges)
            for lb in r.lb_ips:
                k = ipkey(lb)
                add("fw-ips", k)
                for rg in r.ranges:
                    add("fw-allow", f"{k} . {rg.strip()}")
                if from_node:
                    add("fw-allow", f"{k} . {lb}/32")
        for e in c.all:
            ip = m["ep_ips"][e]
            add("hairpin", f"{ip} . {ip}")
    return els, chains


def render_nftables(
    m: Model,
    *,
    cluster_cidr: str | None = None,
    node_ip: str | None = None,
    masquerade_all: bool = False,
    previous: NftState | None = None,
) -> tuple[bytes, NftState, dict[str, int]]:
    els, chains = nft_elements(m, node_ip)
    statics = static_chains()
    out: list[str] = []
    t = "hyperkube"
    added = deleted = 0

    def fmt(k: str, v: str) -> str:
        return f"{k} : {v}" if v else k

    if previous is None:
        out.append(f"add table ip {t}")
        out.append(f"delete table ip {t}")
        out.append(f"table ip {t} {{")
        for _, decl in CONTAINERS:
            out.append(f"\t{decl}")
        for name, body in statics:
            out.append(f"\tchain {name} {{")
            out += [f"\t\t{line}" for line in body]
            out.append("\t}")
        for ch in sorted(chains):
            out.append(f"\tchain {ch} {{")
            out += [f"\t\t{line}" for line in chain_rules(ch, cluster_cidr, masquerade_all)]
            out.append("\t}")
        out.append("}")
        for k, (name, _) in enumerate(CONTAINERS):
            if els[k]:
                out.append(
                    f"add element ip {t} {name} {{ " + ", ".join(fmt(a, b) for a, b in els[k].items()) + " }"
                )
                added += len(els[k])
    else:
        for ch in sorted(chains - previous.chains):
            out.append(f"table ip {t} {{ chain {ch} {{")
            out += [f"\t{line}" for line in chain_rules(ch, cluster_cidr, masquerade_all)]
            out += ["}", "}"]
        for k, (name, _) in enumerate(CONTAINERS):
            old = previous.elements[k]
            dels = [key for key in old if key not in els[k]]
            adds: list[tuple[str, str]] = []
            for key, v in els[k].items():
                ov = old.get(key)
                if ov is None:
                    adds.append((key, v))
                elif ov != v:
                    dels.append(key)
                    adds.append((key, v))
            dels.sort()
            adds.sort()
            if dels:
                out.append(f"delete element ip {t} {name} {{ " + ", ".join(dels) + " }")
                deleted += len(dels)
            if adds:
                out.append(f"add element ip {t} {name} {{ " + ", ".join(fmt(a, b) for a, b in adds) + " }")
                added += len(adds)
        for ch in sorted(previous.chains - chains):
            out.append(f"delete chain ip {t} {ch}")
    rules = sum(sum(1 for line in b if not line.startswith("type ")) for _, b in statics)
    rules += sum(len(chain_rules(ch, cluster_cidr, masquerade_all)) for ch in chains)
    stats = {
        "full": previous is None,
        "elements": sum(len(e) for e in els),
        "chains": len(statics) + len(chains),
        "rules": rules,
        "added": added,
        "deleted": deleted,
    }
    text = "".join(line + "\n" for line in out)
    return text.encode(), NftState(els, chains), stats


# --- packet tracer over iptables-restore input ------------------------------------------------


@dataclass
class Packet:
    src: str
    dst: str
    dport: int
    proto: str = "tcp"
    src_local: bool = False  # -m addrtype --src-type LOCAL
    dst_local: bool = False  # -m addrtype --dst-type LOCAL


@dataclass
class Verdict:
    action: str  # "DNAT", "REJECT", "DROP", "ACCEPT" (nothing matched)
    endpoints: set[str] = field(default_factory=set)  # possible DNAT targets
    masquerade: bool = False


def parse_restore(text: str) -> dict[str, dict[str, list[list[str]]]]:
    """{table: {chain: [rule args]}} from iptables-restore input."""
    import shlex

    tables: dict[str, dict[str, list[list[str]]]] = {}
    cur: dict[str, list[list[str]]] = {}
    for line in text.splitlines():
        if line.startswith("*"):
            cur = tables.setdefault(line[1:], {})
        elif line.startswith(":"):
            cur.setdefault(line[1:].split()[0], [])
        elif line.startswith("-A "):
            args = shlex.split(line)
            cur.setdefault(args[1], []).append(args[2:])
    return tables


def _match(args: list[str], p: Packet, recent: dict[str, set[str]]) -> tuple[bool, dict[str, Any]]:
    """Whether the rule's conditions hold for ``p``; extra = jump target, probability, recent --set."""
    i, neg = 0, False
    extra: dict[str, Any] = {}
    while i < len(args):
        a = args[i]
        if a == "!":
            neg = True
            i += 1
            continue
        ok = True
        if a == "-m":
            mod = args[i + 1]
            i += 2
            if mod == "comment":
                i += 2
            elif mod == "addrtype":
                kind, val = args[i], args[i + 1]
                i += 2
                ok = (p.dst_local if kind == "--dst-type" else p.src_local) == (val == "LOCAL")
            elif mod == "statistic":  # --mode random --probability P
                extra["probability"] = float(args[i + 3])
                i += 4
            elif mod == "recent":
                name = args[i + 1]
                if args[i + 2] == "--set":  # --name X --set
                    extra["recent_set"] = name
                    i += 3
                else:  # --name X --rcheck --seconds T --reap
                    ok = p.src in recent.get(name, set())
                    i += 6
            elif mod in ("mark", "conntrack"):
                i += 2
            # "-m tcp" and friends carry no condition of their own
        elif a == "-p":
            ok = args[i + 1] == p.proto
            i += 2
        elif a in ("-d", "-s"):
            ip = p.dst if a == "-d" else p.src
            ok = ipaddress.IPv4Address(ip) in ipaddress.IPv4Network(args[i + 1], strict=False)
            i += 2
        elif a == "--dport":
            ok = int(args[i + 1]) == p.dport
            i += 2
        elif a == "-j":
            extra["jump"] = args[i + 1 :]
            i = len(args)
        else:
            raise ValueError(f"tracer does not understand {a!r} in {args}")
        if ok == neg:
            return False, extra
        neg = False
    return True, extra


def trace(
    text: str | bytes,
    p: Packet,
    recent: dict[str, set[str]] | None = None,
    rng: random.Random | None = None,
) -> Verdict:
    """Follow ``p`` through nat KUBE-SERVICES (as PREROUTING would), then the filter chains.

    Without ``rng`` every statistic branch is explored and ``endpoints`` holds all possible DNAT
    targets; with ``rng`` one branch is taken and ``recent`` is updated as ``-m recent --set``
    would (for affinity).
    """
    if isinstance(text, bytes):
        text = text.decode()
    t = parse_restore(text)
    recent = recent if recent is not None else {}
    v = Verdict("ACCEPT")

    def run(table: str, chain: str) -> str | None:
        for args in t[table].get(chain, []):
            ok, extra = _match(args, p, recent)
            if not ok:
                continue
            prob = extra.get("probability")
            if prob is not None and rng is not None and rng.random() >= prob:
                continue
            jump = extra.get("jump")
            if not jump:
                continue
            target = jump[0]
            if target == "KUBE-MARK-MASQ":
                v.masquerade = True
                continue
            if target == "DNAT":
                if "recent_set" in extra:
                    recent.setdefault(extra["recent_set"], set()).add(p.src)
                v.endpoints.add(jump[2])
                if rng is not None or prob is None:
                    return "DNAT"
                continue
            if target in ("REJECT", "DROP", "ACCEPT"):
                return target
            res = run(table, target)
            if res is not None and (rng is not None or prob is None):
                return res
        return None

    run("nat", "KUBE-SERVICES")
    if v.endpoints:
        v.action = "DNAT"
        return v
    v.masquerade = False
    for chain in ("KUBE-PROXY-FIREWALL", "KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES"):
        res = run("filter", chain)
        if res in ("REJECT", "DROP"):
            v.action = res
            return v
    return v
