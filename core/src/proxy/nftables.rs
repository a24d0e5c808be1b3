//! nftables mode: our own design, one `ip hyperkube` table whose rules do not grow with services.
//!
//! Upstream's nftables proxier still writes a chain per service and per endpoint (110k chains at
//! 10,000 services x 10 endpoints: minutes in `nft -f`). Here services and endpoints are only
//! *elements*:
//!
//! - `svc-ips` (daddr . proto . port) and `svc-nodeports` (proto . port) are verdict maps that
//!   send a new connection to a load-balancing chain `<kind>-<r|a><M>`, where M is the number of
//!   endpoints and `r`/`a` picks `numgen random mod M` or, for ClientIP affinity,
//!   `jhash ip saddr mod M` (a client keeps its endpoint while the endpoint set is unchanged).
//! - that chain does its masquerade marking and `dnat ip to <entry> . <bucket> map @backends`:
//!   `backends` maps (entry, bucket) to the endpoint's `ip . port`, one element per bucket.
//!   Chains exist per (kind, M) actually in use, so their number is bounded by the distinct
//!   endpoint counts, not by services.
//! - `no-endpoints` / `no-endpoint-nodeports` reject (or drop, for "no local endpoints") in the
//!   filter hooks; `hairpin` (endpoint . endpoint) masquerades a pod reaching itself; `fw-ips`
//!   and `fw-allow` implement loadBalancerSourceRanges.
//!
//! A sync computes every element (a full sync writes the table from scratch in one
//! transaction); with the previous [`State`] it writes only the difference: `delete element` and
//! `add element` for changed keys and `add chain`/`delete chain` for kinds coming into or out of
//! use, all in one `nft -f` transaction.

use super::{categorize, FxMap, FxSet, Model};
use std::collections::BTreeSet;
use std::fmt::Write;

pub const TABLE: &str = "hyperkube";
pub const MASQUERADE_MARK: &str = "0x4000";
const JHASH_SEED: &str = "0x6b756265";

/// The element containers, in the order they are declared and written.
pub const CONTAINERS: [(&str, &str); 13] = [
    (
        "svc-ips",
        "map svc-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }",
    ),
    (
        "svc-nodeports",
        "map svc-nodeports { type inet_proto . inet_service : verdict ; }",
    ),
    (
        "short-ips",
        "map short-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }",
    ),
    (
        "short-nodeports",
        "map short-nodeports { type inet_proto . inet_service : verdict ; }",
    ),
    // The data is declared as `ip daddr . tcp dport` (an inet_service either way): with
    // `th dport` there, nft 1.0.6 fails to load later rules that use the map ("conflicting
    // protocols specified: ip vs. th") once it reads the map's type back from the kernel.
    ("backends", "map backends { typeof ip daddr . meta l4proto . th dport . numgen random mod 1 : ip daddr . tcp dport ; }"),
    ("np-backends", "map np-backends { typeof meta l4proto . th dport . numgen random mod 1 : ip daddr . tcp dport ; }"),
    ("short-backends", "map short-backends { typeof ip daddr . meta l4proto . th dport . numgen random mod 1 : ip daddr . tcp dport ; }"),
    ("short-np-backends", "map short-np-backends { typeof meta l4proto . th dport . numgen random mod 1 : ip daddr . tcp dport ; }"),
    (
        "no-endpoints",
        "map no-endpoints { type ipv4_addr . inet_proto . inet_service : verdict ; }",
    ),
    (
        "no-endpoint-nodeports",
        "map no-endpoint-nodeports { type inet_proto . inet_service : verdict ; }",
    ),
    ("hairpin", "set hairpin { type ipv4_addr . ipv4_addr ; }"),
    (
        "fw-ips",
        "set fw-ips { type ipv4_addr . inet_proto . inet_service ; }",
    ),
    (
        "fw-allow",
        "set fw-allow { type ipv4_addr . inet_proto . inet_service . ipv4_addr ; flags interval ; }",
    ),
];

const SVC_IPS: usize = 0;
const SVC_NODEPORTS: usize = 1;
const SHORT_IPS: usize = 2;
const SHORT_NODEPORTS: usize = 3;
const BACKENDS: usize = 4;
const NP_BACKENDS: usize = 5;
const SHORT_BACKENDS: usize = 6;
const SHORT_NP_BACKENDS: usize = 7;
const NO_ENDPOINTS: usize = 8;
const NO_ENDPOINT_NODEPORTS: usize = 9;
const HAIRPIN: usize = 10;
const FW_IPS: usize = 11;
const FW_ALLOW: usize = 12;

