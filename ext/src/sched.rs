//! Bindings for `hyperkube_core::sched`: the scheduler engine.
//!
//! Node and pod specs cross the boundary as plain dicts (built by `hyperkube.scheduler.specs`
//! from API objects) and are converted once; placement of a whole batch runs with the GIL
//! released. Per-node data comes back as numpy arrays.

use hyperkube_core::sched::{
    AffinityTermSpec, Cluster, NodeSelectorTermSpec, NodeSpec, PodSpec, Profile, SpreadSpec,
    TieBreak, SCORE_PLUGINS,
};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::sync::Mutex;

type LabelSel = (Vec<(String, String)>, Vec<(String, String, Vec<String>)>);
type Exprs = Vec<(String, String, Vec<String>)>;

#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct PyTerm {
    match_expressions: Exprs,
    match_fields: Exprs,
}

impl From<PyTerm> for NodeSelectorTermSpec {
    fn from(t: PyTerm) -> Self {
        NodeSelectorTermSpec {
            match_expressions: t.match_expressions,
            match_fields: t.match_fields,
        }
    }
}

#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct PyNode {
    name: String,
    labels: Vec<(String, String)>,
    taints: Vec<(String, String, String)>,
    unschedulable: bool,
    cpu: i64,
    memory: i64,
    ephemeral: i64,
    pods: i64,
    scalars: Vec<(String, i64)>,
    images: Vec<(Vec<String>, i64)>,
}

impl From<PyNode> for NodeSpec {
    fn from(n: PyNode) -> Self {
        NodeSpec {
            name: n.name,
            labels: n.labels,
            taints: n.taints,
            unschedulable: n.unschedulable,
            cpu: n.cpu,
            memory: n.memory,
            ephemeral: n.ephemeral,
            pods: n.pods,
            scalars: n.scalars,
            images: n.images,
        }
    }
}

#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct PyAffTerm {
    weight: i64,
    namespaces: Vec<String>,
    namespace_selector: Option<LabelSel>,
    selector: Option<LabelSel>,
    topology_key: String,
}

impl From<PyAffTerm> for AffinityTermSpec {
    fn from(t: PyAffTerm) -> Self {
        AffinityTermSpec {
            weight: t.weight,
            namespaces: t.namespaces,
            namespace_selector: t.namespace_selector,
            selector: t.selector,
            topology_key: t.topology_key,
        }
    }
}

#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct PySpread {
    max_skew: i64,
    topology_key: String,
    hard: bool,
    selector: Option<LabelSel>,
    min_domains: i64,
    honor_affinity: bool,
    honor_taints: bool,
}

impl From<PySpread> for SpreadSpec {
    fn from(s: PySpread) -> Self {
        SpreadSpec {
            max_skew: s.max_skew,
            topology_key: s.topology_key,
            hard: s.hard,
            selector: s.selector,
            min_domains: s.min_domains,
            honor_affinity: s.honor_affinity,
            honor_taints: s.honor_taints,
        }
    }
}

#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct PyPod {
    key: String,
    namespace: String,
    labels: Vec<(String, String)>,
    node_name: String,
    cpu: i64,
    memory: i64,
    ephemeral: i64,
    scalars: Vec<(String, i64)>,
    nonzero_cpu: i64,
    nonzero_memory: i64,
    node_selector: Vec<(String, String)>,
    required_terms: Option<Vec<PyTerm>>,
    preferred_terms: Vec<(i64, PyTerm)>,
    tolerations: Vec<(String, String, String, String)>,
    host_ports: Vec<(String, String, i64)>,
    spread: Vec<PySpread>,
    affinity: Vec<PyAffTerm>,
    anti_affinity: Vec<PyAffTerm>,
    preferred_affinity: Vec<PyAffTerm>,
    preferred_anti_affinity: Vec<PyAffTerm>,
    images: Vec<String>,
}

fn conv<A, B: From<A>>(v: Vec<A>) -> Vec<B> {
    v.into_iter().map(B::from).collect()
}

