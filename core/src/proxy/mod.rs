//! kube-proxy rule generation: the `proxy` hot path (see DESIGN.md).
//!
//! The Python side turns Services and EndpointSlices into a [`Model`]: one row per service port
//! (columns, sorted by service port name) and, per row, a run of endpoints (CSR offsets into
//! flat endpoint columns, sorted by `ip:port` and de-duplicated as upstream's endpoint slice
//! cache does). The model crosses the boundary once per sync; everything per service and per
//! endpoint happens here:
//!
//! - [`categorize`] splits a row's endpoints into the cluster-policy and local-policy sets exactly
//!   as upstream's `proxy.CategorizeEndpoints` (ready endpoints, terminating-but-serving as the
//!   fallback, node-local ones for `Local` traffic policies).
//! - [`iptables`] writes `iptables-restore` input line for line as upstream's
//!   `pkg/proxy/iptables/proxier.go` (v1.28+ layout), full or partial (KEP-3453).
//! - [`nftables`] is our own design: one `ip hyperkube` table whose rule and chain count does not
//!   depend on the number of services or endpoints; services are elements of verdict maps and
//!   endpoints are elements of bucket maps, so a change is a few element adds/deletes.

pub mod iptables;
pub mod nftables;
pub mod table;

use sha2::{Digest, Sha256};

/// Endpoint condition bits (`Model::ep_flags`).
pub const EP_READY: u8 = 1;
pub const EP_SERVING: u8 = 2;
pub const EP_TERMINATING: u8 = 4;
/// The endpoint's nodeName is this node.
pub const EP_LOCAL: u8 = 8;

/// Service port bits (`Model::flags`).
pub const SVC_AFFINITY: u8 = 1;
pub const SVC_INTERNAL_LOCAL: u8 = 2;
/// externalTrafficPolicy: Local (only meaningful for NodePort/LoadBalancer services).
pub const SVC_EXTERNAL_LOCAL: u8 = 4;

/// Protocol codes (`Model::protocols`).
pub const PROTOCOLS: [&str; 3] = ["tcp", "udp", "sctp"];

/// All service ports and their endpoints, in columns (one row per service port).
#[derive(Clone, Debug, Default)]
pub struct Model {
    /// `namespace/name:port` (`namespace/name` for an unnamed port), as upstream's ServicePortName.
    pub names: Vec<String>,
    pub protocols: Vec<u8>,
    pub cluster_ips: Vec<String>,
    pub ports: Vec<u16>,
    /// 0 = none.
    pub node_ports: Vec<u16>,
    /// 0 = none.
    pub health_check_node_ports: Vec<u16>,
    pub flags: Vec<u8>,
    pub affinity_timeouts: Vec<u32>,
    /// CSR offsets (len rows + 1) into `external_ips`.
    pub external_ip_offsets: Vec<u32>,
    pub external_ips: Vec<String>,
    pub lb_ip_offsets: Vec<u32>,
    pub lb_ips: Vec<String>,
    pub source_range_offsets: Vec<u32>,
    pub source_ranges: Vec<String>,
    /// CSR offsets (len rows + 1) into the endpoint columns.
    pub ep_offsets: Vec<u32>,
    pub ep_ips: Vec<String>,
    pub ep_ports: Vec<u16>,
    pub ep_flags: Vec<u8>,
}

