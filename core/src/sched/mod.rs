//! The scheduler engine: kube-scheduler's default filters and scores over columnar node data.
//!
//! [`Cluster`] keeps every node as one slot in a set of columns (allocatable and requested
//! resources, interned labels and taints, unschedulable, used host ports, images) and every
//! placed pod in a slot table indexed by node. Nodes and pods are added, updated and removed
//! in place; nothing is rebuilt.
//!
//! Scheduling one pod ([`Cluster::schedule`]) runs the upstream plugins in upstream's order:
//! filters NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, NodePorts,
//! NodeResourcesFit, PodTopologySpread, InterPodAffinity; then scores TaintToleration,
//! NodeAffinity, PodTopologySpread, InterPodAffinity, NodeResourcesFit,
//! NodeResourcesBalancedAllocation and ImageLocality over every feasible node (no sampling),
//! normalized and weighted as upstream, and picks the best node with a uniform random
//! tie-break.
//!
//! Speed comes from splitting the work into *local* parts (which depend only on one node and
//! the pod: the first six filters and the Fit, BalancedAllocation, ImageLocality scores and the
//! raw TaintToleration / NodeAffinity counts) and *global* parts (topology spread and inter-pod
//! affinity, and the normalizations). Local results are cached per pod shape; a placement dirties
//! only its node, so the next pod of the same shape recomputes one node instead of all of them.
//! The global parts are recomputed for each pod from the pod table, with topology domains
//! resolved to dense per-key indices.

pub mod spec;

use std::collections::{BTreeSet, HashMap};

use crate::selector::{Interner, Op, Requirement, Selector};
pub use spec::{AffinityTermSpec, NodeSelectorTermSpec, NodeSpec, PodSpec, Profile, SpreadSpec};

const NONE: u32 = u32::MAX;
const MAX_SCORE: i64 = 100;
const HOSTNAME: &str = "kubernetes.io/hostname";
const NS_NAME_LABEL: &str = "kubernetes.io/metadata.name";
const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";
const MB: i64 = 1024 * 1024;
const IMG_MIN: i64 = 23 * MB;
const IMG_MAX_PER_CONTAINER: i64 = 1000 * MB;

/// Names of the score plugins, in the order of [`Scores::plugins`].
pub const SCORE_PLUGINS: [&str; 7] = [
    "TaintToleration",
    "NodeAffinity",
    "PodTopologySpread",
    "InterPodAffinity",
    "NodeResourcesFit",
    "NodeResourcesBalancedAllocation",
    "ImageLocality",
];

const F_FEAS: u8 = 1;
const F_AFF: u8 = 2;
const F_TAINTS: u8 = 4;

// Filter failure reasons (upstream's texts).
const R_UNSCHED: &str = "node(s) were unschedulable";
const R_NODENAME: &str = "node(s) didn't match the requested node name";
const R_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
const R_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
const R_SPREAD: &str = "node(s) didn't match pod topology spread constraints";
const R_SPREAD_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";
const R_POD_AFF: &str = "node(s) didn't match pod affinity rules";
const R_POD_ANTI: &str = "node(s) didn't match pod anti-affinity rules";
const R_EXISTING_ANTI: &str = "node(s) didn't satisfy existing pods anti-affinity rules";

// ---------------------------------------------------------------------------------------------
// compiled forms

#[derive(Clone, Debug, PartialEq)]
struct CReq {
    key: u32,
    values: Vec<u32>,
    req: Requirement,
}

#[inline]
fn label_value(set: &[(u32, u32)], key: u32) -> Option<u32> {
    set.iter().find(|p| p.0 == key).map(|p| p.1)
}

impl CReq {
    #[inline]
    fn matches(&self, set: &[(u32, u32)], strings: &Interner) -> bool {
        let v = label_value(set, self.key);
        match self.req.op {
            Op::Equals | Op::DoubleEquals | Op::In => v.is_some_and(|v| self.values.contains(&v)),
            Op::NotEquals | Op::NotIn => v.is_none_or(|v| !self.values.contains(&v)),
            Op::Exists => v.is_some(),
            Op::DoesNotExist => v.is_none(),
            Op::GreaterThan | Op::LessThan => self.req.matches(v.map(|v| strings.name(v))),
        }
    }
}

/// A label selector resolved to interned ids.
#[derive(Clone, Debug, PartialEq)]
struct CSel {
    nothing: bool,
    reqs: Vec<CReq>,
}

impl CSel {
    #[inline]
    fn matches(&self, set: &[(u32, u32)], strings: &Interner) -> bool {
        !self.nothing && self.reqs.iter().all(|r| r.matches(set, strings))
    }
}

/// A node selector term: label requirements and metadata.name requirements.
#[derive(Clone, Debug, PartialEq)]
struct CTerm {
    exprs: Vec<CReq>,
    fields: Vec<Requirement>,
}

impl CTerm {
    fn matches(&self, set: &[(u32, u32)], name: &str, strings: &Interner) -> bool {
        if self.exprs.is_empty() && self.fields.is_empty() {
            return false;
        }
        self.exprs.iter().all(|r| r.matches(set, strings))
            && self.fields.iter().all(|r| r.matches(Some(name)))
    }
}

/// A pod affinity term.
#[derive(Clone, Debug)]
struct CATerm {
    weight: i64,
    namespaces: Vec<u32>,
    ns_selector: Option<Selector>,
    sel: CSel,
    key: u32,
}

impl CATerm {
    #[inline]
    fn matches(&self, ns: u32, labels: &[(u32, u32)], strings: &Interner) -> bool {
        let ns_ok = self.namespaces.contains(&ns)
            || self
                .ns_selector
                .as_ref()
                .is_some_and(|s| s.matches_pairs(&[(NS_NAME_LABEL, strings.name(ns))]));
        ns_ok && self.sel.matches(labels, strings)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Tol {
    key: u32, // NONE: empty key
    exists: bool,
    valid: bool,
    value: u32,
    effect: u32, // NONE: any effect
}

impl Tol {
    #[inline]
    fn tolerates(&self, t: &Taint) -> bool {
        (self.effect == NONE || self.effect == t.effect)
            && (self.key == NONE || self.key == t.key)
            && self.valid
            && (self.exists || self.value == t.value)
    }
}

#[derive(Clone, Debug)]
struct Taint {
    key: u32,
    value: u32,
    effect: u32,
}

/// Resource reference for scoring.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Res {
    Cpu,
    Mem,
    Eph,
    Scalar(u32),
}

/// The part of a pod that the local filters and scores read; pods with equal shapes share
/// a local cache.
#[derive(Clone, Debug, PartialEq)]
struct Shape {
    node_name: Option<String>,
    req: [i64; 3],
    nonzero: [i64; 2],
    scalars: Vec<(u32, i64)>,
    node_selector: Vec<(u32, u32)>,
    required: Option<Vec<CTerm>>,
    preferred: Vec<(i64, CTerm)>,
    tolerations: Vec<Tol>,
    ports: Vec<(u32, u32, i64)>,
    images: Vec<u32>,
}

#[derive(Clone, Debug)]
struct CSpread {
    max_skew: i64,
    key: u32,
    sel: CSel,
    min_domains: i64,
    honor_aff: bool,
    honor_taints: bool,
    self_match: bool,
}

/// A pod compiled against a cluster's interners.
pub struct CPod {
    key: String,
    ns: u32,
    labels: Vec<(u32, u32)>,
    shape: Shape,
    tolerates_unsched: bool,
    hard: Vec<CSpread>,
    soft: Vec<CSpread>,
    aff: Vec<CATerm>,
    anti: Vec<CATerm>,
    paff: Vec<CATerm>,
    panti: Vec<CATerm>,
}

impl CPod {
    pub fn key(&self) -> &str {
        &self.key
    }
}

struct Placed {
    key: String,
    node: u32,
    req: [i64; 3],
    nonzero: [i64; 2],
    scalars: Vec<(u32, i64)>,
    ports: Vec<(u32, u32, i64)>,
    aff: Vec<CATerm>,
    anti: Vec<CATerm>,
    paff: Vec<CATerm>,
    panti: Vec<CATerm>,
}

impl Placed {
    fn has_terms(&self) -> bool {
        !(self.aff.is_empty()
            && self.anti.is_empty()
            && self.paff.is_empty()
            && self.panti.is_empty())
    }
}

/// Topology domains of one label key: `dom[node]` is a dense domain index (NONE: no label).
struct Topo {
    dom: Vec<u32>,
    ndom: usize,
}

struct LocalCache {
    shape: Shape,
    dirty_pos: usize,
    flags: Vec<u8>,
    score: Vec<i64>,
    taint_raw: Vec<i64>,
    naff_raw: Vec<i64>,
}

#[derive(Default, Clone, Copy)]
struct LocalOut {
    flags: u8,
    fit: i64,
    bal: i64,
    img: i64,
    taint_raw: i64,
    naff_raw: i64,
}

/// Per-node scores of one pod: feasible node slots, each plugin's normalized (unweighted)
/// score per feasible node (order of [`SCORE_PLUGINS`]), and the weighted total.
#[derive(Debug, Default, Clone)]
pub struct Scores {
    pub nodes: Vec<u32>,
    pub plugins: [Vec<i64>; 7],
    pub total: Vec<i64>,
}

/// How ties between best-scored nodes are broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TieBreak {
    /// Uniformly at random (upstream), from the cluster's seeded generator.
    Random,
    /// The lowest node slot (deterministic; for comparisons).
    First,
}