impl From<PyPod> for PodSpec {
    fn from(p: PyPod) -> Self {
        PodSpec {
            key: p.key,
            namespace: p.namespace,
            labels: p.labels,
            node_name: p.node_name,
            cpu: p.cpu,
            memory: p.memory,
            ephemeral: p.ephemeral,
            scalars: p.scalars,
            nonzero_cpu: p.nonzero_cpu,
            nonzero_memory: p.nonzero_memory,
            node_selector: p.node_selector,
            required_terms: p.required_terms.map(conv),
            preferred_terms: p
                .preferred_terms
                .into_iter()
                .map(|(w, t)| (w, t.into()))
                .collect(),
            tolerations: p.tolerations,
            host_ports: p.host_ports,
            spread: conv(p.spread),
            affinity: conv(p.affinity),
            anti_affinity: conv(p.anti_affinity),
            preferred_affinity: conv(p.preferred_affinity),
            preferred_anti_affinity: conv(p.preferred_anti_affinity),
            images: p.images,
        }
    }
}

#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct PyProfile {
    weights: std::collections::HashMap<String, i64>,
    scoring_strategy: String,
    fit_resources: Vec<(String, i64)>,
    balanced_resources: Vec<String>,
    hard_pod_affinity_weight: i64,
}

fn profile_from(p: PyProfile) -> PyResult<Profile> {
    let mut out = Profile::default();
    for (name, w) in p.weights {
        if w < 0 {
            return Err(PyValueError::new_err(format!(
                "weight of {name}: must not be negative"
            )));
        }
        let slot = match name.as_str() {
            "TaintToleration" => &mut out.taint_toleration,
            "NodeAffinity" => &mut out.node_affinity,
            "PodTopologySpread" => &mut out.pod_topology_spread,
            "InterPodAffinity" => &mut out.inter_pod_affinity,
            "NodeResourcesFit" => &mut out.node_resources_fit,
            "NodeResourcesBalancedAllocation" => &mut out.balanced_allocation,
            "ImageLocality" => &mut out.image_locality,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown score plugin {other:?}; known: {}",
                    SCORE_PLUGINS.join(", ")
                )))
            }
        };
        *slot = w;
    }
    out.most_allocated = match p.scoring_strategy.as_str() {
        "LeastAllocated" => false,
        "MostAllocated" => true,
        other => {
            return Err(PyValueError::new_err(format!(
                "scoringStrategy.type: Unsupported value: {other:?}: supported values: \"LeastAllocated\", \"MostAllocated\""
            )))
        }
    };
    out.fit_resources = p.fit_resources;
    out.balanced_resources = p.balanced_resources;
    out.hard_pod_affinity_weight = p.hard_pod_affinity_weight;
    Ok(out)
}

fn pods_from(obj: &Bound<'_, PyAny>) -> PyResult<Vec<PodSpec>> {
    if let Ok(batch) = obj.cast::<PodBatch>() {
        return Ok(batch.get().pods.clone());
    }
    let mut out = Vec::new();
    for (i, item) in obj.try_iter()?.enumerate() {
        let p: PyPod = item?
            .extract()
            .map_err(|e| PyValueError::new_err(format!("pod spec [{i}]: {e}")))?;
        out.push(p.into());
    }
    Ok(out)
}

fn tie_from(s: &str) -> PyResult<TieBreak> {
    match s {
        "random" => Ok(TieBreak::Random),
        "first" => Ok(TieBreak::First),
        other => Err(PyValueError::new_err(format!(
            "tie_break must be \"random\" or \"first\", not {other:?}"
        ))),
    }
}

/// Pod specs converted once, to place repeatedly without converting dicts again.
#[pyclass(frozen, module = "hyperkube._native")]
pub struct PodBatch {
    pods: Vec<PodSpec>,
}

#[pymethods]
impl PodBatch {
    #[new]
    fn new(pods: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(PodBatch {
            pods: pods_from(pods)?,
        })
    }

    fn __len__(&self) -> usize {
        self.pods.len()
    }
}

/// The scheduler engine's cluster state (nodes as columns, placed pods) and placement.
#[pyclass(module = "hyperkube._native")]
pub struct SchedCluster {
    inner: Mutex<Cluster>,
}

impl SchedCluster {
    fn lock(&self) -> std::sync::MutexGuard<'_, Cluster> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl SchedCluster {
    #[new]
    #[pyo3(signature = (profile = None, seed = None))]
    fn new(profile: Option<&Bound<'_, PyAny>>, seed: Option<u64>) -> PyResult<Self> {
        let profile = match profile {
            None => Profile::default(),
            Some(p) => profile_from(p.extract()?)?,
        };
        let mut c = Cluster::new(profile);
        if let Some(s) = seed {
            c.seed(s);
        }
        Ok(SchedCluster {
            inner: Mutex::new(c),
        })
    }