#[derive(Clone, Debug, Default)]
pub struct Config {
    pub cluster_cidr: Option<String>,
    pub masquerade_all: bool,
    pub node_ip: Option<String>,
}

/// What is in the kernel after a successful sync: every element and every dynamic chain.
#[derive(Clone, Debug, Default)]
pub struct State {
    pub elements: Vec<FxMap<String, String>>,
    pub chains: BTreeSet<String>,
}

impl State {
    pub fn element_count(&self) -> usize {
        self.elements.iter().map(|m| m.len()).sum()
    }
}

#[derive(Clone, Debug, Default)]
pub struct Output {
    pub text: String,
    pub state: State,
    pub full: bool,
    pub elements: usize,
    pub chains: usize,
    pub rules: usize,
    pub added: usize,
    pub deleted: usize,
}

/// Elements in generation order (first occurrence of a key wins).
struct Containers {
    order: Vec<Vec<(String, String)>>,
    seen: Vec<FxSet<String>>,
    chains: BTreeSet<String>,
}

fn static_chains() -> Vec<(String, Vec<String>)> {
    let m = MASQUERADE_MARK;
    let ipkey = "ip daddr . meta l4proto . th dport";
    let npkey = "meta l4proto . th dport";
    let mut v: Vec<(String, Vec<String>)> = vec![
        (
            "nat-prerouting".into(),
            vec![
                "type nat hook prerouting priority -100 ; policy accept ;".into(),
                "jump services".into(),
            ],
        ),
        (
            "nat-output".into(),
            vec![
                "type nat hook output priority -100 ; policy accept ;".into(),
                "jump services".into(),
            ],
        ),
        (
            "nat-postrouting".into(),
            vec![
                "type nat hook postrouting priority 100 ; policy accept ;".into(),
                "jump masquerading".into(),
            ],
        ),
        (
            "filter-prerouting".into(),
            vec![
                "type filter hook prerouting priority -110 ; policy accept ;".into(),
                "ct state new jump firewall-check".into(),
            ],
        ),
        (
            "filter-input".into(),
            vec![
                "type filter hook input priority -110 ; policy accept ;".into(),
                "ct state new jump nodeport-endpoints-check".into(),
                "ct state new jump service-endpoints-check".into(),
            ],
        ),
        (
            "filter-forward".into(),
            vec![
                "type filter hook forward priority -110 ; policy accept ;".into(),
                "ct state new jump service-endpoints-check".into(),
            ],
        ),
        (
            "filter-output".into(),
            vec![
                "type filter hook output priority -110 ; policy accept ;".into(),
                "ct state new jump service-endpoints-check".into(),
                "ct state new jump firewall-check".into(),
            ],
        ),
        (
            "service-endpoints-check".into(),
            vec![format!("{ipkey} vmap @no-endpoints")],
        ),
        (
            "nodeport-endpoints-check".into(),
            vec![format!(
                "fib daddr type local ip daddr != 127.0.0.0/8 {npkey} vmap @no-endpoint-nodeports"
            )],
        ),
        (
            "firewall-check".into(),
            vec![format!(
                "{ipkey} @fw-ips {ipkey} . ip saddr != @fw-allow drop"
            )],
        ),
        ("reject-chain".into(), vec!["reject".into()]),
        (
            "services".into(),
            vec![
                format!("{ipkey} vmap @svc-ips"),
                format!("fib daddr type local ip daddr != 127.0.0.0/8 {npkey} vmap @svc-nodeports"),
            ],
        ),
        (
            "mark-for-masquerade".into(),
            vec![format!("meta mark set meta mark | {m}")],
        ),
        (
            "masquerading".into(),
            vec![
                format!(
                    "ct status dnat ip saddr . ip daddr @hairpin meta mark set meta mark | {m}"
                ),
                format!("meta mark & {m} == 0 return"),
                format!("meta mark set meta mark ^ {m}"),
                "masquerade fully-random".into(),
            ],
        ),
    ];
    v.shrink_to_fit();
    v
}

