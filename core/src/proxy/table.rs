//! The proxy's persistent service table: O(changes) syncs.
//!
//! Building the whole columnar model in Python on every sync costs O(services); at 10,000
//! services that alone is longer than the whole budget for applying one changed endpoint. The
//! [`Table`] keeps every service port row on the Rust side; the Python side sends only the rows of
//! services that changed (plus the keys of rows that are gone) and the table tracks which rows are
//! dirty since the last committed sync:
//!
//! - iptables: the dirty rows are the partial sync's changed rows (KEP-3453); the chains
//!   produced by the last committed sync are the `existing` chains for stale-chain deletion.
//! - nftables: each row's elements are cached with reference counts per element, so a sync
//!   recomputes only dirty rows and writes the element (and chain) difference.
//!
//! `render_*` leaves the table ready to `commit()` after the caller applied the text; if the
//! apply failed the caller calls `invalidate()` and the next render is a full one.

use super::{iptables, nftables, FxMap, Model};
use std::collections::{BTreeMap, BTreeSet};

pub type RowKey = (String, u8);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub cluster_ip: String,
    pub port: u16,
    pub node_port: u16,
    pub health_check_node_port: u16,
    pub flags: u8,
    pub affinity_timeout: u32,
    pub external_ips: Vec<String>,
    pub lb_ips: Vec<String>,
    pub source_ranges: Vec<String>,
    pub eps: Vec<(String, u16, u8)>,
}

#[derive(Clone, Debug, Default)]
pub struct Options {
    pub cluster_cidr: Option<String>,
    pub node_ip: Option<String>,
    pub masquerade_all: bool,
}

#[derive(Default)]
struct NftCache {
    rows: FxMap<RowKey, nftables::RowElems>,
    counts: FxMap<(u8, String), (String, u32)>,
    chain_refs: FxMap<String, u32>,
}