    /// Replace the scoring profile (weights, strategy, resources).
    fn set_profile(&self, profile: &Bound<'_, PyAny>) -> PyResult<()> {
        let p = profile_from(profile.extract()?)?;
        self.lock().set_profile(p);
        Ok(())
    }

    /// Reseed the tie-break generator.
    fn seed(&self, seed: u64) {
        self.lock().seed(seed);
    }

    /// Add nodes (or replace nodes of the same name, keeping their pods).
    fn upsert_nodes(&self, nodes: &Bound<'_, PyAny>) -> PyResult<()> {
        let mut specs: Vec<NodeSpec> = Vec::new();
        for (i, item) in nodes.try_iter()?.enumerate() {
            let n: PyNode = item?
                .extract()
                .map_err(|e| PyValueError::new_err(format!("node spec [{i}]: {e}")))?;
            specs.push(n.into());
        }
        let mut c = self.lock();
        for s in &specs {
            c.upsert_node(s).map_err(PyValueError::new_err)?;
        }
        Ok(())
    }

    /// Add plain nodes from arrays: names, allocatable cpu (milli), memory (bytes), pods and
    /// optionally ephemeral-storage (bytes).
    #[pyo3(signature = (names, cpu, memory, pods, ephemeral = None))]
    fn add_nodes_arrays(
        &self,
        names: Vec<String>,
        cpu: PyReadonlyArray1<'_, i64>,
        memory: PyReadonlyArray1<'_, i64>,
        pods: PyReadonlyArray1<'_, i64>,
        ephemeral: Option<PyReadonlyArray1<'_, i64>>,
    ) -> PyResult<()> {
        let (cpu, memory, pods) = (cpu.as_array(), memory.as_array(), pods.as_array());
        let eph = ephemeral.as_ref().map(|e| e.as_array());
        let n = names.len();
        if cpu.len() != n
            || memory.len() != n
            || pods.len() != n
            || eph.is_some_and(|e| e.len() != n)
        {
            return Err(PyValueError::new_err(
                "names and resource arrays must have the same length",
            ));
        }
        let mut c = self.lock();
        for (i, name) in names.into_iter().enumerate() {
            let spec = NodeSpec {
                labels: vec![("kubernetes.io/hostname".into(), name.clone())],
                name,
                cpu: cpu[i],
                memory: memory[i],
                pods: pods[i],
                ephemeral: eph.map(|e| e[i]).unwrap_or(0),
                ..Default::default()
            };
            c.upsert_node(&spec).map_err(PyValueError::new_err)?;
        }
        Ok(())
    }

    /// Remove a node (and forget its pods). Returns whether it existed.
    fn remove_node(&self, name: &str) -> bool {
        self.lock().remove_node(name)
    }

    /// Record existing pods: a list of (pod spec, node name).
    fn add_pods(&self, pods: &Bound<'_, PyList>) -> PyResult<()> {
        let mut items = Vec::with_capacity(pods.len());
        for (i, item) in pods.iter().enumerate() {
            let (p, node): (PyPod, String) = item
                .extract()
                .map_err(|e| PyValueError::new_err(format!("pod [{i}]: {e}")))?;
            items.push((PodSpec::from(p), node));
        }
        let mut c = self.lock();
        for (p, node) in items {
            let slot = c
                .node_slot(&node)
                .ok_or_else(|| PyKeyError::new_err(format!("node {node:?} not found")))?;
            let cp = c.compile(&p).map_err(PyValueError::new_err)?;
            c.assume(&cp, slot).map_err(PyValueError::new_err)?;
        }
        Ok(())
    }

    /// Forget a placed pod by key (namespace/name). Returns whether it was placed.
    fn forget_pod(&self, key: &str) -> bool {
        self.lock().forget(key)
    }

    /// The node a placed pod is on.
    fn pod_node(&self, key: &str) -> Option<String> {
        let c = self.lock();
        c.pod_node(key).map(|s| c.node_name(s).to_string())
    }

