//! Bindings for `hyperkube_core::proxy`: one call per sync with the whole service model (a dict
//! of columns built by `hyperkube.proxy.model`), text out as `bytes`. Generation runs with the
//! GIL released.

use hyperkube_core::proxy::{self as core_proxy, iptables, nftables, table, Model};
use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

fn column<'py, T: FromPyObjectOwned<'py>>(d: &Bound<'py, PyDict>, name: &str) -> PyResult<Vec<T>> {
    let v = d
        .get_item(name)?
        .ok_or_else(|| PyKeyError::new_err(format!("service model has no column {name:?}")))?;
    v.extract::<Vec<T>>()
        .map_err(|e| PyValueError::new_err(format!("service model column {name}: {e}")))
}

fn model_from(d: &Bound<'_, PyDict>) -> PyResult<Model> {
    let m = Model {
        names: column(d, "names")?,
        protocols: column(d, "protocols")?,
        cluster_ips: column(d, "cluster_ips")?,
        ports: column(d, "ports")?,
        node_ports: column(d, "node_ports")?,
        health_check_node_ports: column(d, "health_check_node_ports")?,
        flags: column(d, "flags")?,
        affinity_timeouts: column(d, "affinity_timeouts")?,
        external_ip_offsets: column(d, "external_ip_offsets")?,
        external_ips: column(d, "external_ips")?,
        lb_ip_offsets: column(d, "lb_ip_offsets")?,
        lb_ips: column(d, "lb_ips")?,
        source_range_offsets: column(d, "source_range_offsets")?,
        source_ranges: column(d, "source_ranges")?,
        ep_offsets: column(d, "ep_offsets")?,
        ep_ips: column(d, "ep_ips")?,
        ep_ports: column(d, "ep_ports")?,
        ep_flags: column(d, "ep_flags")?,
    };
    m.validate().map_err(PyValueError::new_err)?;
    Ok(m)
}

/// The nftables table contents after a sync (elements and load-balancing chains), to diff the
/// next sync against.
#[pyclass(frozen, module = "hyperkube._native")]
pub struct NftablesState {
    inner: nftables::State,
}

#[pymethods]
impl NftablesState {
    fn __len__(&self) -> usize {
        self.inner.element_count()
    }

    #[getter]
    fn chains(&self) -> Vec<String> {
        self.inner.chains.iter().cloned().collect()
    }

    /// Elements of one map or set, as {key: value} ("" for set elements).
    fn elements<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
        let k = nftables::CONTAINERS
            .iter()
            .position(|(n, _)| *n == name)
            .ok_or_else(|| PyKeyError::new_err(format!("no map or set named {name:?}")))?;
        let d = PyDict::new(py);
        for (key, v) in &self.inner.elements[k] {
            d.set_item(key, v)?;
        }
        Ok(d)
    }
}

/// `iptables-restore` input for the model: (text, active nat chains, counts).
#[pyfunction]
#[pyo3(signature = (model, *, cluster_cidr=None, node_ip=None, masquerade_all=false, changed=None, existing_chains=Vec::new()))]
#[allow(clippy::type_complexity)]
fn proxy_render_iptables<'py>(
    py: Python<'py>,
    model: &Bound<'py, PyDict>,
    cluster_cidr: Option<String>,
    node_ip: Option<String>,
    masquerade_all: bool,
    changed: Option<Vec<bool>>,
    existing_chains: Vec<String>,
) -> PyResult<(Bound<'py, PyBytes>, Vec<String>, Bound<'py, PyDict>)> {
    let m = model_from(model)?;
    if let Some(c) = &changed {
        if c.len() != m.len() {
            return Err(PyValueError::new_err(format!(
                "changed has {} entries, the model has {} service ports",
                c.len(),
                m.len()
            )));
        }
    }
    let cfg = iptables::Config {
        cluster_cidr,
        masquerade_all,
        node_ip,
    };
    let out = py.detach(|| iptables::generate(&m, &cfg, changed.as_deref(), &existing_chains));
    let stats = PyDict::new(py);
    stats.set_item("filter_rules", out.filter_rules)?;
    stats.set_item("nat_rules", out.nat_rules)?;
    stats.set_item("nat_chains", out.nat_chains)?;
    stats.set_item("deleted_chains", out.deleted_chains)?;
    stats.set_item("large_cluster", out.large_cluster)?;
    Ok((
        PyBytes::new(py, out.text.as_bytes()),
        out.active_chains,
        stats,
    ))
}