// ---------------------------------------------------------------------------------------------
// the cluster

pub struct Cluster {
    profile: Profile,
    fit_res: Vec<Res>,
    bal_res: Vec<Res>,
    strings: Interner,
    image_ids: Interner,
    scalar_ids: Interner,
    k_hostname: u32,
    k_unsched: u32,
    e_nosched: u32,
    e_prefer: u32,
    e_noexec: u32,
    // nodes
    names: Vec<String>,
    index: HashMap<String, u32>,
    live: Vec<bool>,
    free: Vec<u32>,
    n_live: usize,
    labels: Vec<Vec<(u32, u32)>>,
    taints: Vec<Vec<Taint>>,
    unsched: Vec<bool>,
    alloc: [Vec<i64>; 4],
    req: [Vec<i64>; 3],
    nonzero: [Vec<i64>; 2],
    npods: Vec<i64>,
    salloc: Vec<Vec<i64>>,
    sreq: Vec<Vec<i64>>,
    ports: Vec<Vec<(u32, u32, i64)>>,
    node_images: Vec<Vec<(u32, i64)>>,
    image_nodes: Vec<i64>,
    node_pods: Vec<Vec<u32>>,
    prefer_taint_nodes: usize,
    // pods
    pods: Vec<Option<Placed>>,
    pod_index: HashMap<String, u32>,
    pod_free: Vec<u32>,
    aff_pods: BTreeSet<u32>,
    /// Compact columns of the pod table for the global scans: namespace (NONE: free slot),
    /// node, labels.
    pod_ns: Vec<u32>,
    pod_nodes: Vec<u32>,
    /// Topology keys used by the affinity terms of placed pods, with use counts.
    aff_keys: HashMap<u32, usize>,
    pod_labels: Vec<Vec<(u32, u32)>>,
    // caches
    dirty: Vec<u32>,
    /// Topology domains by label key id (dense: looked up per node in the filters).
    topo: Vec<Option<Topo>>,
    caches: Vec<LocalCache>,
    rng: u64,
}

fn resolve_res(name: &str, scalars: &mut Interner) -> Res {
    match name {
        "cpu" => Res::Cpu,
        "memory" => Res::Mem,
        "ephemeral-storage" => Res::Eph,
        other => Res::Scalar(scalars.intern(other)),
    }
}

fn compile_req(
    strings: &mut Interner,
    key: &str,
    op: &str,
    values: &[String],
) -> Result<CReq, String> {
    let op = match op {
        "In" => Op::In,
        "NotIn" => Op::NotIn,
        "Exists" => Op::Exists,
        "DoesNotExist" => Op::DoesNotExist,
        "Gt" => Op::GreaterThan,
        "Lt" => Op::LessThan,
        "=" => Op::Equals,
        other => return Err(format!("{other:?} is not a valid operator")),
    };
    let req = Requirement::new(key, op, values.to_vec())?;
    Ok(CReq {
        key: strings.intern(key),
        values: req.values.iter().map(|v| strings.intern(v)).collect(),
        req,
    })
}

fn compile_sel(
    strings: &mut Interner,
    s: &Option<spec::LabelSelectorSpec>,
) -> Result<CSel, String> {
    let Some((ml, me)) = s else {
        return Ok(CSel {
            nothing: true,
            reqs: Vec::new(),
        });
    };
    let mut reqs = Vec::with_capacity(ml.len() + me.len());
    for (k, v) in ml {
        reqs.push(compile_req(strings, k, "=", std::slice::from_ref(v))?);
    }
    for (k, op, vals) in me {
        if !matches!(op.as_str(), "In" | "NotIn" | "Exists" | "DoesNotExist") {
            return Err(format!("{op:?} is not a valid label selector operator"));
        }
        reqs.push(compile_req(strings, k, op, vals)?);
    }
    Ok(CSel {
        nothing: false,
        reqs,
    })
}

fn compile_term(strings: &mut Interner, t: &NodeSelectorTermSpec) -> Result<CTerm, String> {
    let mut exprs = Vec::new();
    for (k, op, vals) in &t.match_expressions {
        exprs.push(compile_req(strings, k, op, vals)?);
    }
    let mut fields = Vec::new();
    for (k, op, vals) in &t.match_fields {
        if k != "metadata.name" {
            return Err(format!(
                "matchFields: Invalid value: {k:?}: not a supported field selector key"
            ));
        }
        let op = match op.as_str() {
            "In" => Op::In,
            "NotIn" => Op::NotIn,
            other => {
                return Err(format!(
                    "matchFields: Unsupported value: {other:?}: supported values: \"In\", \"NotIn\""
                ))
            }
        };
        if vals.len() != 1 {
            return Err("matchFields: must have one element".into());
        }
        fields.push(Requirement {
            key: k.clone(),
            op,
            values: vals.clone(),
        });
    }
    Ok(CTerm { exprs, fields })
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster::new(Profile::default())
    }
}