impl Model {
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Check the columns agree in length and the offsets are monotone; the message names the
    /// first bad column.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.names.len();
        let cols: [(&str, usize); 7] = [
            ("protocols", self.protocols.len()),
            ("cluster_ips", self.cluster_ips.len()),
            ("ports", self.ports.len()),
            ("node_ports", self.node_ports.len()),
            (
                "health_check_node_ports",
                self.health_check_node_ports.len(),
            ),
            ("flags", self.flags.len()),
            ("affinity_timeouts", self.affinity_timeouts.len()),
        ];
        for (name, len) in cols {
            if len != n {
                return Err(format!("model column {name} has {len} rows, expected {n}"));
            }
        }
        if let Some(p) = self
            .protocols
            .iter()
            .find(|p| **p as usize >= PROTOCOLS.len())
        {
            return Err(format!("model column protocols: unknown protocol code {p}"));
        }
        let csr: [(&str, &Vec<u32>, usize); 4] = [
            (
                "external_ip_offsets",
                &self.external_ip_offsets,
                self.external_ips.len(),
            ),
            ("lb_ip_offsets", &self.lb_ip_offsets, self.lb_ips.len()),
            (
                "source_range_offsets",
                &self.source_range_offsets,
                self.source_ranges.len(),
            ),
            ("ep_offsets", &self.ep_offsets, self.ep_ips.len()),
        ];
        for (name, off, total) in csr {
            if off.len() != n + 1 {
                return Err(format!(
                    "model column {name} has {} entries, expected {}",
                    off.len(),
                    n + 1
                ));
            }
            if off[0] != 0 || off[n] as usize != total || off.windows(2).any(|w| w[0] > w[1]) {
                return Err(format!(
                    "model column {name} is not a valid offsets array for {total} items"
                ));
            }
        }
        if self.ep_ports.len() != self.ep_ips.len() || self.ep_flags.len() != self.ep_ips.len() {
            return Err(
                "model endpoint columns ep_ips, ep_ports, ep_flags differ in length".into(),
            );
        }
        Ok(())
    }

    fn range(off: &[u32], i: usize) -> std::ops::Range<usize> {
        off[i] as usize..off[i + 1] as usize
    }

    pub fn external_ips(&self, i: usize) -> &[String] {
        &self.external_ips[Self::range(&self.external_ip_offsets, i)]
    }

    pub fn lb_ips(&self, i: usize) -> &[String] {
        &self.lb_ips[Self::range(&self.lb_ip_offsets, i)]
    }

    pub fn source_ranges(&self, i: usize) -> &[String] {
        &self.source_ranges[Self::range(&self.source_range_offsets, i)]
    }

    pub fn endpoints(&self, i: usize) -> std::ops::Range<usize> {
        Self::range(&self.ep_offsets, i)
    }

    pub fn protocol(&self, i: usize) -> &'static str {
        PROTOCOLS[self.protocols[i] as usize]
    }

    pub fn externally_accessible(&self, i: usize) -> bool {
        self.node_ports[i] != 0 || !self.lb_ips(i).is_empty() || !self.external_ips(i).is_empty()
    }

    pub fn internal_policy_local(&self, i: usize) -> bool {
        self.flags[i] & SVC_INTERNAL_LOCAL != 0
    }

    pub fn external_policy_local(&self, i: usize) -> bool {
        self.flags[i] & SVC_EXTERNAL_LOCAL != 0 && self.externally_accessible(i)
    }

    pub fn affinity(&self, i: usize) -> bool {
        self.flags[i] & SVC_AFFINITY != 0
    }

    /// Upstream's `UsesClusterEndpoints`.
    pub fn uses_cluster_endpoints(&self, i: usize) -> bool {
        !self.internal_policy_local(i)
            || (self.externally_accessible(i) && !self.external_policy_local(i))
    }

    /// Upstream's `UsesLocalEndpoints`.
    pub fn uses_local_endpoints(&self, i: usize) -> bool {
        self.internal_policy_local(i)
            || (self.externally_accessible(i) && self.external_policy_local(i))
    }

    /// `ip:port` of endpoint `e`.
    pub fn ep_string(&self, e: usize) -> String {
        format!("{}:{}", self.ep_ips[e], self.ep_ports[e])
    }
}

/// A service port's endpoints split by traffic policy (indices into the endpoint columns).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Categorized {
    pub cluster: Vec<usize>,
    pub local: Vec<usize>,
    pub all_reachable: Vec<usize>,
    pub has_any: bool,
}