    /// Place pods in order (list of spec dicts, or a PodBatch), each seeing the previous
    /// placements. Returns (node name or None, FitError message or None) per pod.
    /// Releases the GIL while placing.
    #[pyo3(signature = (pods, assume = true, tie_break = "random"))]
    #[allow(clippy::type_complexity)]
    fn place(
        &self,
        py: Python<'_>,
        pods: &Bound<'_, PyAny>,
        assume: bool,
        tie_break: &str,
    ) -> PyResult<(Vec<Option<String>>, Vec<Option<String>>)> {
        let tie = tie_from(tie_break)?;
        let batch = pods.cast::<PodBatch>().ok().cloned();
        let owned = match batch {
            Some(_) => Vec::new(),
            None => pods_from(pods)?,
        };
        let specs: &[PodSpec] = match &batch {
            Some(b) => &b.get().pods,
            None => &owned,
        };
        let result = py.detach(|| {
            let mut c = self.lock();
            let r = c.place_batch(specs, assume, tie);
            let mut nodes = Vec::with_capacity(r.len());
            let mut errs = Vec::with_capacity(r.len());
            for x in r {
                match x {
                    Ok(s) => {
                        nodes.push(Some(c.node_name(s).to_string()));
                        errs.push(None);
                    }
                    Err(e) => {
                        nodes.push(None);
                        errs.push(Some(e));
                    }
                }
            }
            (nodes, errs)
        });
        Ok(result)
    }

    /// Filter and score one pod without placing it: {"nodes": feasible node names,
    /// "total": weighted totals, "plugins": {plugin: normalized scores}} (numpy arrays),
    /// or {"error": FitError message}.
    fn scores<'py>(
        &self,
        py: Python<'py>,
        pod: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let p: PyPod = pod.extract()?;
        let spec: PodSpec = p.into();
        let d = PyDict::new(py);
        let mut c = self.lock();
        let cp = c.compile(&spec).map_err(PyValueError::new_err)?;
        match c.evaluate(&cp, true) {
            Err(e) => d.set_item("error", e)?,
            Ok(s) => {
                let names: Vec<&str> = s.nodes.iter().map(|&n| c.node_name(n)).collect();
                d.set_item("nodes", names)?;
                d.set_item("total", s.total.into_pyarray(py))?;
                let pl = PyDict::new(py);
                for (name, v) in SCORE_PLUGINS.iter().zip(s.plugins) {
                    pl.set_item(*name, v.into_pyarray(py))?;
                }
                d.set_item("plugins", pl)?;
            }
        }
        Ok(d)
    }

    /// Node names in slot order (live nodes only).
    fn node_names(&self) -> Vec<String> {
        self.lock()
            .node_names()
            .into_iter()
            .map(|(_, n)| n.to_string())
            .collect()
    }

    /// Per-node columns of live nodes, in node_names() order: allocatable and requested
    /// cpu (milli), memory, ephemeral-storage, pods, and non-zero requested cpu / memory.
    fn columns<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = self.lock();
        let (live, alloc, req, npods, nonzero) = c.columns();
        let pick = |col: &[i64]| -> Bound<'py, PyArray1<i64>> {
            col.iter()
                .zip(&live)
                .filter(|(_, &l)| l)
                .map(|(v, _)| *v)
                .collect::<Vec<i64>>()
                .into_pyarray(py)
        };
        let d = PyDict::new(py);
        d.set_item("allocatable_cpu", pick(alloc[0]))?;
        d.set_item("allocatable_memory", pick(alloc[1]))?;
        d.set_item("allocatable_ephemeral_storage", pick(alloc[2]))?;
        d.set_item("allocatable_pods", pick(alloc[3]))?;
        d.set_item("requested_cpu", pick(req[0]))?;
        d.set_item("requested_memory", pick(req[1]))?;
        d.set_item("requested_ephemeral_storage", pick(req[2]))?;
        d.set_item("requested_pods", pick(npods))?;
        d.set_item("nonzero_requested_cpu", pick(nonzero[0]))?;
        d.set_item("nonzero_requested_memory", pick(nonzero[1]))?;
        Ok(d)
    }

    #[getter]
    fn num_nodes(&self) -> usize {
        self.lock().num_nodes()
    }

    #[getter]
    fn num_pods(&self) -> usize {
        self.lock().num_pods()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SchedCluster>()?;
    m.add_class::<PodBatch>()?;
    m.add("SCORE_PLUGINS", SCORE_PLUGINS.to_vec())?;
    Ok(())
}