impl Cluster {
    pub fn new(profile: Profile) -> Cluster {
        let mut strings = Interner::default();
        let k_hostname = strings.intern(HOSTNAME);
        let k_unsched = strings.intern(UNSCHEDULABLE_TAINT);
        let e_nosched = strings.intern("NoSchedule");
        let e_prefer = strings.intern("PreferNoSchedule");
        let e_noexec = strings.intern("NoExecute");
        let mut c = Cluster {
            profile: profile.clone(),
            fit_res: Vec::new(),
            bal_res: Vec::new(),
            strings,
            image_ids: Interner::default(),
            scalar_ids: Interner::default(),
            k_hostname,
            k_unsched,
            e_nosched,
            e_prefer,
            e_noexec,
            names: Vec::new(),
            index: HashMap::new(),
            live: Vec::new(),
            free: Vec::new(),
            n_live: 0,
            labels: Vec::new(),
            taints: Vec::new(),
            unsched: Vec::new(),
            alloc: Default::default(),
            req: Default::default(),
            nonzero: Default::default(),
            npods: Vec::new(),
            salloc: Vec::new(),
            sreq: Vec::new(),
            ports: Vec::new(),
            node_images: Vec::new(),
            image_nodes: Vec::new(),
            node_pods: Vec::new(),
            prefer_taint_nodes: 0,
            pods: Vec::new(),
            pod_index: HashMap::new(),
            pod_free: Vec::new(),
            aff_pods: BTreeSet::new(),
            pod_ns: Vec::new(),
            aff_keys: HashMap::new(),
            pod_nodes: Vec::new(),
            pod_labels: Vec::new(),
            dirty: Vec::new(),
            topo: Vec::new(),
            caches: Vec::new(),
            rng: 0x9E37_79B9_7F4A_7C15,
        };
        c.set_profile(profile);
        c
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    pub fn set_profile(&mut self, profile: Profile) {
        self.fit_res = profile
            .fit_resources
            .iter()
            .map(|(n, _)| resolve_res(n, &mut self.scalar_ids))
            .collect();
        self.bal_res = profile
            .balanced_resources
            .iter()
            .map(|n| resolve_res(n, &mut self.scalar_ids))
            .collect();
        self.profile = profile;
        self.grow_scalars();
        self.invalidate();
    }

    pub fn seed(&mut self, seed: u64) {
        self.rng = seed ^ 0x9E37_79B9_7F4A_7C15;
    }

    fn next_rand(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn grow_scalars(&mut self) {
        let slots = self.names.len();
        while self.salloc.len() < self.scalar_ids.len() {
            self.salloc.push(vec![0; slots]);
            self.sreq.push(vec![0; slots]);
        }
    }

    fn invalidate(&mut self) {
        self.caches.clear();
        self.topo.clear();
        self.dirty.clear();
    }

    fn mark_dirty(&mut self, node: u32) {
        if self.caches.is_empty() {
            return;
        }
        self.dirty.push(node);
        if self.dirty.len() > 4 * self.names.len() + 1024 {
            self.caches.clear();
            self.dirty.clear();
        }
    }

    // ---- nodes ------------------------------------------------------------------------------

    pub fn num_nodes(&self) -> usize {
        self.n_live
    }

    pub fn num_slots(&self) -> usize {
        self.names.len()
    }

    pub fn num_pods(&self) -> usize {
        self.pod_index.len()
    }

    pub fn node_slot(&self, name: &str) -> Option<u32> {
        self.index.get(name).copied()
    }

    pub fn node_name(&self, slot: u32) -> &str {
        &self.names[slot as usize]
    }

    pub fn is_live(&self, slot: u32) -> bool {
        self.live.get(slot as usize).copied().unwrap_or(false)
    }

    /// Live node names in slot order.
    pub fn node_names(&self) -> Vec<(u32, &str)> {
        (0..self.names.len())
            .filter(|&i| self.live[i])
            .map(|i| (i as u32, self.names[i].as_str()))
            .collect()
    }

    /// Add a node, or replace the node of the same name (its pods stay). Returns the slot.
    pub fn upsert_node(&mut self, spec: &NodeSpec) -> Result<u32, String> {
        if spec.name.is_empty() {
            return Err("node name must not be empty".into());
        }
        let slot = match self.index.get(&spec.name) {
            Some(&s) => {
                self.clear_node_static(s as usize);
                s as usize
            }
            None => {
                let s = match self.free.pop() {
                    Some(s) => s as usize,
                    None => {
                        let s = self.names.len();
                        self.names.push(String::new());
                        self.live.push(false);
                        self.labels.push(Vec::new());
                        self.taints.push(Vec::new());
                        self.unsched.push(false);
                        for col in self.alloc.iter_mut() {
                            col.push(0);
                        }
                        for col in self.req.iter_mut() {
                            col.push(0);
                        }
                        for col in self.nonzero.iter_mut() {
                            col.push(0);
                        }
                        self.npods.push(0);
                        for col in self.salloc.iter_mut() {
                            col.push(0);
                        }
                        for col in self.sreq.iter_mut() {
                            col.push(0);
                        }
                        self.ports.push(Vec::new());
                        self.node_images.push(Vec::new());
                        self.node_pods.push(Vec::new());
                        s
                    }
                };
                self.names[s] = spec.name.clone();
                self.index.insert(spec.name.clone(), s as u32);
                self.live[s] = true;
                self.n_live += 1;
                s
            }
        };
        let mut labels: Vec<(u32, u32)> = spec
            .labels
            .iter()
            .map(|(k, v)| (self.strings.intern(k), self.strings.intern(v)))
            .collect();
        labels.sort_unstable();
        labels.dedup_by_key(|p| p.0);
        self.labels[slot] = labels;
        self.taints[slot] = spec
            .taints
            .iter()
            .map(|(k, v, e)| Taint {
                key: self.strings.intern(k),
                value: self.strings.intern(v),
                effect: self.strings.intern(e),
            })
            .collect();
        if self.taints[slot].iter().any(|t| t.effect == self.e_prefer) {
            self.prefer_taint_nodes += 1;
        }
        self.unsched[slot] = spec.unschedulable;
        self.alloc[0][slot] = spec.cpu;
        self.alloc[1][slot] = spec.memory;
        self.alloc[2][slot] = spec.ephemeral;
        self.alloc[3][slot] = spec.pods;
        for (name, v) in &spec.scalars {
            let id = self.scalar_ids.intern(name) as usize;
            self.grow_scalars();
            self.salloc[id][slot] = *v;
        }
        let mut imgs: Vec<(u32, i64)> = Vec::new();
        for (names, size) in &spec.images {
            for n in names {
                let id = self.image_ids.intern(n);
                if !imgs.iter().any(|p| p.0 == id) {
                    imgs.push((id, *size));
                }
            }
        }
        while self.image_nodes.len() < self.image_ids.len() {
            self.image_nodes.push(0);
        }
        for &(id, _) in &imgs {
            self.image_nodes[id as usize] += 1;
        }
        self.node_images[slot] = imgs;
        self.caches.clear();
        self.topo.clear();
        self.dirty.clear();
        Ok(slot as u32)
    }

    /// Forget a node's static data (labels, taints, allocatable, images) before replacing it.
    fn clear_node_static(&mut self, s: usize) {
        if self.taints[s].iter().any(|t| t.effect == self.e_prefer) {
            self.prefer_taint_nodes -= 1;
        }
        for &(id, _) in &self.node_images[s] {
            self.image_nodes[id as usize] -= 1;
        }
        self.node_images[s].clear();
        self.taints[s].clear();
        self.labels[s].clear();
        for col in self.salloc.iter_mut() {
            col[s] = 0;
        }
    }

    /// Remove a node and forget the pods placed on it.
    pub fn remove_node(&mut self, name: &str) -> bool {
        let Some(slot) = self.index.remove(name) else {
            return false;
        };
        let s = slot as usize;
        for p in std::mem::take(&mut self.node_pods[s]) {
            let key = self.pods[p as usize].as_ref().map(|p| p.key.clone());
            if let Some(k) = key {
                self.forget(&k);
            }
        }
        self.clear_node_static(s);
        self.live[s] = false;
        self.n_live -= 1;
        self.names[s].clear();
        self.unsched[s] = false;
        for col in self.alloc.iter_mut() {
            col[s] = 0;
        }
        self.free.push(slot);
        self.invalidate();
        true
    }

    /// Columns for numpy: allocatable (cpu, memory, ephemeral, pods), requested (cpu,
    /// memory, ephemeral, pods), non-zero requested (cpu, memory), by slot; live mask.
    #[allow(clippy::type_complexity)]
    pub fn columns(&self) -> (Vec<bool>, [&[i64]; 4], [&[i64]; 3], &[i64], [&[i64]; 2]) {
        (
            self.live.clone(),
            [
                &self.alloc[0],
                &self.alloc[1],
                &self.alloc[2],
                &self.alloc[3],
            ],
            [&self.req[0], &self.req[1], &self.req[2]],
            &self.npods,
            [&self.nonzero[0], &self.nonzero[1]],
        )
    }

    // ---- pods -------------------------------------------------------------------------------

    fn compile_terms(&mut self, ts: &[AffinityTermSpec]) -> Result<Vec<CATerm>, String> {
        let mut out = Vec::with_capacity(ts.len());
        for t in ts {
            if t.topology_key.is_empty() {
                return Err("topologyKey: Required value: can not be empty".into());
            }
            let ns_selector = match &t.namespace_selector {
                None => None,
                Some((ml, me)) => Some(Selector::from_structured(ml, me)?),
            };
            out.push(CATerm {
                weight: t.weight,
                namespaces: t
                    .namespaces
                    .iter()
                    .map(|n| self.strings.intern(n))
                    .collect(),
                ns_selector,
                sel: compile_sel(&mut self.strings, &t.selector)?,
                key: self.strings.intern(&t.topology_key),
            });
        }
        Ok(out)
    }

    /// Resolve a pod spec against this cluster's interners.
    pub fn compile(&mut self, p: &PodSpec) -> Result<CPod, String> {
        let ns = self.strings.intern(&p.namespace);
        let mut labels: Vec<(u32, u32)> = p
            .labels
            .iter()
            .map(|(k, v)| (self.strings.intern(k), self.strings.intern(v)))
            .collect();
        labels.sort_unstable();
        labels.dedup_by_key(|l| l.0);
        let mut scalars = Vec::new();
        for (n, v) in &p.scalars {
            if *v != 0 {
                scalars.push((self.scalar_ids.intern(n), *v));
            }
        }
        self.grow_scalars();
        let mut node_selector: Vec<(u32, u32)> = p
            .node_selector
            .iter()
            .map(|(k, v)| (self.strings.intern(k), self.strings.intern(v)))
            .collect();
        node_selector.sort_unstable();
        let required = match &p.required_terms {
            None => None,
            Some(ts) => Some(
                ts.iter()
                    .map(|t| compile_term(&mut self.strings, t))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let mut preferred = Vec::new();
        for (w, t) in &p.preferred_terms {
            let t = compile_term(&mut self.strings, t)?;
            if *w != 0 {
                preferred.push((*w, t));
            }
        }
        let mut tolerations = Vec::new();
        for (k, op, v, e) in &p.tolerations {
            tolerations.push(Tol {
                key: if k.is_empty() {
                    NONE
                } else {
                    self.strings.intern(k)
                },
                exists: op == "Exists",
                valid: op.is_empty() || op == "Equal" || op == "Exists",
                value: self.strings.intern(v),
                effect: if e.is_empty() {
                    NONE
                } else {
                    self.strings.intern(e)
                },
            });
        }
        let unsched_taint = Taint {
            key: self.k_unsched,
            value: self.strings.intern(""),
            effect: self.e_nosched,
        };
        let tolerates_unsched = tolerations.iter().any(|t| t.tolerates(&unsched_taint));
        let ports = p
            .host_ports
            .iter()
            .filter(|(_, _, port)| *port > 0)
            .map(|(ip, proto, port)| {
                let ip = if ip.is_empty() { "0.0.0.0" } else { ip };
                let proto = if proto.is_empty() { "TCP" } else { proto };
                (self.strings.intern(ip), self.strings.intern(proto), *port)
            })
            .collect();
        let images = p
            .images
            .iter()
            .map(|i| self.image_ids.get(i).unwrap_or(NONE))
            .collect();
        let mut hard = Vec::new();
        let mut soft = Vec::new();
        for s in &p.spread {
            if s.topology_key.is_empty() {
                return Err("topologyKey: Required value: can not be empty".into());
            }
            if s.max_skew <= 0 {
                return Err(format!(
                    "maxSkew: Invalid value: {}: must be greater than zero",
                    s.max_skew
                ));
            }
            let sel = compile_sel(&mut self.strings, &s.selector)?;
            let self_match = sel.matches(&labels, &self.strings);
            let c = CSpread {
                max_skew: s.max_skew,
                key: self.strings.intern(&s.topology_key),
                sel,
                min_domains: s.min_domains,
                honor_aff: s.honor_affinity,
                honor_taints: s.honor_taints,
                self_match,
            };
            if s.hard {
                hard.push(c);
            } else {
                soft.push(c);
            }
        }
        let aff = self.compile_terms(&p.affinity)?;
        let anti = self.compile_terms(&p.anti_affinity)?;
        let paff: Vec<CATerm> = self
            .compile_terms(&p.preferred_affinity)?
            .into_iter()
            .filter(|t| t.weight != 0)
            .collect();
        let panti: Vec<CATerm> = self
            .compile_terms(&p.preferred_anti_affinity)?
            .into_iter()
            .filter(|t| t.weight != 0)
            .collect();
        Ok(CPod {
            key: p.key.clone(),
            ns,
            labels,
            shape: Shape {
                node_name: (!p.node_name.is_empty()).then(|| p.node_name.clone()),
                req: [p.cpu, p.memory, p.ephemeral],
                nonzero: [p.nonzero_cpu, p.nonzero_memory],
                scalars,
                node_selector,
                required,
                preferred,
                tolerations,
                ports,
                images,
            },
            tolerates_unsched,
            hard,
            soft,
            aff,
            anti,
            paff,
            panti,
        })
    }

    /// Record a pod as running on a node (an existing pod, or a placement being assumed).
    pub fn assume(&mut self, pod: &CPod, node: u32) -> Result<(), String> {
        if !self.is_live(node) {
            return Err(format!("node slot {node} does not exist"));
        }
        if self.pod_index.contains_key(&pod.key) {
            return Err(format!("pod {} is already placed", pod.key));
        }
        let n = node as usize;
        let sh = &pod.shape;
        for (i, v) in sh.req.iter().enumerate() {
            self.req[i][n] += v;
        }
        for (i, v) in sh.nonzero.iter().enumerate() {
            self.nonzero[i][n] += v;
        }
        self.npods[n] += 1;
        for &(id, v) in &sh.scalars {
            self.sreq[id as usize][n] += v;
        }
        self.ports[n].extend_from_slice(&sh.ports);
        let placed = Placed {
            key: pod.key.clone(),
            node,
            req: sh.req,
            nonzero: sh.nonzero,
            scalars: sh.scalars.clone(),
            ports: sh.ports.clone(),
            aff: pod.aff.clone(),
            anti: pod.anti.clone(),
            paff: pod.paff.clone(),
            panti: pod.panti.clone(),
        };
        let has_terms = placed.has_terms();
        let slot = match self.pod_free.pop() {
            Some(s) => {
                self.pods[s as usize] = Some(placed);
                self.pod_ns[s as usize] = pod.ns;
                self.pod_nodes[s as usize] = node;
                self.pod_labels[s as usize] = pod.labels.clone();
                s
            }
            None => {
                self.pods.push(Some(placed));
                self.pod_ns.push(pod.ns);
                self.pod_nodes.push(node);
                self.pod_labels.push(pod.labels.clone());
                (self.pods.len() - 1) as u32
            }
        };
        if has_terms {
            self.aff_pods.insert(slot);
            for t in pod
                .aff
                .iter()
                .chain(&pod.anti)
                .chain(&pod.paff)
                .chain(&pod.panti)
            {
                *self.aff_keys.entry(t.key).or_insert(0) += 1;
            }
        }
        self.pod_index.insert(pod.key.clone(), slot);
        self.node_pods[n].push(slot);
        self.mark_dirty(node);
        Ok(())
    }

    /// Remove a placed pod; returns whether it was there.
    pub fn forget(&mut self, key: &str) -> bool {
        let Some(slot) = self.pod_index.remove(key) else {
            return false;
        };
        let p = self.pods[slot as usize].take().expect("indexed pod");
        let n = p.node as usize;
        for (i, v) in p.req.iter().enumerate() {
            self.req[i][n] -= v;
        }
        for (i, v) in p.nonzero.iter().enumerate() {
            self.nonzero[i][n] -= v;
        }
        self.npods[n] -= 1;
        for &(id, v) in &p.scalars {
            self.sreq[id as usize][n] -= v;
        }
        for port in &p.ports {
            if let Some(i) = self.ports[n].iter().position(|x| x == port) {
                self.ports[n].swap_remove(i);
            }
        }
        if let Some(i) = self.node_pods[n].iter().position(|&x| x == slot) {
            self.node_pods[n].swap_remove(i);
        }
        if self.aff_pods.remove(&slot) {
            for t in p.aff.iter().chain(&p.anti).chain(&p.paff).chain(&p.panti) {
                if let Some(c) = self.aff_keys.get_mut(&t.key) {
                    *c -= 1;
                    if *c == 0 {
                        self.aff_keys.remove(&t.key);
                    }
                }
            }
        }
        self.pod_ns[slot as usize] = NONE;
        self.pod_labels[slot as usize] = Vec::new();
        self.pod_free.push(slot);
        self.mark_dirty(p.node);
        true
    }

    /// The node slot a pod is placed on.
    pub fn pod_node(&self, key: &str) -> Option<u32> {
        self.pod_index
            .get(key)
            .and_then(|&s| self.pods[s as usize].as_ref())
            .map(|p| p.node)
    }

    // ---- local filters and scores -------------------------------------------------------------

    fn untolerated_taint(&self, pod: &CPod, n: usize) -> Option<usize> {
        self.taints[n].iter().position(|t| {
            (t.effect == self.e_nosched || t.effect == self.e_noexec)
                && !pod.shape.tolerations.iter().any(|tol| tol.tolerates(t))
        })
    }

    fn affinity_ok(&self, sh: &Shape, n: usize) -> bool {
        let labels = &self.labels[n];
        if !sh
            .node_selector
            .iter()
            .all(|&(k, v)| label_value(labels, k) == Some(v))
        {
            return false;
        }
        match &sh.required {
            None => true,
            Some(terms) => terms
                .iter()
                .any(|t| t.matches(labels, &self.names[n], &self.strings)),
        }
    }

    fn ports_conflict(&self, sh: &Shape, n: usize) -> bool {
        if sh.ports.is_empty() {
            return false;
        }
        let any_ip = self.strings.get("0.0.0.0").unwrap_or(NONE);
        let used = &self.ports[n];
        sh.ports.iter().any(|&(ip, proto, port)| {
            used.iter().any(|&(uip, uproto, uport)| {
                uport == port && uproto == proto && (ip == any_ip || uip == any_ip || uip == ip)
            })
        })
    }

    /// NodeResourcesFit's insufficient resources, in upstream's order.
    fn fit_failures(&self, sh: &Shape, n: usize, out: &mut Vec<String>) {
        if self.npods[n] + 1 > self.alloc[3][n] {
            out.push("Too many pods".into());
        }
        if sh.req == [0, 0, 0] && sh.scalars.is_empty() {
            return;
        }
        const NAMES: [&str; 3] = ["cpu", "memory", "ephemeral-storage"];
        for (i, name) in NAMES.iter().enumerate() {
            if sh.req[i] > 0 && sh.req[i] > self.alloc[i][n] - self.req[i][n] {
                out.push(format!("Insufficient {name}"));
            }
        }
        for &(id, v) in &sh.scalars {
            let id = id as usize;
            if v > self.salloc[id][n] - self.sreq[id][n] {
                out.push(format!("Insufficient {}", self.scalar_ids.name(id as u32)));
            }
        }
    }

    #[inline]
    fn fits(&self, sh: &Shape, n: usize) -> bool {
        if self.npods[n] + 1 > self.alloc[3][n] {
            return false;
        }
        for i in 0..3 {
            if sh.req[i] > 0 && sh.req[i] > self.alloc[i][n] - self.req[i][n] {
                return false;
            }
        }
        sh.scalars
            .iter()
            .all(|&(id, v)| v <= self.salloc[id as usize][n] - self.sreq[id as usize][n])
    }

    /// (allocatable, requested incl. the pod) of a resource, as the resource scorers see it.
    #[inline]
    fn alloc_req(&self, sh: &Shape, r: Res, n: usize, use_requested: bool) -> (i64, i64) {
        match r {
            Res::Cpu => {
                if use_requested {
                    (self.alloc[0][n], self.req[0][n] + sh.req[0])
                } else {
                    (self.alloc[0][n], self.nonzero[0][n] + sh.nonzero[0])
                }
            }
            Res::Mem => {
                if use_requested {
                    (self.alloc[1][n], self.req[1][n] + sh.req[1])
                } else {
                    (self.alloc[1][n], self.nonzero[1][n] + sh.nonzero[1])
                }
            }
            Res::Eph => (self.alloc[2][n], self.req[2][n] + sh.req[2]),
            Res::Scalar(id) => {
                let pr = sh
                    .scalars
                    .iter()
                    .find(|p| p.0 == id)
                    .map(|p| p.1)
                    .unwrap_or(0);
                if pr == 0 {
                    return (0, 0);
                }
                let id = id as usize;
                (self.salloc[id][n], self.sreq[id][n] + pr)
            }
        }
    }

    fn fit_score(&self, sh: &Shape, n: usize) -> i64 {
        let (mut score, mut wsum) = (0i64, 0i64);
        for (i, &r) in self.fit_res.iter().enumerate() {
            let (alloc, req) = self.alloc_req(sh, r, n, false);
            if alloc == 0 {
                continue;
            }
            let w = self.profile.fit_resources[i].1;
            let s = if self.profile.most_allocated {
                req.min(alloc) * MAX_SCORE / alloc
            } else if req > alloc {
                0
            } else {
                (alloc - req) * MAX_SCORE / alloc
            };
            score += s * w;
            wsum += w;
        }
        if wsum == 0 {
            0
        } else {
            score / wsum
        }
    }

    fn balanced_score(&self, sh: &Shape, n: usize) -> i64 {
        let mut fr = [0f64; 8];
        let mut k = 0usize;
        let mut fv: Vec<f64> = Vec::new();
        let mut total = 0f64;
        for &r in &self.bal_res {
            let (alloc, req) = self.alloc_req(sh, r, n, true);
            if alloc == 0 {
                continue;
            }
            let f = (req as f64 / alloc as f64).min(1.0);
            total += f;
            if k < fr.len() {
                fr[k] = f;
            } else {
                fv.push(f);
            }
            k += 1;
        }
        let fracs: Vec<f64> = fr[..k.min(fr.len())]
            .iter()
            .chain(fv.iter())
            .copied()
            .collect();
        let std = if fracs.len() == 2 {
            ((fracs[0] - fracs[1]) / 2.0).abs()
        } else if fracs.len() > 2 {
            let mean = total / fracs.len() as f64;
            let sum: f64 = fracs.iter().map(|f| (f - mean) * (f - mean)).sum();
            (sum / fracs.len() as f64).sqrt()
        } else {
            0.0
        };
        ((1.0 - std) * MAX_SCORE as f64) as i64
    }

    fn image_score(&self, sh: &Shape, n: usize) -> i64 {
        if sh.images.is_empty() {
            return 0;
        }
        let total = self.n_live as f64;
        let mut sum = 0i64;
        for &id in &sh.images {
            if id == NONE {
                continue;
            }
            if let Some(&(_, size)) = self.node_images[n].iter().find(|p| p.0 == id) {
                let spread = self.image_nodes[id as usize] as f64 / total;
                sum += (size as f64 * spread) as i64;
            }
        }
        let max = IMG_MAX_PER_CONTAINER * sh.images.len() as i64;
        let sum = sum.clamp(IMG_MIN, max.max(IMG_MIN));
        MAX_SCORE * (sum - IMG_MIN) / (max - IMG_MIN)
    }

    fn local(&self, pod: &CPod, n: usize) -> LocalOut {
        let sh = &pod.shape;
        let aff = self.affinity_ok(sh, n);
        let taints_ok = self.untolerated_taint(pod, n).is_none();
        let mut out = LocalOut::default();
        if aff {
            out.flags |= F_AFF;
        }
        if taints_ok {
            out.flags |= F_TAINTS;
        }
        let feasible = (!self.unsched[n] || pod.tolerates_unsched)
            && sh.node_name.as_ref().is_none_or(|nm| *nm == self.names[n])
            && taints_ok
            && aff
            && !self.ports_conflict(sh, n)
            && self.fits(sh, n);
        if !feasible {
            return out;
        }
        out.flags |= F_FEAS;
        if self.profile.node_resources_fit != 0 {
            out.fit = self.fit_score(sh, n);
        }
        if self.profile.balanced_allocation != 0 {
            out.bal = self.balanced_score(sh, n);
        }
        if self.profile.image_locality != 0 {
            out.img = self.image_score(sh, n);
        }
        if !self.taints[n].is_empty() {
            out.taint_raw = self.taints[n]
                .iter()
                .filter(|t| {
                    t.effect == self.e_prefer
                        && !sh.tolerations.iter().any(|tol| {
                            (tol.effect == NONE || tol.effect == self.e_prefer) && tol.tolerates(t)
                        })
                })
                .count() as i64;
        }
        for (w, t) in &sh.preferred {
            if t.matches(&self.labels[n], &self.names[n], &self.strings) {
                out.naff_raw += w;
            }
        }
        out
    }

    fn local_total(&self, o: &LocalOut) -> i64 {
        let p = &self.profile;
        o.fit * p.node_resources_fit + o.bal * p.balanced_allocation + o.img * p.image_locality
    }

    /// Index of the up-to-date local cache for this pod's shape.
    fn local_cache(&mut self, pod: &CPod) -> usize {
        let slots = self.names.len();
        if let Some(ci) = self.caches.iter().position(|c| c.shape == pod.shape) {
            let start = self.caches[ci].dirty_pos;
            let end = self.dirty.len();
            if start < end {
                let mut c = std::mem::replace(
                    &mut self.caches[ci],
                    LocalCache {
                        shape: pod.shape.clone(),
                        dirty_pos: 0,
                        flags: Vec::new(),
                        score: Vec::new(),
                        taint_raw: Vec::new(),
                        naff_raw: Vec::new(),
                    },
                );
                for i in start..end {
                    let n = self.dirty[i] as usize;
                    if self.live[n] {
                        let o = self.local(pod, n);
                        c.flags[n] = o.flags;
                        c.score[n] = self.local_total(&o);
                        c.taint_raw[n] = o.taint_raw;
                        c.naff_raw[n] = o.naff_raw;
                    }
                }
                c.dirty_pos = end;
                self.caches[ci] = c;
            }
            return ci;
        }
        let mut c = LocalCache {
            shape: pod.shape.clone(),
            dirty_pos: self.dirty.len(),
            flags: vec![0; slots],
            score: vec![0; slots],
            taint_raw: vec![0; slots],
            naff_raw: vec![0; slots],
        };
        for n in 0..slots {
            if self.live[n] {
                let o = self.local(pod, n);
                c.flags[n] = o.flags;
                c.score[n] = self.local_total(&o);
                c.taint_raw[n] = o.taint_raw;
                c.naff_raw[n] = o.naff_raw;
            }
        }
        if self.caches.len() >= 8 {
            self.caches.remove(0);
        }
        self.caches.push(c);
        self.caches.len() - 1
    }

    // ---- global state: topology spread and inter-pod affinity ---------------------------------

    #[inline]
    fn tp(&self, key: u32) -> &Topo {
        self.topo[key as usize]
            .as_ref()
            .expect("topology index built by ensure_topos")
    }

    fn ensure_topo(&mut self, key: u32) {
        if self.topo.get(key as usize).is_some_and(|t| t.is_some()) {
            return;
        }
        if self.topo.len() <= key as usize {
            self.topo.resize_with(key as usize + 1, || None);
        }
        let mut ids: HashMap<u32, u32> = HashMap::new();
        let mut dom = vec![NONE; self.names.len()];
        for (n, d) in dom.iter_mut().enumerate() {
            if !self.live[n] {
                continue;
            }
            if let Some(v) = label_value(&self.labels[n], key) {
                let next = ids.len() as u32;
                *d = *ids.entry(v).or_insert(next);
            }
        }
        let ndom = ids.len();
        self.topo[key as usize] = Some(Topo { dom, ndom });
    }

    fn ensure_topos(&mut self, pod: &CPod) {
        let mut keys: Vec<u32> = Vec::new();
        for c in pod.hard.iter().chain(pod.soft.iter()) {
            keys.push(c.key);
        }
        for t in pod
            .aff
            .iter()
            .chain(&pod.anti)
            .chain(&pod.paff)
            .chain(&pod.panti)
        {
            keys.push(t.key);
        }
        keys.extend(self.aff_keys.keys().copied());
        keys.sort_unstable();
        keys.dedup();
        for k in keys {
            self.ensure_topo(k);
        }
    }

    /// Every placed pod as a [`PodRef`] (namespace, node, labels), from the compact columns.
    fn live_pods(&self) -> impl Iterator<Item = PodRef<'_>> {
        self.pod_ns
            .iter()
            .zip(&self.pod_nodes)
            .zip(&self.pod_labels)
            .filter(|((&ns, _), _)| ns != NONE)
            .map(|((&ns, &node), labels)| PodRef {
                ns,
                node,
                labels: labels.as_slice(),
            })
    }

    fn spread_eligible(&self, c: &CSpread, all: &[CSpread], flags: &[u8], n: usize) -> bool {
        self.live[n]
            && all
                .iter()
                .all(|o| label_value(&self.labels[n], o.key).is_some())
            && (!c.honor_aff || flags[n] & F_AFF != 0)
            && (!c.honor_taints || flags[n] & F_TAINTS != 0)
    }

    /// Hard spread: per constraint, matching pods per domain and the global minimum.
    fn hard_spread(&self, pod: &CPod, flags: &[u8]) -> Vec<(Vec<i64>, i64)> {
        let mut out = Vec::with_capacity(pod.hard.len());
        for c in &pod.hard {
            let topo = &self.tp(c.key);
            let mut counts = vec![0i64; topo.ndom];
            let mut present = vec![false; topo.ndom];
            let mut eligible = vec![false; self.names.len()];
            for (n, e) in eligible.iter_mut().enumerate() {
                if self.spread_eligible(c, &pod.hard, flags, n) {
                    *e = true;
                    present[topo.dom[n] as usize] = true;
                }
            }
            for p in self.live_pods() {
                if p.ns == pod.ns
                    && eligible[p.node as usize]
                    && c.sel.matches(p.labels, &self.strings)
                {
                    counts[topo.dom[p.node as usize] as usize] += 1;
                }
            }
            let ndomains = present.iter().filter(|&&x| x).count() as i64;
            let mut min = i64::from(i32::MAX);
            for d in 0..topo.ndom {
                if present[d] {
                    min = min.min(counts[d]);
                }
            }
            if ndomains < c.min_domains {
                min = 0;
            }
            out.push((counts, min));
        }
        out
    }

    fn add_topo(&self, m: &mut Vec<(u32, Vec<i64>)>, key: u32, node: u32, v: i64) {
        let topo = &self.tp(key);
        let d = topo.dom[node as usize];
        if d == NONE {
            return;
        }
        let i = match m.iter().position(|e| e.0 == key) {
            Some(i) => i,
            None => {
                m.push((key, vec![0; topo.ndom]));
                m.len() - 1
            }
        };
        m[i].1[d as usize] += v;
    }

    fn topo_get(&self, m: &[(u32, Vec<i64>)], key: u32, n: usize) -> Option<i64> {
        let d = self.tp(key).dom[n];
        if d == NONE {
            return None;
        }
        Some(
            m.iter()
                .find(|e| e.0 == key)
                .map(|e| e.1[d as usize])
                .unwrap_or(0),
        )
    }

    fn ipa_state(&self, pod: &CPod) -> Ipa {
        let mut st = Ipa::default();
        for &s in &self.aff_pods {
            let p = self.pods[s as usize].as_ref().expect("live pod");
            for t in &p.anti {
                if t.matches(pod.ns, &pod.labels, &self.strings) {
                    self.add_topo(&mut st.existing_anti, t.key, p.node, 1);
                }
            }
        }
        if !pod.aff.is_empty() || !pod.anti.is_empty() {
            for p in self.live_pods() {
                if !pod.aff.is_empty()
                    && pod
                        .aff
                        .iter()
                        .all(|t| t.matches(p.ns, p.labels, &self.strings))
                {
                    for t in &pod.aff {
                        if self.tp(t.key).dom[p.node as usize] != NONE {
                            st.aff_total += 1;
                        }
                        self.add_topo(&mut st.aff, t.key, p.node, 1);
                    }
                }
                for t in &pod.anti {
                    if t.matches(p.ns, p.labels, &self.strings) {
                        self.add_topo(&mut st.anti, t.key, p.node, 1);
                    }
                }
            }
        }
        st.self_match = pod
            .aff
            .iter()
            .all(|t| t.matches(pod.ns, &pod.labels, &self.strings));
        st
    }

    /// The InterPodAffinity filter reason for node `n`, if it fails.
    fn ipa_fail(&self, pod: &CPod, st: &Ipa, n: usize) -> Option<&'static str> {
        if !pod.aff.is_empty() {
            let mut exist = true;
            for t in &pod.aff {
                match self.topo_get(&st.aff, t.key, n) {
                    None => return Some(R_POD_AFF),
                    Some(c) if c <= 0 => exist = false,
                    _ => {}
                }
            }
            if !(exist || st.aff_total == 0 && st.self_match) {
                return Some(R_POD_AFF);
            }
        }
        for t in &pod.anti {
            if self.topo_get(&st.anti, t.key, n).is_some_and(|c| c > 0) {
                return Some(R_POD_ANTI);
            }
        }
        for (key, counts) in &st.existing_anti {
            let d = self.tp(*key).dom[n];
            if d != NONE && counts[d as usize] > 0 {
                return Some(R_EXISTING_ANTI);
            }
        }
        None
    }

    fn spread_fail(&self, pod: &CPod, hs: &[(Vec<i64>, i64)], n: usize) -> Option<&'static str> {
        for (c, (counts, min)) in pod.hard.iter().zip(hs) {
            let d = self.tp(c.key).dom[n];
            if d == NONE {
                return Some(R_SPREAD_LABEL);
            }
            let skew = counts[d as usize] + i64::from(c.self_match) - min;
            if skew > c.max_skew {
                return Some(R_SPREAD);
            }
        }
        None
    }

    /// The hard spread constraints, the pod's required anti-affinity and the existing pods'
    /// anti-affinity as (domains of a key, allowed per domain, allowed without the label): the
    /// same verdicts as [`Self::spread_fail`] and [`Self::ipa_fail`] (for pods without required
    /// affinity), precomputed per domain.
    #[allow(clippy::type_complexity)]
    fn domain_checks<'a>(
        &'a self,
        pod: &CPod,
        hs: &[(Vec<i64>, i64)],
        ipa: Option<&Ipa>,
    ) -> Vec<(&'a [u32], Vec<bool>, bool)> {
        let mut out = Vec::new();
        for (c, (counts, min)) in pod.hard.iter().zip(hs) {
            let ok = counts
                .iter()
                .map(|&cnt| cnt + i64::from(c.self_match) - min <= c.max_skew)
                .collect();
            out.push((self.tp(c.key).dom.as_slice(), ok, false));
        }
        if let Some(st) = ipa {
            let mut keys: Vec<u32> = pod.anti.iter().map(|t| t.key).collect();
            keys.sort_unstable();
            keys.dedup();
            for key in keys {
                if let Some((_, counts)) = st.anti.iter().find(|e| e.0 == key) {
                    let ok = counts.iter().map(|&c| c <= 0).collect();
                    out.push((self.tp(key).dom.as_slice(), ok, true));
                }
            }
            for (key, counts) in &st.existing_anti {
                let ok = counts.iter().map(|&c| c <= 0).collect();
                out.push((self.tp(*key).dom.as_slice(), ok, true));
            }
        }
        out
    }