/// The rules of a load-balancing chain, from its name `<kind>-<r|a><M>`.
pub fn chain_rules(name: &str, cfg: &Config) -> Vec<String> {
    let (kind, rest) = name.rsplit_once('-').expect("lb chain name");
    let affinity = rest.starts_with('a');
    let n: usize = rest[1..].parse().expect("lb chain bucket count");
    let sel = if affinity {
        format!("jhash ip saddr mod {n} seed {JHASH_SEED}")
    } else {
        format!("numgen random mod {n}")
    };
    let ipkey = "ip daddr . meta l4proto . th dport";
    let npkey = "meta l4proto . th dport";
    let cidr = cfg.cluster_cidr.as_deref().filter(|c| !c.is_empty());
    let mut r = Vec::new();
    let local = |r: &mut Vec<String>, key: &str, short: &str| {
        if let Some(c) = cidr {
            r.push(format!("ip saddr {c} {key} vmap @{short}"));
        }
        r.push("fib saddr type local jump mark-for-masquerade".into());
        r.push(format!("fib saddr type local {key} vmap @{short}"));
    };
    match kind {
        "svc" => {
            if cfg.masquerade_all {
                r.push("jump mark-for-masquerade".into());
            } else if let Some(c) = cidr {
                r.push(format!("ip saddr != {c} jump mark-for-masquerade"));
            }
            r.push(format!("dnat ip to {ipkey} . {sel} map @backends"));
        }
        "ext" => {
            r.push("jump mark-for-masquerade".into());
            r.push(format!("dnat ip to {ipkey} . {sel} map @backends"));
        }
        "extl" => {
            local(&mut r, ipkey, "short-ips");
            r.push(if n == 0 {
                "drop".into()
            } else {
                format!("dnat ip to {ipkey} . {sel} map @backends")
            });
        }
        "short" => r.push(format!("dnat ip to {ipkey} . {sel} map @short-backends")),
        "np" => {
            r.push("jump mark-for-masquerade".into());
            r.push(format!("dnat ip to {npkey} . {sel} map @np-backends"));
        }
        "npl" => {
            local(&mut r, npkey, "short-nodeports");
            r.push(if n == 0 {
                "drop".into()
            } else {
                format!("dnat ip to {npkey} . {sel} map @np-backends")
            });
        }
        "nps" => r.push(format!("dnat ip to {npkey} . {sel} map @short-np-backends")),
        _ => panic!("unknown lb chain kind {kind}"),
    }
    r
}

fn lb_chain(kind: &str, affinity: bool, n: usize) -> String {
    format!("{kind}-{}{n}", if affinity && n > 0 { 'a' } else { 'r' })
}

/// Receives a row's elements (the whole table's containers, or one row's list).
pub trait Sink {
    fn add(&mut self, c: usize, key: String, value: String);
    fn chain(&mut self, name: String);
}

impl Sink for Containers {
    fn add(&mut self, c: usize, key: String, value: String) {
        if self.seen[c].insert(key.clone()) {
            self.order[c].push((key, value));
        }
    }
    fn chain(&mut self, name: String) {
        self.chains.insert(name);
    }
}

/// One row's elements and chains, as the incremental table keeps them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RowElems {
    pub items: Vec<(u8, String, String)>,
    pub chains: Vec<String>,
}

impl Sink for RowElems {
    fn add(&mut self, c: usize, key: String, value: String) {
        self.items.push((c as u8, key, value));
    }
    fn chain(&mut self, name: String) {
        self.chains.push(name);
    }
}

/// Compute every element of the table for the model.
fn elements(m: &Model, node_ip: Option<u32>) -> Containers {
    let mut c = Containers {
        order: vec![Vec::new(); CONTAINERS.len()],
        seen: vec![FxSet::default(); CONTAINERS.len()],
        chains: BTreeSet::new(),
    };
    for r in all_row_elements(m, node_ip) {
        for (k, key, v) in r.items {
            c.add(k as usize, key, v);
        }
        for ch in r.chains {
            c.chain(ch);
        }
    }
    c
}