#[derive(Clone, Debug, Default)]
pub struct Rendered {
    pub text: String,
    pub full: bool,
    pub rows: usize,
    pub changed_rows: usize,
    /// iptables: rule and chain counts; nftables: element/chain/rule counts and the diff size.
    pub counts: Vec<(&'static str, usize)>,
}

#[derive(Default)]
pub struct Table {
    pub opts: Options,
    rows: BTreeMap<RowKey, Row>,
    dirty: BTreeSet<RowKey>,
    active: Option<Vec<String>>,
    pending_active: Option<Vec<String>>,
    nft: Option<NftCache>,
}

fn one_row_model(key: &RowKey, r: &Row) -> Model {
    let mut m = Model::default();
    push_row(&mut m, key, r);
    for v in [
        &mut m.external_ip_offsets,
        &mut m.lb_ip_offsets,
        &mut m.source_range_offsets,
        &mut m.ep_offsets,
    ] {
        v.insert(0, 0);
    }
    m
}

fn push_row(m: &mut Model, key: &RowKey, r: &Row) {
    m.names.push(key.0.clone());
    m.protocols.push(key.1);
    m.cluster_ips.push(r.cluster_ip.clone());
    m.ports.push(r.port);
    m.node_ports.push(r.node_port);
    m.health_check_node_ports.push(r.health_check_node_port);
    m.flags.push(r.flags);
    m.affinity_timeouts.push(r.affinity_timeout);
    m.external_ips.extend(r.external_ips.iter().cloned());
    m.external_ip_offsets.push(m.external_ips.len() as u32);
    m.lb_ips.extend(r.lb_ips.iter().cloned());
    m.lb_ip_offsets.push(m.lb_ips.len() as u32);
    m.source_ranges.extend(r.source_ranges.iter().cloned());
    m.source_range_offsets.push(m.source_ranges.len() as u32);
    for (ip, port, f) in &r.eps {
        m.ep_ips.push(ip.clone());
        m.ep_ports.push(*port);
        m.ep_flags.push(*f);
    }
    m.ep_offsets.push(m.ep_ips.len() as u32);
}

impl Table {
    pub fn new(opts: Options) -> Self {
        Table {
            opts,
            ..Default::default()
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Upsert the rows of `m` and drop the rows in `removed`; rows that really change become dirty.
    pub fn update(&mut self, m: &Model, removed: &[RowKey]) {
        for key in removed {
            if self.rows.remove(key).is_some() {
                self.dirty.insert(key.clone());
            }
        }
        for i in 0..m.len() {
            let key = (m.names[i].clone(), m.protocols[i]);
            let eps = m
                .endpoints(i)
                .map(|e| (m.ep_ips[e].clone(), m.ep_ports[e], m.ep_flags[e]))
                .collect();
            let row = Row {
                cluster_ip: m.cluster_ips[i].clone(),
                port: m.ports[i],
                node_port: m.node_ports[i],
                health_check_node_port: m.health_check_node_ports[i],
                flags: m.flags[i],
                affinity_timeout: m.affinity_timeouts[i],
                external_ips: m.external_ips(i).to_vec(),
                lb_ips: m.lb_ips(i).to_vec(),
                source_ranges: m.source_ranges(i).to_vec(),
                eps,
            };
            if self.rows.get(&key) != Some(&row) {
                self.rows.insert(key.clone(), row);
                self.dirty.insert(key);
            }
        }
    }

    /// Make the table hold exactly the rows of `m`.
    pub fn replace(&mut self, m: &Model) {
        let keep: BTreeSet<RowKey> = (0..m.len())
            .map(|i| (m.names[i].clone(), m.protocols[i]))
            .collect();
        let removed: Vec<RowKey> = self
            .rows
            .keys()
            .filter(|k| !keep.contains(*k))
            .cloned()
            .collect();
        self.update(m, &removed);
    }

    pub fn model(&self) -> Model {
        let mut m = Model::default();
        for v in [
            &mut m.external_ip_offsets,
            &mut m.lb_ip_offsets,
            &mut m.source_range_offsets,
            &mut m.ep_offsets,
        ] {
            v.push(0);
        }
        for (k, r) in &self.rows {
            push_row(&mut m, k, r);
        }
        m
    }

    pub fn commit(&mut self) {
        self.dirty.clear();
        if let Some(a) = self.pending_active.take() {
            self.active = Some(a);
        }
    }

    pub fn invalidate(&mut self) {
        self.active = None;
        self.pending_active = None;
        self.nft = None;
    }

    pub fn active_chains(&self) -> Vec<String> {
        self.active.clone().unwrap_or_default()
    }

    pub fn render_iptables(&mut self, full: bool, existing: &[String]) -> Rendered {
        let m = self.model();
        let cfg = iptables::Config {
            cluster_cidr: self.opts.cluster_cidr.clone(),
            masquerade_all: self.opts.masquerade_all,
            node_ip: self.opts.node_ip.clone(),
        };
        let full = full || self.active.is_none();
        let out = if full {
            iptables::generate(&m, &cfg, None, existing)
        } else {
            let changed: Vec<bool> = (0..m.len())
                .map(|i| self.dirty.contains(&(m.names[i].clone(), m.protocols[i])))
                .collect();
            let prev = self.active.clone().unwrap_or_default();
            iptables::generate(&m, &cfg, Some(&changed), &prev)
        };
        self.pending_active = Some(out.active_chains);
        Rendered {
            text: out.text,
            full,
            rows: m.len(),
            changed_rows: if full { m.len() } else { self.dirty.len() },
            counts: vec![
                ("filter_rules", out.filter_rules),
                ("nat_rules", out.nat_rules),
                ("nat_chains", out.nat_chains),
                ("deleted_chains", out.deleted_chains),
            ],
        }
    }

    fn nft_cfg(&self) -> nftables::Config {
        nftables::Config {
            cluster_cidr: self.opts.cluster_cidr.clone(),
            masquerade_all: self.opts.masquerade_all,
            node_ip: self.opts.node_ip.clone(),
        }
    }

    pub fn render_nftables(&mut self, full: bool) -> Rendered {
        let cfg = self.nft_cfg();
        let node_ip = cfg.node_ip.as_deref().and_then(super::parse_ip4);
        let mut out = String::new();
        if full || self.nft.is_none() {
            let m = self.model();
            let mut cache = NftCache::default();
            let n = nftables::CONTAINERS.len();
            let mut order: Vec<Vec<(String, String)>> = vec![Vec::new(); n];
            let mut chains = BTreeSet::new();
            let all = nftables::all_row_elements(&m, node_ip);
            for (key, r) in self.rows.keys().zip(all) {
                for (c, k, v) in &r.items {
                    let e = cache
                        .counts
                        .entry((*c, k.clone()))
                        .or_insert_with(|| (String::new(), 0));
                    if e.1 == 0 {
                        e.0 = v.clone();
                        order[*c as usize].push((k.clone(), v.clone()));
                    }
                    e.1 += 1;
                }
                for ch in &r.chains {
                    *cache.chain_refs.entry(ch.clone()).or_insert(0) += 1;
                    chains.insert(ch.clone());
                }
                cache.rows.insert(key.clone(), r);
            }
            let added = nftables::write_full(&mut out, &order, &chains, &cfg);
            let counts = vec![
                ("elements", cache.counts.len()),
                ("chains", nftables::static_chain_count() + chains.len()),
                ("rules", nftables::count_rules(&chains, &cfg)),
                ("added", added),
                ("deleted", 0),
            ];
            self.nft = Some(cache);
            return Rendered {
                text: out,
                full: true,
                rows: m.len(),
                changed_rows: m.len(),
                counts,
            };
        }
        let mut cache = self.nft.take().expect("nft cache");
        let mut dels: BTreeMap<(u8, String), String> = BTreeMap::new();
        let mut adds: BTreeMap<(u8, String), String> = BTreeMap::new();
        let mut chain_del: BTreeSet<String> = BTreeSet::new();
        let mut chain_add: BTreeSet<String> = BTreeSet::new();
        for key in &self.dirty {
            let old = cache.rows.remove(key).unwrap_or_default();
            let new = match self.rows.get(key) {
                Some(r) => {
                    let m = one_row_model(key, r);
                    let mut e = nftables::RowElems::default();
                    nftables::row_elements(&m, 0, node_ip, &mut e);
                    e
                }
                None => nftables::RowElems::default(),
            };
            for (c, k, _) in old.items.iter() {
                let ck = (*c, k.clone());
                if let Some(e) = cache.counts.get_mut(&ck) {
                    e.1 -= 1;
                    if e.1 == 0 {
                        let (v, _) = cache.counts.remove(&ck).expect("counted element");
                        dels.insert(ck, v);
                    }
                }
            }
            for ch in &old.chains {
                if let Some(n) = cache.chain_refs.get_mut(ch) {
                    *n -= 1;
                    if *n == 0 {
                        cache.chain_refs.remove(ch);
                        chain_del.insert(ch.clone());
                    }
                }
            }
            for (c, k, v) in new.items.iter() {
                let ck = (*c, k.clone());
                match cache.counts.get_mut(&ck) {
                    Some(e) => e.1 += 1,
                    None => {
                        cache.counts.insert(ck.clone(), (v.clone(), 1));
                        adds.insert(ck, v.clone());
                    }
                }
            }
            for ch in &new.chains {
                let n = cache.chain_refs.entry(ch.clone()).or_insert(0);
                *n += 1;
                if *n == 1 {
                    chain_add.insert(ch.clone());
                }
            }
            if self.rows.contains_key(key) {
                cache.rows.insert(key.clone(), new);
            }
        }
        // An element deleted and re-added with the same value is left alone; so is a chain.
        let same: Vec<(u8, String)> = adds
            .iter()
            .filter(|(k, v)| dels.get(*k) == Some(*v))
            .map(|(k, _)| k.clone())
            .collect();
        for k in same {
            adds.remove(&k);
            dels.remove(&k);
        }
        let both: Vec<String> = chain_add.intersection(&chain_del).cloned().collect();
        for ch in both {
            chain_add.remove(&ch);
            chain_del.remove(&ch);
        }
        let n = nftables::CONTAINERS.len();
        let mut dv: Vec<Vec<&str>> = vec![Vec::new(); n];
        let mut av: Vec<Vec<(&str, &str)>> = vec![Vec::new(); n];
        for (c, k) in dels.keys() {
            dv[*c as usize].push(k);
        }
        for ((c, k), v) in &adds {
            av[*c as usize].push((k, v));
        }
        let new_chains: Vec<&String> = chain_add.iter().collect();
        let old_chains: Vec<&String> = chain_del.iter().collect();
        nftables::write_diff(&mut out, &new_chains, &old_chains, &dv, &av, &cfg);
        let chains: BTreeSet<String> = cache.chain_refs.keys().cloned().collect();
        let counts = vec![
            ("elements", cache.counts.len()),
            ("chains", nftables::static_chain_count() + chains.len()),
            ("rules", nftables::count_rules(&chains, &cfg)),
            ("added", adds.len()),
            ("deleted", dels.len()),
        ];
        let changed = self.dirty.len();
        self.nft = Some(cache);
        Rendered {
            text: out,
            full: false,
            rows: self.rows.len(),
            changed_rows: changed,
            counts,
        }
    }
}