    /// Upstream's FitError text for a pod that fits nowhere.
    fn diagnose(&self, pod: &CPod, hs: &[(Vec<i64>, i64)], ipa: Option<&Ipa>) -> String {
        if self.n_live == 0 {
            return "no nodes available to schedule pods".into();
        }
        let mut counts: HashMap<String, usize> = HashMap::new();
        let mut reasons: Vec<String> = Vec::new();
        let bump = |r: &str, counts: &mut HashMap<String, usize>| {
            *counts.entry(r.to_string()).or_insert(0) += 1;
        };
        let sh = &pod.shape;
        for n in 0..self.names.len() {
            if !self.live[n] {
                continue;
            }
            if self.unsched[n] && !pod.tolerates_unsched {
                bump(R_UNSCHED, &mut counts);
                continue;
            }
            if sh.node_name.as_ref().is_some_and(|nm| *nm != self.names[n]) {
                bump(R_NODENAME, &mut counts);
                continue;
            }
            if let Some(i) = self.untolerated_taint(pod, n) {
                let t = &self.taints[n][i];
                let r = format!(
                    "node(s) had untolerated taint {{{}: {}}}",
                    self.strings.name(t.key),
                    self.strings.name(t.value)
                );
                bump(&r, &mut counts);
                continue;
            }
            if !self.affinity_ok(sh, n) {
                bump(R_AFFINITY, &mut counts);
                continue;
            }
            if self.ports_conflict(sh, n) {
                bump(R_PORTS, &mut counts);
                continue;
            }
            reasons.clear();
            self.fit_failures(sh, n, &mut reasons);
            if !reasons.is_empty() {
                for r in &reasons {
                    bump(r, &mut counts);
                }
                continue;
            }
            if let Some(r) = self.spread_fail(pod, hs, n) {
                bump(r, &mut counts);
                continue;
            }
            if let Some(r) = ipa.and_then(|st| self.ipa_fail(pod, st, n)) {
                bump(r, &mut counts);
                continue;
            }
        }
        let mut parts: Vec<String> = counts.iter().map(|(r, c)| format!("{c} {r}")).collect();
        parts.sort();
        let mut msg = format!("0/{} nodes are available:", self.n_live);
        if !parts.is_empty() {
            msg.push_str(&format!(" {}.", parts.join(", ")));
        }
        msg
    }

