//! `iptables-restore` input, line for line as upstream's `pkg/proxy/iptables/proxier.go`
//! (`syncProxyRules`, v1.28+ layout).
//!
//! The output is the `*filter` and `*nat` sections upstream writes with `--noflush`: the
//! top-level chains (KUBE-SERVICES, KUBE-NODEPORTS, ...) are always rewritten; per-service chains
//! (KUBE-SVC/SVL/EXT/FW/SEP) are written for every service on a full sync and only for the rows
//! marked changed on a partial sync (KEP-3453), the others are left as they are in the kernel.
//! Chains that existed before (`existing`) and are no longer produced are flushed and deleted
//! (`-X`). Services come in model order (the Python side sorts them by name; upstream walks a Go
//! map, so its order varies from sync to sync).
//!
//! Upstream options fixed here: the local-traffic detector is the cluster CIDR (when given), the
//! masquerade mark is 0x4000, `--random-fully` is used, NodePorts are not served on 127.0.0.0/8
//! (`localhostNodePorts` off: no `route_localnet`), no nfacct counters, and the INVALID drop rule
//! is present (`nf_conntrack_tcp_be_liberal` off).

use super::{categorize, endpoint_chain_name, hash16, parse_cidr4, parse_ip4, Model};
use std::collections::HashSet;
use std::fmt::Write;

/// Upstream's `largeClusterEndpointsThreshold`: above it, per-endpoint comments are dropped.
pub const LARGE_CLUSTER_ENDPOINTS_THRESHOLD: usize = 1000;

pub const MASQUERADE_MARK: &str = "0x4000";

#[derive(Clone, Debug, Default)]
pub struct Config {
    /// The cluster (pod) CIDR: traffic from outside it to a ClusterIP is masqueraded.
    pub cluster_cidr: Option<String>,
    pub masquerade_all: bool,
    /// The node's IP (LoadBalancerSourceRanges that contain it also allow the LB IPs as source).
    pub node_ip: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Output {
    pub text: String,
    /// Every per-service nat chain this state uses (written or not), sorted.
    pub active_chains: Vec<String>,
    pub filter_rules: usize,
    pub nat_rules: usize,
    pub nat_chains: usize,
    pub deleted_chains: usize,
    pub large_cluster: bool,
}

/// Write one formatted line straight into a [`Lines`] buffer (no temporary string).
macro_rules! w {
    ($lines:expr, $($arg:tt)*) => {{
        let _ = write!($lines.buf, $($arg)*);
        $lines.buf.push('\n');
        $lines.n += 1;
    }};
}

/// A buffer of lines that counts them (upstream's `LineBuffer`).
struct Lines {
    buf: String,
    n: usize,
}

impl Default for Lines {
    fn default() -> Self {
        Lines::new()
    }
}

impl Lines {
    fn append(&mut self, other: Lines) {
        self.buf.push_str(&other.buf);
        self.n += other.n;
    }