/// Upstream's `proxy.CategorizeEndpoints` (topology hints are not used).
pub fn categorize(m: &Model, i: usize) -> Categorized {
    let eps = m.endpoints(i);
    let f = &m.ep_flags;
    let ready = |e: usize| f[e] & EP_READY != 0;
    let serving_terminating = |e: usize| f[e] & EP_SERVING != 0 && f[e] & EP_TERMINATING != 0;
    let local = |e: usize| f[e] & EP_LOCAL != 0;
    let mut c = Categorized::default();
    let uses_cluster = m.uses_cluster_endpoints(i);
    if uses_cluster {
        c.cluster = eps.clone().filter(|&e| ready(e)).collect();
        if c.cluster.is_empty() {
            c.cluster = eps.clone().filter(|&e| serving_terminating(e)).collect();
        }
        c.has_any = !c.cluster.is_empty();
    }
    if !m.uses_local_endpoints(i) {
        c.all_reachable = c.cluster.clone();
        return c;
    }
    let (mut local_ready, mut local_st) = (false, false);
    for e in eps.clone() {
        if ready(e) {
            c.has_any = true;
            local_ready |= local(e);
        } else if serving_terminating(e) {
            c.has_any = true;
            local_st |= local(e);
        }
    }
    let mut use_st = false;
    if local_ready {
        c.local = eps.clone().filter(|&e| local(e) && ready(e)).collect();
    } else if local_st {
        use_st = true;
        c.local = eps
            .clone()
            .filter(|&e| local(e) && serving_terminating(e))
            .collect();
    }
    if !uses_cluster {
        c.all_reachable = c.local.clone();
        return c;
    }
    if !use_st {
        c.all_reachable = c.cluster.clone();
        return c;
    }
    // Merge (upstream goes through a map keyed by ip:port; we keep endpoint order).
    let mut all: Vec<usize> = c.cluster.iter().chain(c.local.iter()).copied().collect();
    all.sort_unstable();
    all.dedup();
    c.all_reachable = all;
    c
}

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// First 16 characters of base32(sha256(text)) (upstream's `portProtoHash` and the SEP hash).
pub fn hash16(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
    }
    let d = h.finalize();
    // 16 base32 chars = 80 bits = the first 10 bytes.
    let mut out = String::with_capacity(16);
    let mut acc: u64 = 0;
    let mut bits = 0;
    for &b in d.iter().take(10) {
        acc = (acc << 8) | b as u64;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32[((acc >> bits) & 31) as usize] as char);
        }
    }
    out
}

/// `KUBE-SVC-…` for a service port name and lower-case protocol.
pub fn service_chain_name(name: &str, protocol: &str) -> String {
    format!("KUBE-SVC-{}", hash16(&[name, protocol]))
}

/// `KUBE-SEP-…` for a service port name, lower-case protocol and endpoint `ip:port`.
pub fn endpoint_chain_name(name: &str, protocol: &str, endpoint: &str) -> String {
    format!("KUBE-SEP-{}", hash16(&[name, protocol, endpoint]))
}

/// Parse `a.b.c.d/len` into (network, mask); `None` when malformed.
pub fn parse_cidr4(s: &str) -> Option<(u32, u32)> {
    let (ip, len) = s.trim().split_once('/')?;
    let len: u32 = len.parse().ok()?;
    if len > 32 {
        return None;
    }
    let ip = parse_ip4(ip)?;
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Some((ip & mask, mask))
}

pub fn parse_ip4(s: &str) -> Option<u32> {
    let a: std::net::Ipv4Addr = s.trim().parse().ok()?;
    Some(u32::from(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_chain_name() {
        assert_eq!(
            service_chain_name("default/kubernetes:https", "tcp"),
            "KUBE-SVC-NPX46M4PTMTKRN6Y"
        );
    }

    #[test]
    fn cidr() {
        assert_eq!(parse_cidr4("10.0.0.0/8"), Some((0x0a00_0000, 0xff00_0000)));
        assert_eq!(parse_cidr4("10.0.0.1/33"), None);
    }
}

/// A fast non-cryptographic hasher (the Fx hash of rustc) for the element maps: std's SipHash
/// dominates when hashing a few hundred thousand short keys per sync.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

const FX_K: u64 = 0x517c_c1b7_2722_0a95;

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            h = (h.rotate_left(5) ^ w).wrapping_mul(FX_K);
        }
        let r = chunks.remainder();
        if !r.is_empty() {
            let mut b = [0u8; 8];
            b[..r.len()].copy_from_slice(r);
            h = (h.rotate_left(5) ^ u64::from_le_bytes(b)).wrapping_mul(FX_K);
        }
        self.0 = h;
    }

    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0.rotate_left(5) ^ i as u64).wrapping_mul(FX_K);
    }

    fn write_usize(&mut self, i: usize) {
        self.0 = (self.0.rotate_left(5) ^ i as u64).wrapping_mul(FX_K);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub type FxBuild = std::hash::BuildHasherDefault<FxHasher>;
pub type FxMap<K, V> = std::collections::HashMap<K, V, FxBuild>;
pub type FxSet<K> = std::collections::HashSet<K, FxBuild>;
