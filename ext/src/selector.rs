//! Bindings for `hyperkube_core::selector` and `hyperkube_core::validation`.

use hyperkube_core::selector::{
    self as core_sel, LabelTable as CoreTable, Selector as CoreSelector,
};
use hyperkube_core::validation;
use numpy::{IntoPyArray, PyArray1};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

/// A parsed label selector. `Selector("app=web,tier in (a,b)")`, or
/// `Selector.from_label_selector({"matchLabels": ..., "matchExpressions": ...})`.
#[pyclass(frozen, module = "hyperkube._native")]
pub struct Selector {
    inner: CoreSelector,
}

fn str_list(obj: Option<Bound<'_, PyAny>>, what: &str) -> PyResult<Vec<String>> {
    match obj {
        None => Ok(Vec::new()),
        Some(o) if o.is_none() => Ok(Vec::new()),
        Some(o) => {
            let list = o
                .cast::<PyList>()
                .map_err(|_| PyValueError::new_err(format!("{what}: must be a list of strings")))?;
            list.iter()
                .map(|v| {
                    v.extract::<String>().map_err(|_| {
                        PyValueError::new_err(format!("{what}: must be a list of strings"))
                    })
                })
                .collect()
        }
    }
}

fn as_label_dict<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyDict>>> {
    if obj.is_none() {
        return Ok(None);
    }
    obj.cast::<PyDict>()
        .map(|d| Some(d.clone()))
        .map_err(|_| PyTypeError::new_err("label set must be a dict of str to str, or None"))
}

/// Borrow the UTF-8 text of `labels[key]`: `Ok(None)` when absent. Raw FFI on purpose: this
/// is the per-label-set inner loop of `match_many`, and borrowed references avoid a refcount
/// round trip per lookup.
///
/// # Safety
/// `dict` must be a live dict and `key` a live str; the returned text borrows from the value,
/// which the dict keeps alive while the caller holds the dict.
#[inline]
unsafe fn lookup<'a>(
    py: Python<'_>,
    dict: *mut ffi::PyObject,
    key: *mut ffi::PyObject,
    name: &str,
) -> PyResult<Option<&'a str>> {
    let v = ffi::PyDict_GetItemWithError(dict, key);
    if v.is_null() {
        return match PyErr::take(py) {
            Some(e) => Err(e),
            None => Ok(None),
        };
    }
    if ffi::PyUnicode_Check(v) == 0 {
        return Err(PyTypeError::new_err(format!(
            "label {name:?}: value must be a str"
        )));
    }
    let mut size: ffi::Py_ssize_t = 0;
    let data = ffi::PyUnicode_AsUTF8AndSize(v, &mut size);
    if data.is_null() {
        return Err(PyErr::fetch(py));
    }
    let bytes = std::slice::from_raw_parts(data as *const u8, size as usize);
    Ok(Some(std::str::from_utf8_unchecked(bytes)))
}

impl Selector {
    fn matches_dict(
        &self,
        py: Python<'_>,
        keys: &[Bound<'_, PyString>],
        labels: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        if self.inner.nothing {
            return Ok(false);
        }
        let dict = match labels {
            None => None,
            Some(d) => {
                if !d.is_instance_of::<PyDict>() {
                    return Err(PyTypeError::new_err(
                        "label set must be a dict of str to str, or None",
                    ));
                }
                Some(d.as_ptr())
            }
        };
        for (r, key) in self.inner.requirements.iter().zip(keys) {
            let value = match dict {
                None => None,
                // SAFETY: `dict` is a live dict borrowed for this call; `key` is a live str.
                Some(d) => unsafe { lookup(py, d, key.as_ptr(), &r.key)? },
            };
            if !r.matches(value) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn keys<'py>(&self, py: Python<'py>) -> Vec<Bound<'py, PyString>> {
        self.inner
            .requirements
            .iter()
            .map(|r| PyString::intern(py, &r.key))
            .collect()
    }
}

#[pymethods]
impl Selector {
    #[new]
    #[pyo3(signature = (selector = ""))]
    fn new(selector: &str) -> PyResult<Self> {
        CoreSelector::parse(selector)
            .map(|inner| Selector { inner })
            .map_err(PyValueError::new_err)
    }