    fn new() -> Self {
        Lines {
            buf: String::new(),
            n: 0,
        }
    }
    fn line(&mut self, s: &str) {
        self.buf.push_str(s);
        self.buf.push('\n');
        self.n += 1;
    }
    fn chain(&mut self, name: &str) {
        self.buf.push(':');
        self.buf.push_str(name);
        self.buf.push_str(" - [0:0]\n");
        self.n += 1;
    }
}

pub fn is_service_chain(name: &str) -> bool {
    [
        "KUBE-SVC-",
        "KUBE-SVL-",
        "KUBE-SEP-",
        "KUBE-FW-",
        "KUBE-EXT-",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// `%0.10f` of 1/n, as upstream's `computeProbability`.
pub fn probability(n: usize) -> String {
    format!("{:.10}", 1.0 / n as f64)
}

/// The rows' part of the output (their filter rules, nat chains and rules, active chains).
#[derive(Default)]
struct Part {
    filter_rules: Lines,
    nat_chains: Lines,
    nat_rules: Lines,
    active: Vec<String>,
}

#[allow(clippy::too_many_arguments)]
fn generate_rows(
    m: &Model,
    cfg: &Config,
    rows: std::ops::Range<usize>,
    changed: Option<&[bool]>,
    large: bool,
    cidr: Option<&str>,
    node_ip: Option<u32>,
) -> Part {
    let mut part = Part::default();
    let Part {
        filter_rules,
        nat_chains,
        nat_rules,
        active,
    } = &mut part;
    let mut skipped_chains = Lines::new();
    let mut skipped_rules = Lines::new();
    let mut probs: Vec<String> = vec![String::new()];
    let mut s = String::with_capacity(256);
    for i in rows {
        let name = m.names[i].as_str();
        let proto = m.protocol(i);
        let cip = m.cluster_ips[i].as_str();
        let port = m.ports[i];
        let h = hash16(&[name, proto]);
        let svc_chain = format!("KUBE-SVC-{h}");
        let svl_chain = format!("KUBE-SVL-{h}");
        let fw_chain = format!("KUBE-FW-{h}");
        let ext_chain = format!("KUBE-EXT-{h}");
        let cat = categorize(m, i);
        let has_any = cat.has_any;
        let uses_cluster_chain = !cat.cluster.is_empty() && m.uses_cluster_endpoints(i);
        let uses_local_chain = !cat.local.is_empty() && m.uses_local_endpoints(i);
        let (mut internal_chain, mut has_internal) = (&svc_chain, has_any);
        if m.internal_policy_local(i) {
            internal_chain = &svl_chain;
            if cat.local.is_empty() {
                has_internal = false;
            }
        }
        let (mut external_policy_chain, mut has_external) = (&svc_chain, has_any);
        let ext_local = m.external_policy_local(i);
        if ext_local {
            external_policy_chain = &svl_chain;
            if cat.local.is_empty() {
                has_external = false;
            }
        }
        let uses_ext_chain = has_any && m.externally_accessible(i);
        let lb_ips = m.lb_ips(i);
        let ranges = m.source_ranges(i);
        let uses_fw = has_any && !lb_ips.is_empty() && !ranges.is_empty();
        let lb_chain = if uses_fw { &fw_chain } else { &ext_chain };

        let (int_target, int_comment, ext_target, ext_comment);
        if !has_any {
            int_target = "REJECT";
            int_comment = format!("\"{name} has no endpoints\"");
            ext_target = "REJECT";
            ext_comment = int_comment.clone();
        } else {
            int_target = "DROP";
            int_comment = format!("\"{name} has no local endpoints\"");
            ext_target = "DROP";
            ext_comment = int_comment.clone();
        }

        // Capture the clusterIP.
        s.clear();
        if has_internal {
            let _ = write!(s, "-A KUBE-SERVICES -m comment --comment \"{name} cluster IP\" -m {proto} -p {proto} -d {cip} --dport {port} -j {internal_chain}");
            nat_rules.line(&s);
        } else {
            let _ = write!(s, "-A KUBE-SERVICES -m comment --comment {int_comment} -m {proto} -p {proto} -d {cip} --dport {port} -j {int_target}");
            filter_rules.line(&s);
        }
        // Capture externalIPs.
        for eip in m.external_ips(i) {
            if has_any {
                w!(nat_rules, "-A KUBE-SERVICES -m comment --comment \"{name} external IP\" -m {proto} -p {proto} -d {eip} --dport {port} -j {ext_chain}");
            }
            if !has_external {
                w!(filter_rules, "-A KUBE-EXTERNAL-SERVICES -m comment --comment {ext_comment} -m {proto} -p {proto} -d {eip} --dport {port} -j {ext_target}");
            }
        }
        // Capture load-balancer ingress.
        for lbip in lb_ips {
            if has_any {
                w!(nat_rules, "-A KUBE-SERVICES -m comment --comment \"{name} loadbalancer IP\" -m {proto} -p {proto} -d {lbip} --dport {port} -j {lb_chain}");
            }
            if uses_fw {
                w!(filter_rules, "-A KUBE-PROXY-FIREWALL -m comment --comment \"{name} traffic not accepted by {fw_chain}\" -m {proto} -p {proto} -d {lbip} --dport {port} -j DROP");
            }
        }
        if !has_external {
            for lbip in lb_ips {
                w!(filter_rules, "-A KUBE-EXTERNAL-SERVICES -m comment --comment {ext_comment} -m {proto} -p {proto} -d {lbip} --dport {port} -j {ext_target}");
            }
        }
        // Capture nodeports.
        let np = m.node_ports[i];
        if np != 0 {
            if has_any {
                w!(nat_rules, "-A KUBE-NODEPORTS -m comment --comment {name} -m {proto} -p {proto} --dport {np} -j {ext_chain}");
            }
            if !has_external {
                w!(filter_rules, "-A KUBE-EXTERNAL-SERVICES -m comment --comment {ext_comment} -m addrtype --dst-type LOCAL -m {proto} -p {proto} --dport {np} -j {ext_target}");
            }
        }
        let hc = m.health_check_node_ports[i];
        if hc != 0 {
            w!(filter_rules, "-A KUBE-NODEPORTS -m comment --comment \"{name} health check node port\" -m tcp -p tcp --dport {hc} -j ACCEPT");
        }

        let skip = changed.is_some_and(|c| !c[i]);
        let (chains, rules) = if skip {
            (&mut skipped_chains, &mut skipped_rules)
        } else {
            (&mut *nat_chains, &mut *nat_rules)
        };

        // Internal traffic.
        if has_internal {
            let args = format!(
                "-m comment --comment \"{name} cluster IP\" -m {proto} -p {proto} -d {cip} --dport {port}"
            );
            if cfg.masquerade_all {
                w!(rules, "-A {internal_chain} {args} -j KUBE-MARK-MASQ");
            } else if let Some(cidr) = cidr {
                w!(
                    rules,
                    "-A {internal_chain} {args} ! -s {cidr} -j KUBE-MARK-MASQ"
                );
            }
        }
        // External traffic.
        if uses_ext_chain {
            chains.chain(&ext_chain);
            active.push(ext_chain.clone());
            if !ext_local {
                w!(rules, "-A {ext_chain} -m comment --comment \"masquerade traffic for {name} external destinations\" -j KUBE-MARK-MASQ");
            } else {
                if let Some(cidr) = cidr {
                    w!(rules, "-A {ext_chain} -m comment --comment \"pod traffic for {name} external destinations\" -s {cidr} -j {svc_chain}");
                }
                w!(rules, "-A {ext_chain} -m comment --comment \"masquerade LOCAL traffic for {name} external destinations\" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ");
                w!(rules, "-A {ext_chain} -m comment --comment \"route LOCAL traffic for {name} external destinations\" -m addrtype --src-type LOCAL -j {svc_chain}");
            }
            if has_external {
                w!(rules, "-A {ext_chain} -j {external_policy_chain}");
            }
        }
        // Firewall chain.
        if uses_fw {
            chains.chain(&fw_chain);
            active.push(fw_chain.clone());
            let args = format!("-A {fw_chain} -m comment --comment \"{name} loadbalancer IP\"");
            let mut allow_from_node = false;
            for r in ranges {
                w!(rules, "{args} -s {r} -j {ext_chain}");
                if let (Some((net, mask)), Some(ip)) = (parse_cidr4(r), node_ip) {
                    allow_from_node |= ip & mask == net;
                }
            }
            if allow_from_node {
                for lbip in lb_ips {
                    w!(rules, "{args} -s {lbip} -j {ext_chain}");
                }
            }
            w!(rules, "-A {fw_chain} -m comment --comment \"other traffic to {name} will be dropped by KUBE-PROXY-FIREWALL\"");
        }

        let sep_names: Vec<(usize, String)> = cat
            .all_reachable
            .iter()
            .map(|&e| (e, endpoint_chain_name(name, proto, &m.ep_string(e))))
            .collect();
        // all_reachable, cluster and local are ascending endpoint indices.
        let sep_of = |e: usize| -> &str {
            let k = sep_names
                .binary_search_by_key(&e, |(x, _)| *x)
                .expect("endpoint in all_reachable");
            &sep_names[k].1
        };
        let mut svc_to_eps = |rules: &mut Lines, chain: &str, eps: &[usize]| {
            let b = &mut rules.buf;
            if m.affinity(i) {
                for &e in eps {
                    let _ = write!(b, "-A {chain}");
                    if !large {
                        let _ = write!(b, " -m comment --comment \"{name} -> {}\"", m.ep_string(e));
                    }
                    let sep = sep_of(e);
                    let _ = writeln!(
                        b,
                        " -m recent --name {sep} --rcheck --seconds {} --reap -j {sep}",
                        m.affinity_timeouts[i]
                    );
                    rules.n += 1;
                }
            }
            let n = eps.len();
            for (k, &e) in eps.iter().enumerate() {
                let _ = write!(b, "-A {chain}");
                if !large {
                    let _ = write!(b, " -m comment --comment \"{name} -> {}\"", m.ep_string(e));
                }
                if k < n - 1 {
                    let left = n - k;
                    while probs.len() <= left {
                        probs.push(probability(probs.len()));
                    }
                    let _ = write!(
                        b,
                        " -m statistic --mode random --probability {}",
                        probs[left]
                    );
                }
                let _ = writeln!(b, " -j {}", sep_of(e));
                rules.n += 1;
            }
        };
        if uses_cluster_chain {
            chains.chain(&svc_chain);
            active.push(svc_chain.clone());
            svc_to_eps(rules, &svc_chain, &cat.cluster);
        }
        if uses_local_chain {
            chains.chain(&svl_chain);
            active.push(svl_chain.clone());
            svc_to_eps(rules, &svl_chain, &cat.local);
        }
        // Per-endpoint chains.
        for (e, sep) in &sep_names {
            chains.chain(sep);
            active.push(sep.clone());
            let mut args = format!("-A {sep}");
            if !large {
                let _ = write!(args, " -m comment --comment {name}");
            }
            w!(rules, "{args} -s {} -j KUBE-MARK-MASQ", m.ep_ips[*e]);
            if m.affinity(i) {
                let _ = write!(args, " -m recent --name {sep} --set");
            }
            w!(
                rules,
                "{args} -m {proto} -p {proto} -j DNAT --to-destination {}",
                m.ep_string(*e)
            );
        }
    }
    part
}

/// Generate the restore input. `changed` (one flag per row) selects a partial sync: only those
/// rows' chains are written. `existing` lists the nat chains in the kernel now (from the last
/// sync or `iptables-save`); those of ours not produced any more are deleted.
pub fn generate(m: &Model, cfg: &Config, changed: Option<&[bool]>, existing: &[String]) -> Output {
    let mut filter_chains = Lines::new();
    let mut filter_rules = Lines::new();
    let mut nat_chains = Lines::new();
    let mut nat_rules = Lines::new();
    let masq = MASQUERADE_MARK;

    for c in [
        "KUBE-SERVICES",
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-FORWARD",
        "KUBE-NODEPORTS",
        "KUBE-PROXY-FIREWALL",
    ] {
        filter_chains.chain(c);
    }
    for c in [
        "KUBE-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-POSTROUTING",
        "KUBE-MARK-MASQ",
    ] {
        nat_chains.chain(c);
    }
    w!(
        nat_rules,
        "-A KUBE-POSTROUTING -m mark ! --mark {masq}/{masq} -j RETURN"
    );
    w!(nat_rules, "-A KUBE-POSTROUTING -j MARK --xor-mark {masq}");
    nat_rules.line("-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully");
    w!(nat_rules, "-A KUBE-MARK-MASQ -j MARK --or-mark {masq}");

    let total_endpoints = m.ep_ips.len();
    let large = total_endpoints > LARGE_CLUSTER_ENDPOINTS_THRESHOLD;
    let cidr = cfg.cluster_cidr.as_deref().filter(|c| !c.is_empty());
    let node_ip = cfg.node_ip.as_deref().and_then(parse_ip4);

    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4);
    let threads = if m.len() < 2000 { 1 } else { threads };
    let chunk = m.len().div_ceil(threads.max(1)).max(1);
    let parts: Vec<Part> = if threads <= 1 {
        vec![generate_rows(
            m,
            cfg,
            0..m.len(),
            changed,
            large,
            cidr,
            node_ip,
        )]
    } else {
        std::thread::scope(|sc| {
            let handles: Vec<_> = (0..m.len())
                .step_by(chunk)
                .map(|a| {
                    let b = (a + chunk).min(m.len());
                    sc.spawn(move || generate_rows(m, cfg, a..b, changed, large, cidr, node_ip))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("generator thread"))
                .collect()
        })
    };
    let mut active: Vec<String> = Vec::with_capacity(m.len() * 2 + total_endpoints);
    for p in parts {
        filter_rules.append(p.filter_rules);
        nat_chains.append(p.nat_chains);
        nat_rules.append(p.nat_rules);
        active.extend(p.active);
    }

    // Delete chains no longer in use.
    active.sort_unstable();
    active.dedup();
    let active_set: HashSet<&str> = active.iter().map(|s| s.as_str()).collect();
    let mut stale: Vec<&String> = existing
        .iter()
        .filter(|c| is_service_chain(c) && !active_set.contains(c.as_str()))
        .collect();
    stale.sort_unstable();
    stale.dedup();
    for c in &stale {
        nat_chains.chain(c);
        w!(nat_rules, "-X {c}");
    }

    nat_rules.line("-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS");
    filter_rules.line("-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP");
    w!(filter_rules, "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark {masq}/{masq} -j ACCEPT");
    filter_rules.line("-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT");

    let mut text = String::with_capacity(
        filter_chains.buf.len()
            + filter_rules.buf.len()
            + nat_chains.buf.len()
            + nat_rules.buf.len()
            + 32,
    );
    text.push_str("*filter\n");
    text.push_str(&filter_chains.buf);
    text.push_str(&filter_rules.buf);
    text.push_str("COMMIT\n*nat\n");
    text.push_str(&nat_chains.buf);
    text.push_str(&nat_rules.buf);
    text.push_str("COMMIT\n");
    Output {
        text,
        active_chains: active,
        filter_rules: filter_rules.n,
        nat_rules: nat_rules.n,
        nat_chains: nat_chains.n,
        deleted_chains: stale.len(),
        large_cluster: large,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::{EP_READY, EP_SERVING};

    /// Upstream's `generateServiceEndpoints`: ClusterIP services svc0.. at 10.0.0.1+i, port
    /// 80+i named "8080", endpoints 172.16.0.1+j:8080.
    pub fn upstream_like_pub(services: usize, eps: usize) -> Model {
        upstream_like(services, eps)
    }

    fn upstream_like(services: usize, eps: usize) -> Model {
        let mut m = Model::default();
        m.external_ip_offsets.push(0);
        m.lb_ip_offsets.push(0);
        m.source_range_offsets.push(0);
        m.ep_offsets.push(0);
        for i in 0..services {
            m.names.push(format!("namespace/svc{i}:8080"));
            m.protocols.push(0);
            m.cluster_ips.push(format!("10.0.0.{}", 1 + i));
            m.ports.push(80 + i as u16);
            m.node_ports.push(0);
            m.health_check_node_ports.push(0);
            m.flags.push(0);
            m.affinity_timeouts.push(10800);
            m.external_ip_offsets.push(0);
            m.lb_ip_offsets.push(0);
            m.source_range_offsets.push(0);
            let mut ips: Vec<String> = (0..eps).map(|j| format!("172.16.0.{}", 1 + j)).collect();
            ips.sort_by_key(|ip| format!("{ip}:8080"));
            for ip in ips {
                m.ep_ips.push(ip);
                m.ep_ports.push(8080);
                m.ep_flags.push(EP_READY | EP_SERVING);
            }
            m.ep_offsets.push(m.ep_ips.len() as u32);
        }
        m
    }

    #[test]
    fn number_of_generated_rules_matches_upstream() {
        let cfg = Config {
            cluster_cidr: Some("10.0.0.0/8".into()),
            ..Default::default()
        };
        for (svcs, eps, filter, nat) in [
            (0, 0, 3, 5),
            (1, 0, 4, 5),
            (1, 1, 3, 10),
            (1, 2, 3, 13),
            (1, 10, 3, 37),
            (10, 0, 13, 5),
            (10, 1, 3, 55),
            (10, 2, 3, 85),
            (10, 10, 3, 325),
        ] {
            let m = upstream_like(svcs, eps);
            m.validate().unwrap();
            let out = generate(&m, &cfg, None, &[]);
            assert_eq!(out.nat_rules, nat, "{svcs} x {eps} nat");
            assert_eq!(out.filter_rules, filter, "{svcs} x {eps} filter");
        }
    }

    #[test]
    fn probabilities() {
        assert_eq!(probability(2), "0.5000000000");
        assert_eq!(probability(3), "0.3333333333");
        assert_eq!(probability(10), "0.1000000000");
    }
}

#[cfg(test)]
mod timing {
    use super::*;
    #[test]
    #[ignore]
    fn time_10k() {
        let m = super::tests::upstream_like_pub(10000, 10);
        let cfg = Config {
            cluster_cidr: Some("10.0.0.0/8".into()),
            ..Default::default()
        };
        for _ in 0..3 {
            let t = std::time::Instant::now();
            let o = generate(&m, &cfg, None, &[]);
            eprintln!("ipt {:?} {}", t.elapsed(), o.text.len());
            let t = std::time::Instant::now();
            let o = crate::proxy::nftables::render(
                &m,
                &crate::proxy::nftables::Config::default(),
                None,
            );
            eprintln!("nft {:?} {}", t.elapsed(), o.text.len());
            let t = std::time::Instant::now();
            let o2 = crate::proxy::nftables::render(
                &m,
                &crate::proxy::nftables::Config::default(),
                Some(&o.state),
            );
            eprintln!("nft inc {:?} {}", t.elapsed(), o2.text.len());
            let t = std::time::Instant::now();
            let mut h = 0usize;
            for i in 0..110000 {
                h += crate::proxy::hash16(&["namespace/svc1:8080", "tcp", &i.to_string()]).len();
            }
            eprintln!("hash {:?} {h}", t.elapsed());
        }
    }
}