/// Every row's elements, computed on up to 4 threads for big models (order preserved).
pub fn all_row_elements(m: &Model, node_ip: Option<u32>) -> Vec<RowElems> {
    let rows = |a: usize, b: usize| -> Vec<RowElems> {
        (a..b)
            .map(|i| {
                let mut r = RowElems::default();
                row_elements(m, i, node_ip, &mut r);
                r
            })
            .collect()
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4);
    if threads <= 1 || m.len() < 2000 {
        return rows(0, m.len());
    }
    let chunk = m.len().div_ceil(threads);
    std::thread::scope(|sc| {
        let handles: Vec<_> = (0..m.len())
            .step_by(chunk)
            .map(|a| {
                let rows = &rows;
                sc.spawn(move || rows(a, (a + chunk).min(m.len())))
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("element thread"))
            .collect()
    })
}

/// The elements and load-balancing chains of row `i`.
pub fn row_elements<S: Sink>(m: &Model, i: usize, node_ip: Option<u32>, c: &mut S) {
    let reject = "goto reject-chain".to_string();
    let proto = m.protocol(i);
    let port = m.ports[i];
    let np = m.node_ports[i];
    let aff = m.affinity(i);
    let cat = categorize(m, i);
    let ep = |e: usize| format!("{} . {}", m.ep_ips[e], m.ep_ports[e]);
    let ipkey = |ip: &str| format!("{ip} . {proto} . {port}");
    let npkey = format!("{proto} . {np}");
    let ext_ips: Vec<&String> = m.external_ips(i).iter().chain(m.lb_ips(i)).collect();
    if !cat.has_any {
        c.add(NO_ENDPOINTS, ipkey(&m.cluster_ips[i]), reject.clone());
        for ip in &ext_ips {
            c.add(NO_ENDPOINTS, ipkey(ip), reject.clone());
        }
        if np != 0 {
            c.add(NO_ENDPOINT_NODEPORTS, npkey.clone(), reject.clone());
        }
        return;
    }
    let vmap = |c: &mut S, map: usize, key: String, chain: String| {
        c.chain(chain.clone());
        c.add(map, key, format!("goto {chain}"));
    };
    let buckets = |c: &mut S, map: usize, key: &str, eps: &[usize]| {
        for (b, &e) in eps.iter().enumerate() {
            c.add(map, format!("{key} . {b}"), ep(e));
        }
    };
    // Internal (ClusterIP) traffic.
    let int_eps = if m.internal_policy_local(i) {
        &cat.local
    } else {
        &cat.cluster
    };
    let cip = ipkey(&m.cluster_ips[i]);
    if int_eps.is_empty() {
        c.add(NO_ENDPOINTS, cip, "drop".into());
    } else {
        vmap(c, SVC_IPS, cip.clone(), lb_chain("svc", aff, int_eps.len()));
        buckets(c, BACKENDS, &cip, int_eps);
    }
    // External traffic (externalIPs, LoadBalancer IPs, NodePort).
    let ext_local = m.external_policy_local(i);
    let ext_eps = if ext_local { &cat.local } else { &cat.cluster };
    for ip in &ext_ips {
        let k = ipkey(ip);
        if ext_local {
            vmap(c, SVC_IPS, k.clone(), lb_chain("extl", aff, ext_eps.len()));
            if !cat.cluster.is_empty() {
                vmap(
                    c,
                    SHORT_IPS,
                    k.clone(),
                    lb_chain("short", aff, cat.cluster.len()),
                );
                buckets(c, SHORT_BACKENDS, &k, &cat.cluster);
            }
        } else {
            vmap(c, SVC_IPS, k.clone(), lb_chain("ext", aff, ext_eps.len()));
        }
        buckets(c, BACKENDS, &k, ext_eps);
    }
    if np != 0 {
        if ext_local {
            vmap(
                c,
                SVC_NODEPORTS,
                npkey.clone(),
                lb_chain("npl", aff, ext_eps.len()),
            );
            if !cat.cluster.is_empty() {
                vmap(
                    c,
                    SHORT_NODEPORTS,
                    npkey.clone(),
                    lb_chain("nps", aff, cat.cluster.len()),
                );
                buckets(c, SHORT_NP_BACKENDS, &npkey, &cat.cluster);
            }
        } else {
            vmap(
                c,
                SVC_NODEPORTS,
                npkey.clone(),
                lb_chain("np", aff, ext_eps.len()),
            );
        }
        buckets(c, NP_BACKENDS, &npkey, ext_eps);
    }
    // loadBalancerSourceRanges.
    let ranges = m.source_ranges(i);
    if !m.lb_ips(i).is_empty() && !ranges.is_empty() {
        // Ranges that contain the node IP also allow the LB IPs themselves (as upstream).
        let from_node = node_ip.is_some_and(|ip| {
            ranges
                .iter()
                .any(|r| super::parse_cidr4(r).is_some_and(|(net, mask)| ip & mask == net))
        });
        for lb in m.lb_ips(i) {
            let k = ipkey(lb);
            c.add(FW_IPS, k.clone(), String::new());
            for r in ranges {
                c.add(FW_ALLOW, format!("{k} . {}", r.trim()), String::new());
            }
            if from_node {
                c.add(FW_ALLOW, format!("{k} . {lb}/32"), String::new());
            }
        }
    }
    for &e in &cat.all_reachable {
        let ip = &m.ep_ips[e];
        c.add(HAIRPIN, format!("{ip} . {ip}"), String::new());
    }
}

fn write_element(out: &mut String, k: &str, v: &str) {
    out.push_str(k);
    if !v.is_empty() {
        out.push_str(" : ");
        out.push_str(v);
    }
}

/// The whole table, from scratch, in one transaction. Returns the number of elements written.
pub(crate) fn write_full(
    out: &mut String,
    order: &[Vec<(String, String)>],
    chains: &BTreeSet<String>,
    cfg: &Config,
) -> usize {
    let t = TABLE;
    let statics = static_chains();
    let mut added = 0;
    let _ = writeln!(
        out,
        "add table ip {t}\ndelete table ip {t}\ntable ip {t} {{"
    );
    for (_, decl) in CONTAINERS {
        let _ = writeln!(out, "\t{decl}");
    }
    for (name, body) in &statics {
        let _ = writeln!(out, "\tchain {name} {{");
        for l in body {
            let _ = writeln!(out, "\t\t{l}");
        }
        out.push_str("\t}\n");
    }
    for ch in chains {
        let _ = writeln!(out, "\tchain {ch} {{");
        for l in chain_rules(ch, cfg) {
            let _ = writeln!(out, "\t\t{l}");
        }
        out.push_str("\t}\n");
    }
    out.push_str("}\n");
    for (k, (name, _)) in CONTAINERS.iter().enumerate() {
        if order[k].is_empty() {
            continue;
        }
        let _ = write!(out, "add element ip {t} {name} {{ ");
        for (j, (key, v)) in order[k].iter().enumerate() {
            if j > 0 {
                out.push_str(", ");
            }
            write_element(out, key, v);
        }
        out.push_str(" }\n");
        added += order[k].len();
    }
    added
}

/// A difference: new chains, element deletes then adds (each sorted by key), old chains.
pub(crate) fn write_diff(
    out: &mut String,
    new_chains: &[&String],
    old_chains: &[&String],
    dels: &[Vec<&str>],
    adds: &[Vec<(&str, &str)>],
    cfg: &Config,
) {
    let t = TABLE;
    for ch in new_chains {
        // Block syntax: nft 1.0.6 rejects `dnat ip to <concat> map` in a one-line
        // `add rule` ("conflicting protocols") but takes it inside a chain block.
        let _ = writeln!(out, "table ip {t} {{ chain {ch} {{");
        for l in chain_rules(ch, cfg) {
            let _ = writeln!(out, "\t{l}");
        }
        out.push_str("}\n}\n");
    }
    for (k, (name, _)) in CONTAINERS.iter().enumerate() {
        if !dels[k].is_empty() {
            let _ = write!(out, "delete element ip {t} {name} {{ ");
            out.push_str(&dels[k].join(", "));
            out.push_str(" }\n");
        }
        if !adds[k].is_empty() {
            let _ = write!(out, "add element ip {t} {name} {{ ");
            for (j, (key, v)) in adds[k].iter().enumerate() {
                if j > 0 {
                    out.push_str(", ");
                }
                write_element(out, key, v);
            }
            out.push_str(" }\n");
        }
    }
    for ch in old_chains {
        let _ = writeln!(out, "delete chain ip {t} {ch}");
    }
}

/// Rules in the static chains plus the given load-balancing chains.
pub(crate) fn count_rules(chains: &BTreeSet<String>, cfg: &Config) -> usize {
    let statics = static_chains();
    let mut rules = statics
        .iter()
        .map(|(_, r)| r.iter().filter(|l| !l.starts_with("type ")).count())
        .sum::<usize>();
    for ch in chains {
        rules += chain_rules(ch, cfg).len();
    }
    rules
}

pub(crate) fn static_chain_count() -> usize {
    static_chains().len()
}

/// Render the transaction: the whole table when `prev` is `None`, else the difference.
pub fn render(m: &Model, cfg: &Config, prev: Option<&State>) -> Output {
    let c = elements(m, cfg.node_ip.as_deref().and_then(super::parse_ip4));
    let mut out = String::with_capacity(64 + c.order.iter().map(|v| v.len() * 48).sum::<usize>());
    let mut added = 0;
    let mut deleted = 0;
    let rules = count_rules(&c.chains, cfg);
    match prev {
        None => added = write_full(&mut out, &c.order, &c.chains, cfg),
        Some(p) => {
            let new_chains: Vec<&String> = c.chains.difference(&p.chains).collect();
            let old_chains: Vec<&String> = p.chains.difference(&c.chains).collect();
            let mut dels: Vec<Vec<&str>> = vec![Vec::new(); CONTAINERS.len()];
            let mut adds: Vec<Vec<(&str, &str)>> = vec![Vec::new(); CONTAINERS.len()];
            for k in 0..CONTAINERS.len() {
                let old = p.elements.get(k);
                if let Some(old) = old {
                    // Keys gone; keys whose value changed are deleted and re-added below.
                    dels[k].extend(
                        old.keys()
                            .filter(|key| !c.seen[k].contains(*key))
                            .map(|s| s.as_str()),
                    );
                }
                for (key, v) in &c.order[k] {
                    match old.and_then(|o| o.get(key)) {
                        Some(ov) if ov == v => {}
                        Some(_) => {
                            dels[k].push(key);
                            adds[k].push((key, v));
                        }
                        None => adds[k].push((key, v)),
                    }
                }
                dels[k].sort_unstable();
                adds[k].sort_unstable();
                added += adds[k].len();
                deleted += dels[k].len();
            }
            write_diff(&mut out, &new_chains, &old_chains, &dels, &adds, cfg);
        }
    }
    let state = State {
        elements: c
            .order
            .into_iter()
            .map(|v| v.into_iter().collect::<FxMap<_, _>>())
            .collect(),
        chains: c.chains,
    };
    Output {
        text: out,
        full: prev.is_none(),
        elements: state.element_count(),
        chains: static_chain_count() + state.chains.len(),
        rules,
        added,
        deleted,
        state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::{EP_READY, EP_SERVING};

    fn model(services: usize, eps: usize) -> Model {
        let mut m = Model::default();
        for v in [
            &mut m.external_ip_offsets,
            &mut m.lb_ip_offsets,
            &mut m.source_range_offsets,
            &mut m.ep_offsets,
        ] {
            v.push(0);
        }
        for i in 0..services {
            m.names.push(format!("ns/svc{i}:http"));
            m.protocols.push(0);
            m.cluster_ips
                .push(format!("10.96.{}.{}", i / 250, 1 + i % 250));
            m.ports.push(80);
            m.node_ports.push(30000 + i as u16);
            m.health_check_node_ports.push(0);
            m.flags.push(0);
            m.affinity_timeouts.push(10800);
            m.external_ip_offsets.push(0);
            m.lb_ip_offsets.push(0);
            m.source_range_offsets.push(0);
            for j in 0..eps {
                m.ep_ips.push(format!("10.1.{}.{}", i % 250, 1 + j));
                m.ep_ports.push(8080);
                m.ep_flags.push(EP_READY | EP_SERVING);
            }
            m.ep_offsets.push(m.ep_ips.len() as u32);
        }
        m
    }

    #[test]
    fn rules_do_not_grow_with_services() {
        let cfg = Config::default();
        let a = render(&model(10, 3), &cfg, None);
        let b = render(&model(500, 3), &cfg, None);
        assert_eq!(a.rules, b.rules);
        assert_eq!(a.chains, b.chains);
        assert!(b.elements > a.elements);
    }

    #[test]
    fn one_endpoint_change_is_a_few_elements() {
        let cfg = Config::default();
        let m = model(100, 3);
        let full = render(&m, &cfg, None);
        let mut m2 = m.clone();
        m2.ep_ips[7] = "10.200.0.9".into();
        let inc = render(&m2, &cfg, Some(&full.state));
        assert!(!inc.full);
        assert!(!inc.text.contains("table ip hyperkube {"));
        assert!(inc.added + inc.deleted <= 8, "{}", inc.text);
        let same = render(&m2, &cfg, Some(&inc.state));
        assert_eq!(same.text, "");
    }
}