    /// Build from a `metav1.LabelSelector` dict. `None` gives the selector that matches
    /// nothing; `{}` the one that matches everything.
    #[staticmethod]
    fn from_label_selector(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        if obj.is_none() {
            return Ok(Selector {
                inner: CoreSelector::nothing(),
            });
        }
        let d = obj.cast::<PyDict>().map_err(|_| {
            PyValueError::new_err("selector: must be an object with matchLabels/matchExpressions")
        })?;
        let mut labels = Vec::new();
        if let Some(ml) = d.get_item("matchLabels")? {
            if !ml.is_none() {
                let ml = ml.cast::<PyDict>().map_err(|_| {
                    PyValueError::new_err("matchLabels: must be a map of string to string")
                })?;
                for (k, v) in ml.iter() {
                    let k: String = k
                        .extract()
                        .map_err(|_| PyValueError::new_err("matchLabels: keys must be strings"))?;
                    let v: String = v.extract().map_err(|_| {
                        PyValueError::new_err(format!("matchLabels[{k}]: value must be a string"))
                    })?;
                    labels.push((k, v));
                }
            }
        }
        let mut exprs = Vec::new();
        if let Some(me) = d.get_item("matchExpressions")? {
            if !me.is_none() {
                let me = me
                    .cast::<PyList>()
                    .map_err(|_| PyValueError::new_err("matchExpressions: must be a list"))?;
                for (i, e) in me.iter().enumerate() {
                    let e = e.cast::<PyDict>().map_err(|_| {
                        PyValueError::new_err(format!("matchExpressions[{i}]: must be an object"))
                    })?;
                    let get_str = |f: &str| -> PyResult<String> {
                        match e.get_item(f)? {
                            Some(v) if !v.is_none() => v.extract::<String>().map_err(|_| {
                                PyValueError::new_err(format!(
                                    "matchExpressions[{i}].{f}: must be a string"
                                ))
                            }),
                            _ => Ok(String::new()),
                        }
                    };
                    let key = get_str("key")?;
                    let op = get_str("operator")?;
                    let vals = str_list(
                        e.get_item("values")?,
                        &format!("matchExpressions[{i}].values"),
                    )?;
                    exprs.push((key, op, vals));
                }
            }
        }
        CoreSelector::from_structured(&labels, &exprs)
            .map(|inner| Selector { inner })
            .map_err(PyValueError::new_err)
    }

    /// True for the selector that matches every label set.
    #[getter]
    fn empty(&self) -> bool {
        self.inner.is_everything()
    }

    /// True for the selector of a null LabelSelector, which matches nothing.
    #[getter]
    fn matches_nothing(&self) -> bool {
        self.inner.nothing
    }

    /// The requirements as (key, operator, values) with operator one of
    /// `=`, `!=`, `In`, `NotIn`, `Exists`, `DoesNotExist`, `Gt`, `Lt`, sorted by key.
    #[getter]
    fn requirements(&self) -> Vec<(String, &'static str, Vec<String>)> {
        self.inner
            .requirements
            .iter()
            .map(|r| (r.key.clone(), r.op.name(), r.values.clone()))
            .collect()
    }

    /// Whether one label set (a dict, or None for no labels) matches.
    fn matches(&self, py: Python<'_>, labels: &Bound<'_, PyAny>) -> PyResult<bool> {
        let labels = (!labels.is_none()).then_some(labels);
        self.matches_dict(py, &self.keys(py), labels)
    }