    // ---- scoring ---------------------------------------------------------------------------

    /// Run filters and scores for one pod. `Err` carries upstream's FitError message.
    pub fn evaluate(&mut self, pod: &CPod, breakdown: bool) -> Result<Scores, String> {
        let ci = self.local_cache(pod);
        self.ensure_topos(pod);
        let cache = &self.caches[ci];
        let flags = &cache.flags;
        let hs = if pod.hard.is_empty() {
            Vec::new()
        } else {
            self.hard_spread(pod, flags)
        };
        let need_ipa = !pod.aff.is_empty() || !pod.anti.is_empty() || !self.aff_pods.is_empty();
        let ipa = need_ipa.then(|| self.ipa_state(pod));
        let mut nodes: Vec<u32> = Vec::new();
        if hs.is_empty() && ipa.is_none() {
            for (n, &f) in flags.iter().enumerate() {
                if f & F_FEAS != 0 && self.live[n] {
                    nodes.push(n as u32);
                }
            }
        } else if pod.aff.is_empty() {
            // Every remaining filter is "the node's domain of key K is allowed": resolve each to
            // a per-domain verdict once, then check nodes with array lookups.
            let checks = self.domain_checks(pod, &hs, ipa.as_ref());
            'nodes: for (n, &f) in flags.iter().enumerate() {
                if f & F_FEAS == 0 || !self.live[n] {
                    continue;
                }
                for (dom, ok, none_ok) in &checks {
                    let d = dom[n];
                    if !(if d == NONE { *none_ok } else { ok[d as usize] }) {
                        continue 'nodes;
                    }
                }
                nodes.push(n as u32);
            }
        } else {
            for (n, &f) in flags.iter().enumerate() {
                if f & F_FEAS != 0
                    && self.live[n]
                    && self.spread_fail(pod, &hs, n).is_none()
                    && ipa
                        .as_ref()
                        .is_none_or(|st| self.ipa_fail(pod, st, n).is_none())
                {
                    nodes.push(n as u32);
                }
            }
        }
        if nodes.is_empty() {
            return Err(self.diagnose(pod, &hs, ipa.as_ref()));
        }
        let p = &self.profile;
        let mut total: Vec<i64> = nodes.iter().map(|&n| cache.score[n as usize]).collect();
        let mut plugins: [Vec<i64>; 7] = Default::default();
        if breakdown {
            let mut fit = Vec::with_capacity(nodes.len());
            let mut bal = Vec::with_capacity(nodes.len());
            let mut img = Vec::with_capacity(nodes.len());
            for &n in &nodes {
                let o = self.local(pod, n as usize);
                fit.push(o.fit);
                bal.push(o.bal);
                img.push(o.img);
            }
            plugins[4] = fit;
            plugins[5] = bal;
            plugins[6] = img;
        }
        // TaintToleration: reverse-normalized count of intolerable PreferNoSchedule taints.
        if p.taint_toleration != 0 || breakdown {
            let max = nodes
                .iter()
                .map(|&n| cache.taint_raw[n as usize])
                .max()
                .unwrap_or(0);
            let norm = |raw: i64| {
                if max == 0 {
                    MAX_SCORE
                } else {
                    MAX_SCORE - MAX_SCORE * raw / max
                }
            };
            if max == 0 {
                for t in total.iter_mut() {
                    *t += MAX_SCORE * p.taint_toleration;
                }
            } else {
                for (t, &n) in total.iter_mut().zip(&nodes) {
                    *t += norm(cache.taint_raw[n as usize]) * p.taint_toleration;
                }
            }
            if breakdown {
                plugins[0] = nodes
                    .iter()
                    .map(|&n| norm(cache.taint_raw[n as usize]))
                    .collect();
            }
        }
        // NodeAffinity (preferred): normalized to the best node.
        if !pod.shape.preferred.is_empty() && (p.node_affinity != 0 || breakdown) {
            let max = nodes
                .iter()
                .map(|&n| cache.naff_raw[n as usize])
                .max()
                .unwrap_or(0);
            let v: Vec<i64> = nodes
                .iter()
                .map(|&n| {
                    let raw = cache.naff_raw[n as usize];
                    if max == 0 {
                        raw
                    } else {
                        MAX_SCORE * raw / max
                    }
                })
                .collect();
            for (t, s) in total.iter_mut().zip(&v) {
                *t += s * p.node_affinity;
            }
            plugins[1] = v;
        }
        let w_sp = p.pod_topology_spread;
        let w_ipa = p.inter_pod_affinity;
        if !pod.soft.is_empty() && (w_sp != 0 || breakdown) {
            let v = self.soft_spread(pod, &cache.flags, &nodes);
            for (t, s) in total.iter_mut().zip(&v) {
                *t += s * w_sp;
            }
            plugins[2] = v;
        }
        if w_ipa != 0 || breakdown {
            if let Some(v) = self.ipa_score(pod, &nodes) {
                for (t, s) in total.iter_mut().zip(&v) {
                    *t += s * w_ipa;
                }
                plugins[3] = v;
            }
        }
        if breakdown {
            for pl in plugins.iter_mut() {
                if pl.is_empty() {
                    *pl = vec![0; nodes.len()];
                }
            }
        }
        Ok(Scores {
            nodes,
            plugins,
            total,
        })
    }

    fn soft_spread(&self, pod: &CPod, flags: &[u8], nodes: &[u32]) -> Vec<i64> {
        let slots = self.names.len();
        let has_all = |n: usize| {
            pod.soft
                .iter()
                .all(|c| label_value(&self.labels[n], c.key).is_some())
        };
        let ignored: Vec<bool> = nodes.iter().map(|&n| !has_all(n as usize)).collect();
        let n_scored = ignored.iter().filter(|&&x| !x).count();
        let mut raw = vec![0f64; nodes.len()];
        for c in &pod.soft {
            let topo = &self.tp(c.key);
            let hostname = c.key == self.k_hostname;
            let (weight, per_node) = if hostname {
                let mut cnt = vec![0i64; slots];
                for p in self.live_pods() {
                    if p.ns == pod.ns && c.sel.matches(p.labels, &self.strings) {
                        cnt[p.node as usize] += 1;
                    }
                }
                (((n_scored + 2) as f64).ln(), cnt)
            } else {
                let mut present = vec![false; topo.ndom];
                for (i, &n) in nodes.iter().enumerate() {
                    if !ignored[i] {
                        present[topo.dom[n as usize] as usize] = true;
                    }
                }
                let sz = present.iter().filter(|&&x| x).count();
                let mut counts = vec![0i64; topo.ndom];
                for p in self.live_pods() {
                    let n = p.node as usize;
                    let d = topo.dom[n];
                    if d == NONE || !present[d as usize] {
                        continue;
                    }
                    if p.ns == pod.ns
                        && has_all(n)
                        && (!c.honor_aff || flags[n] & F_AFF != 0)
                        && (!c.honor_taints || flags[n] & F_TAINTS != 0)
                        && c.sel.matches(p.labels, &self.strings)
                    {
                        counts[d as usize] += 1;
                    }
                }
                let mut per_node = vec![0i64; slots];
                for (i, &n) in nodes.iter().enumerate() {
                    if !ignored[i] {
                        per_node[n as usize] = counts[topo.dom[n as usize] as usize];
                    }
                }
                (((sz + 2) as f64).ln(), per_node)
            };
            for (i, &n) in nodes.iter().enumerate() {
                if !ignored[i] {
                    raw[i] += per_node[n as usize] as f64 * weight + (c.max_skew - 1) as f64;
                }
            }
        }
        let scores: Vec<i64> = raw.iter().map(|s| s.round() as i64).collect();
        let mut min = i64::MAX;
        let mut max = 0i64;
        for (i, &s) in scores.iter().enumerate() {
            if !ignored[i] {
                min = min.min(s);
                max = max.max(s);
            }
        }
        scores
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                if ignored[i] {
                    0
                } else if max == 0 {
                    MAX_SCORE
                } else {
                    MAX_SCORE * (max + min - s) / max
                }
            })
            .collect()
    }

    fn ipa_score(&self, pod: &CPod, nodes: &[u32]) -> Option<Vec<i64>> {
        let mut m: Vec<(u32, Vec<i64>)> = Vec::new();
        let hw = self.profile.hard_pod_affinity_weight;
        let mut touched = false;
        let mut add = |this: &Self, m: &mut Vec<(u32, Vec<i64>)>, key: u32, node: u32, v: i64| {
            if this.tp(key).dom[node as usize] != NONE {
                touched = true;
                this.add_topo(m, key, node, v);
            }
        };
        if !pod.paff.is_empty() || !pod.panti.is_empty() {
            for p in self.live_pods() {
                for t in &pod.paff {
                    if t.matches(p.ns, p.labels, &self.strings) {
                        add(self, &mut m, t.key, p.node, t.weight);
                    }
                }
                for t in &pod.panti {
                    if t.matches(p.ns, p.labels, &self.strings) {
                        add(self, &mut m, t.key, p.node, -t.weight);
                    }
                }
            }
        }
        for &s in &self.aff_pods {
            let p = self.pods[s as usize].as_ref().expect("live pod");
            if hw > 0 {
                for t in &p.aff {
                    if t.matches(pod.ns, &pod.labels, &self.strings) {
                        add(self, &mut m, t.key, p.node, hw);
                    }
                }
            }
            for t in &p.paff {
                if t.matches(pod.ns, &pod.labels, &self.strings) {
                    add(self, &mut m, t.key, p.node, t.weight);
                }
            }
            for t in &p.panti {
                if t.matches(pod.ns, &pod.labels, &self.strings) {
                    add(self, &mut m, t.key, p.node, -t.weight);
                }
            }
        }
        if !touched {
            return None;
        }
        let raw: Vec<i64> = nodes
            .iter()
            .map(|&n| {
                let mut s = 0;
                for (key, counts) in &m {
                    let d = self.tp(*key).dom[n as usize];
                    if d != NONE {
                        s += counts[d as usize];
                    }
                }
                s
            })
            .collect();
        let min = raw.iter().copied().min().unwrap_or(0);
        let max = raw.iter().copied().max().unwrap_or(0);
        let diff = max - min;
        Some(
            raw.iter()
                .map(|&s| {
                    if diff > 0 {
                        (MAX_SCORE as f64 * ((s - min) as f64 / diff as f64)) as i64
                    } else {
                        0
                    }
                })
                .collect(),
        )
    }

    fn select(&mut self, s: &Scores, tie: TieBreak) -> u32 {
        let max = s.total.iter().copied().max().expect("feasible nodes");
        match tie {
            TieBreak::First => s.nodes[s.total.iter().position(|&t| t == max).expect("max")],
            TieBreak::Random => {
                let count = s.total.iter().filter(|&&t| t == max).count() as u64;
                let mut k = if count > 1 {
                    self.next_rand() % count
                } else {
                    0
                };
                for (i, &t) in s.total.iter().enumerate() {
                    if t == max {
                        if k == 0 {
                            return s.nodes[i];
                        }
                        k -= 1;
                    }
                }
                unreachable!("tie index within count")
            }
        }
    }

    /// Schedule one pod: the chosen node slot, or upstream's FitError message.
    pub fn schedule(&mut self, pod: &CPod, tie: TieBreak) -> Result<u32, String> {
        if let Some(n) = self.schedule_local(pod, tie) {
            return Ok(n);
        }
        let s = self.evaluate(pod, false)?;
        Ok(self.select(&s, tie))
    }

    /// The fast path for pods whose every filter and score is local (no topology spread, no
    /// inter-pod affinity anywhere in the cluster, no preferred node affinity, no
    /// PreferNoSchedule taints): one pass over the cached local totals finds the best score and
    /// how many nodes share it, without materializing per-node vectors. The constant
    /// TaintToleration score (100 on every node) does not change the choice. `None` when the
    /// pod needs the general path (or fits nowhere, for the diagnosis).
    fn schedule_local(&mut self, pod: &CPod, tie: TieBreak) -> Option<u32> {
        if !pod.hard.is_empty()
            || !pod.soft.is_empty()
            || !pod.aff.is_empty()
            || !pod.anti.is_empty()
            || !pod.paff.is_empty()
            || !pod.panti.is_empty()
            || !self.aff_pods.is_empty()
            || !pod.shape.preferred.is_empty()
            || self.prefer_taint_nodes != 0
        {
            return None;
        }
        let ci = self.local_cache(pod);
        let c = &self.caches[ci];
        let mut best = i64::MIN;
        let mut count = 0u64;
        let mut first = u32::MAX;
        for (n, (&f, &s)) in c.flags.iter().zip(&c.score).enumerate() {
            if f & F_FEAS != 0 {
                if s > best {
                    best = s;
                    count = 1;
                    first = n as u32;
                } else if s == best {
                    count += 1;
                }
            }
        }
        if count == 0 {
            return None;
        }
        if tie == TieBreak::First || count == 1 {
            return Some(first);
        }
        let mut k = self.next_rand() % count;
        let c = &self.caches[ci];
        for n in first as usize..c.flags.len() {
            if c.flags[n] & F_FEAS != 0 && c.score[n] == best {
                if k == 0 {
                    return Some(n as u32);
                }
                k -= 1;
            }
        }
        unreachable!("tie index within count")
    }

    /// Place pods in order, each seeing the previous placements (assumed when `assume`).
    pub fn place_batch(
        &mut self,
        pods: &[PodSpec],
        assume: bool,
        tie: TieBreak,
    ) -> Vec<Result<u32, String>> {
        let mut out = Vec::with_capacity(pods.len());
        for spec in pods {
            let r = self
                .compile(spec)
                .map_err(|e| format!("invalid pod {}: {e}", spec.key))
                .and_then(|pod| {
                    let n = self.schedule(&pod, tie)?;
                    if assume {
                        self.assume(&pod, n)?;
                    }
                    Ok(n)
                });
            out.push(r);
        }
        out
    }
}

struct PodRef<'a> {
    ns: u32,
    node: u32,
    labels: &'a [(u32, u32)],
}

#[derive(Default)]
struct Ipa {
    existing_anti: Vec<(u32, Vec<i64>)>,
    aff: Vec<(u32, Vec<i64>)>,
    aff_total: i64,
    anti: Vec<(u32, Vec<i64>)>,
    self_match: bool,
}

#[cfg(test)]
mod tests;