/// `nft -f` input for the model: the whole table when `previous` is None, else the difference
/// from `previous`. Returns (text, new state, counts).
#[pyfunction]
#[pyo3(signature = (model, *, cluster_cidr=None, node_ip=None, masquerade_all=false, previous=None))]
#[allow(clippy::type_complexity)]
fn proxy_render_nftables<'py>(
    py: Python<'py>,
    model: &Bound<'py, PyDict>,
    cluster_cidr: Option<String>,
    node_ip: Option<String>,
    masquerade_all: bool,
    previous: Option<PyRef<'py, NftablesState>>,
) -> PyResult<(Bound<'py, PyBytes>, NftablesState, Bound<'py, PyDict>)> {
    let m = model_from(model)?;
    let cfg = nftables::Config {
        cluster_cidr,
        masquerade_all,
        node_ip,
    };
    let prev = previous.as_ref().map(|p| &p.inner);
    let out = py.detach(|| nftables::render(&m, &cfg, prev));
    let stats = PyDict::new(py);
    stats.set_item("full", out.full)?;
    stats.set_item("elements", out.elements)?;
    stats.set_item("chains", out.chains)?;
    stats.set_item("rules", out.rules)?;
    stats.set_item("added", out.added)?;
    stats.set_item("deleted", out.deleted)?;
    Ok((
        PyBytes::new(py, out.text.as_bytes()),
        NftablesState { inner: out.state },
        stats,
    ))
}

/// Upstream's KUBE-SVC chain name for a service port name and lower-case protocol.
#[pyfunction]
fn proxy_service_chain_name(name: &str, protocol: &str) -> String {
    core_proxy::service_chain_name(name, protocol)
}

/// Upstream's KUBE-SEP chain name for a service port name, protocol and `ip:port`.
#[pyfunction]
fn proxy_endpoint_chain_name(name: &str, protocol: &str, endpoint: &str) -> String {
    core_proxy::endpoint_chain_name(name, protocol, endpoint)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NftablesState>()?;
    m.add_class::<ProxyTable>()?;
    m.add_function(wrap_pyfunction!(proxy_render_iptables, m)?)?;
    m.add_function(wrap_pyfunction!(proxy_render_nftables, m)?)?;
    m.add_function(wrap_pyfunction!(proxy_service_chain_name, m)?)?;
    m.add_function(wrap_pyfunction!(proxy_endpoint_chain_name, m)?)?;
    Ok(())
}

/// The proxy's persistent service table (see core/src/proxy/table.rs): rows are upserted per
/// changed service and a sync writes only what changed since the last committed one.
#[pyclass(module = "hyperkube._native")]
pub struct ProxyTable {
    inner: table::Table,
    mode: Mode,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Iptables,
    Nftables,
}

fn rendered<'py>(
    py: Python<'py>,
    r: table::Rendered,
) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyDict>)> {
    let stats = PyDict::new(py);
    stats.set_item("full", r.full)?;
    stats.set_item("rows", r.rows)?;
    stats.set_item("changed_rows", r.changed_rows)?;
    for (k, v) in r.counts {
        stats.set_item(k, v)?;
    }
    Ok((PyBytes::new(py, r.text.as_bytes()), stats))
}

#[pymethods]
impl ProxyTable {
    #[new]
    #[pyo3(signature = (mode, *, cluster_cidr=None, node_ip=None, masquerade_all=false))]
    fn new(
        mode: &str,
        cluster_cidr: Option<String>,
        node_ip: Option<String>,
        masquerade_all: bool,
    ) -> PyResult<Self> {
        let mode = match mode {
            "iptables" => Mode::Iptables,
            "nftables" => Mode::Nftables,
            _ => {
                return Err(PyValueError::new_err(format!(
                    "unknown proxy mode {mode:?}: supported values: \"iptables\", \"nftables\""
                )))
            }
        };
        Ok(ProxyTable {
            inner: table::Table::new(table::Options {
                cluster_cidr,
                node_ip,
                masquerade_all,
            }),
            mode,
        })
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// Upsert the rows of `model` (the changed services' rows) and drop `removed` rows
    /// (service port name, protocol code).
    #[pyo3(signature = (model, removed=Vec::new()))]
    fn update(&mut self, model: &Bound<'_, PyDict>, removed: Vec<(String, u8)>) -> PyResult<()> {
        let m = model_from(model)?;
        self.inner.update(&m, &removed);
        Ok(())
    }

    /// Make the table hold exactly the rows of `model`.
    fn replace(&mut self, model: &Bound<'_, PyDict>) -> PyResult<()> {
        let m = model_from(model)?;
        self.inner.replace(&m);
        Ok(())
    }

    /// The transaction for this sync: (text, stats). `existing_chains` (iptables, full syncs):
    /// the nat chains in the kernel now.
    #[pyo3(signature = (full=false, existing_chains=Vec::new()))]
    fn render<'py>(
        &mut self,
        py: Python<'py>,
        full: bool,
        existing_chains: Vec<String>,
    ) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyDict>)> {
        let mode = self.mode;
        let t = &mut self.inner;
        let r = py.detach(|| match mode {
            Mode::Iptables => t.render_iptables(full, &existing_chains),
            Mode::Nftables => t.render_nftables(full),
        });
        rendered(py, r)
    }

    /// The last render was applied: forget the dirty rows.
    fn commit(&mut self) {
        self.inner.commit();
    }

    /// The last render was not applied (or the kernel state is unknown): the next one is full.
    fn invalidate(&mut self) {
        self.inner.invalidate();
    }

    /// iptables: the service chains of the last committed sync.
    #[getter]
    fn active_chains(&self) -> Vec<String> {
        self.inner.active_chains()
    }
}