    /// Match many label sets (dicts or None) at once; returns a numpy bool array.
    fn match_many<'py>(
        &self,
        py: Python<'py>,
        label_sets: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<bool>>> {
        let keys = self.keys(py);
        let mut out = Vec::with_capacity(label_sets.len().unwrap_or(0));
        let mut one = |item: &Bound<'py, PyAny>| -> PyResult<()> {
            let labels = (!item.is_none()).then_some(item);
            out.push(self.matches_dict(py, &keys, labels)?);
            Ok(())
        };
        if let Ok(list) = label_sets.cast::<PyList>() {
            for item in list.iter() {
                one(&item)?;
            }
        } else {
            for item in label_sets.try_iter()? {
                one(&item?)?;
            }
        }
        Ok(out.into_pyarray(py))
    }

    /// Match every set of a prebuilt LabelTable; returns a numpy bool array. Releases the GIL.
    fn match_table<'py>(&self, py: Python<'py>, table: &LabelTable) -> Bound<'py, PyArray1<bool>> {
        let out = py.detach(|| {
            let mut out = vec![false; table.inner.len()];
            table.inner.match_all(&self.inner, &mut out);
            out
        });
        out.into_pyarray(py)
    }

    fn __str__(&self) -> String {
        self.inner.to_string()
    }

    fn __repr__(&self) -> String {
        if self.inner.nothing {
            "Selector.from_label_selector(None)".into()
        } else {
            format!("Selector({:?})", self.inner.to_string())
        }
    }

    fn __eq__(&self, other: &Selector) -> bool {
        self.inner == other.inner
    }
}

/// Many label sets stored as interned ids, for matching selectors repeatedly without
/// touching Python objects.
#[pyclass(frozen, module = "hyperkube._native")]
pub struct LabelTable {
    inner: CoreTable,
}

#[pymethods]
impl LabelTable {
    #[new]
    fn new(label_sets: &Bound<'_, PyAny>) -> PyResult<Self> {
        let mut t = CoreTable::new();
        let mut pairs: Vec<(String, String)> = Vec::new();
        for item in label_sets.try_iter()? {
            let item = item?;
            pairs.clear();
            if let Some(d) = as_label_dict(&item)? {
                for (k, v) in d.iter() {
                    let k = k
                        .cast::<PyString>()
                        .map_err(|_| PyTypeError::new_err("label keys must be str"))?;
                    let v = v
                        .cast::<PyString>()
                        .map_err(|_| PyTypeError::new_err("label values must be str"))?;
                    pairs.push((k.to_str()?.to_owned(), v.to_str()?.to_owned()));
                }
            }
            t.push(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
        Ok(LabelTable { inner: t })
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }
}

/// Parse a field selector into (field, negated, value) triples.
#[pyfunction]
fn parse_field_selector(selector: &str) -> PyResult<Vec<(String, bool, String)>> {
    core_sel::parse_field_selector(selector)
        .map(|v| {
            v.into_iter()
                .map(|r| (r.field, r.negate, r.value))
                .collect()
        })
        .map_err(PyValueError::new_err)
}

/// Messages for an invalid qualified name (label/annotation key); empty when valid.
#[pyfunction]
fn validate_qualified_name(value: &str) -> Vec<String> {
    validation::qualified_name(value)
}

/// Messages for an invalid label value; empty when valid.
#[pyfunction]
fn validate_label_value(value: &str) -> Vec<String> {
    validation::label_value(value)
}

/// Messages for an invalid DNS-1123 subdomain (most object names); empty when valid.
#[pyfunction]
fn validate_dns1123_subdomain(value: &str) -> Vec<String> {
    validation::dns1123_subdomain(value)
}

/// Messages for an invalid DNS-1123 label (namespace, service names); empty when valid.
#[pyfunction]
fn validate_dns1123_label(value: &str) -> Vec<String> {
    validation::dns1123_label(value)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Selector>()?;
    m.add_class::<LabelTable>()?;
    m.add_function(wrap_pyfunction!(parse_field_selector, m)?)?;
    m.add_function(wrap_pyfunction!(validate_qualified_name, m)?)?;
    m.add_function(wrap_pyfunction!(validate_label_value, m)?)?;
    m.add_function(wrap_pyfunction!(validate_dns1123_subdomain, m)?)?;
    m.add_function(wrap_pyfunction!(validate_dns1123_label, m)?)?;
    Ok(())
}
