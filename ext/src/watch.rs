//! Bindings for `hyperkube_core::watch`: the watch cache's fan-out.
//!
//! `WatchFanout` holds the watcher registry. `dispatch` takes a batch of events (tuples of
//! type, namespace, label dict, field dict, previous label dict, previous field dict), reduces
//! each to the registry's ids with the GIL held (one pass over each dict), then matches with the
//! GIL released and returns numpy row arrays. `group_frames` (and `fanout`, which is dispatch +
//! group_frames in one call) frames each (event, type) line once and returns one payload per
//! watcher: the shared line object itself when the watcher gets one line, else the
//! concatenation of its lines in event order, so the caller does one write per watcher per batch.

use std::collections::HashMap;

use hyperkube_core::watch::{self as core_watch, Event, Fanout, State, DELETED, MODIFIED};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};

type Rows<'py> = (
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i32>>,
    Bound<'py, PyArray1<i8>>,
);

/// The watcher registry of one resource's watch cache, and its dispatcher.
#[pyclass(module = "hyperkube._native")]
pub struct WatchFanout {
    inner: Fanout,
}

fn str_items<'py>(
    obj: &Bound<'py, PyAny>,
    what: &str,
    e: usize,
) -> PyResult<Vec<(Bound<'py, PyString>, Bound<'py, PyString>)>> {
    if obj.is_none() {
        return Ok(Vec::new());
    }
    let d = obj.cast::<PyDict>().map_err(|_| {
        PyTypeError::new_err(format!(
            "events[{e}]: {what} must be a dict of str to str, or None"
        ))
    })?;
    let mut out = Vec::with_capacity(d.len());
    for (k, v) in d.iter() {
        match (k.cast_into::<PyString>(), v.cast_into::<PyString>()) {
            (Ok(k), Ok(v)) => out.push((k, v)),
            _ => {
                return Err(PyTypeError::new_err(format!(
                    "events[{e}]: {what} must be a dict of str to str, or None"
                )))
            }
        }
    }
    Ok(out)
}

impl WatchFanout {
    fn state(
        &self,
        labels: &Bound<'_, PyAny>,
        fields: &Bound<'_, PyAny>,
        e: usize,
        prev: bool,
    ) -> PyResult<State> {
        let (lw, fw) = if prev {
            ("prev_labels", "prev_fields")
        } else {
            ("labels", "fields")
        };
        let labels = str_items(labels, lw, e)?;
        let fields = str_items(fields, fw, e)?;
        let mut s = State::default();
        let mut l = Vec::with_capacity(labels.len());
        for (k, v) in &labels {
            let k = k.to_str()?;
            if self.inner.uses_label(k) {
                l.push((k, v.to_str()?));
            }
        }
        self.inner.push_labels(&mut s, l);
        let mut f = Vec::with_capacity(fields.len());
        for (k, v) in &fields {
            let k = k.to_str()?;
            if self.inner.uses_field(k) {
                f.push((k, v.to_str()?));
            }
        }
        self.inner.push_fields(&mut s, f);
        Ok(s)
    }

    fn events(&self, events: &Bound<'_, PyAny>) -> PyResult<Vec<Event>> {
        let mut out = Vec::with_capacity(events.len().unwrap_or(0));
        for (e, item) in events.try_iter()?.enumerate() {
            let item = item?;
            let t = item.cast::<PyTuple>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "events[{e}]: must be a tuple (type, namespace, labels, fields, prev_labels, prev_fields)"
                ))
            })?;
            if t.len() != 6 {
                return Err(PyValueError::new_err(format!(
                    "events[{e}]: must be a tuple of 6 items (type, namespace, labels, fields, prev_labels, prev_fields), got {}",
                    t.len()
                )));
            }
            let kind: i64 = t
                .get_item(0)?
                .extract()
                .map_err(|_| PyTypeError::new_err(format!("events[{e}]: type must be an int")))?;
            if !(0..=2).contains(&kind) {
                return Err(PyValueError::new_err(format!(
                    "events[{e}]: type must be 0 (ADDED), 1 (MODIFIED) or 2 (DELETED), got {kind}"
                )));
            }
            let kind = kind as i8;
            let ns = t.get_item(1)?;
            let namespace = if ns.is_none() {
                String::new()
            } else {
                ns.cast::<PyString>()
                    .map_err(|_| {
                        PyTypeError::new_err(format!(
                            "events[{e}]: namespace must be a str or None"
                        ))
                    })?
                    .to_str()?
                    .to_owned()
            };
            let cur = self.state(&t.get_item(2)?, &t.get_item(3)?, e, false)?;
            let prev = if kind == MODIFIED {
                Some(self.state(&t.get_item(4)?, &t.get_item(5)?, e, true)?)
            } else {
                None
            };
            out.push(Event {
                kind,
                namespace,
                cur,
                prev,
            });
        }
        Ok(out)
    }

    fn run(&self, py: Python<'_>, events: &[Event]) -> (Vec<i64>, Vec<i32>, Vec<i8>) {
        let inner = &self.inner;
        py.detach(|| {
            let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
            inner.dispatch(events, &mut a, &mut b, &mut c);
            (a, b, c)
        })
    }
}

#[pymethods]
impl WatchFanout {
    #[new]
    fn new() -> Self {
        WatchFanout {
            inner: Fanout::new(),
        }
    }

    /// Register a watcher (see the stub for the semantics).
    #[pyo3(signature = (watcher_id, namespace = None, label_selector = "", field_selector = ""))]
    fn add(
        &mut self,
        watcher_id: i64,
        namespace: Option<&str>,
        label_selector: &str,
        field_selector: &str,
    ) -> PyResult<()> {
        self.inner
            .add(watcher_id, namespace, label_selector, field_selector)
            .map_err(PyValueError::new_err)
    }

    /// Unregister a watcher; False when it was not registered.
    fn remove(&mut self, watcher_id: i64) -> bool {
        self.inner.remove(watcher_id)
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __contains__(&self, watcher_id: i64) -> bool {
        self.inner.contains(watcher_id)
    }

    /// Match a batch of events against every watcher; returns (watcher_ids, event_index,
    /// event_type) row arrays ordered by event then watcher id.
    fn dispatch<'py>(&self, py: Python<'py>, events: &Bound<'py, PyAny>) -> PyResult<Rows<'py>> {
        let events = self.events(events)?;
        let (a, b, c) = self.run(py, &events);
        Ok((a.into_pyarray(py), b.into_pyarray(py), c.into_pyarray(py)))
    }

    /// dispatch + group_frames in one call; a DELETED row of a MODIFIED event needs
    /// `prev_objects[i]`.
    #[pyo3(signature = (events, objects, prev_objects = None))]
    fn fanout<'py>(
        &self,
        py: Python<'py>,
        events: &Bound<'py, PyAny>,
        objects: &Bound<'py, PyAny>,
        prev_objects: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<(Vec<i64>, Vec<Py<PyBytes>>)> {
        let evs = self.events(events)?;
        let n = evs.len();
        if objects.len()? != n {
            return Err(PyValueError::new_err(format!(
                "objects: expected {n} items (one per event), got {}",
                objects.len()?
            )));
        }
        let (ids, eidx, types) = self.run(py, &evs);
        let kinds: Vec<i8> = evs.iter().map(|e| e.kind).collect();
        group(py, &ids, &eidx, &types, objects, prev_objects, Some(&kinds))
    }
}

fn object_bytes<'py>(
    seq: &Bound<'py, PyAny>,
    e: usize,
    what: &str,
) -> PyResult<Option<Bound<'py, PyBytes>>> {
    let o = seq.get_item(e)?;
    if o.is_none() {
        return Ok(None);
    }
    o.cast_into::<PyBytes>()
        .map(Some)
        .map_err(|_| PyTypeError::new_err(format!("{what}[{e}]: must be bytes (JSON) or None")))
}

/// Frame the line of (event `e`, type `t`).
fn line<'py>(
    py: Python<'py>,
    e: usize,
    t: i8,
    objects: &Bound<'py, PyAny>,
    prev_objects: Option<&Bound<'py, PyAny>>,
    kinds: Option<&[i8]>,
) -> PyResult<Bound<'py, PyBytes>> {
    let mut obj = None;
    if t == DELETED {
        if let Some(p) = prev_objects {
            obj = object_bytes(p, e, "prev_objects")?;
        }
        if obj.is_none() && kinds.is_some_and(|k| k[e] == MODIFIED) {
            return Err(PyValueError::new_err(format!(
                "prev_objects[{e}]: event {e} is a MODIFIED whose previous state matched a watcher \
                 and whose new state does not, so that watcher gets DELETED with the previous \
                 object; pass its JSON (with the event's resourceVersion)"
            )));
        }
    }
    let obj = match obj {
        Some(o) => o,
        None => object_bytes(objects, e, "objects")?.ok_or_else(|| {
            PyValueError::new_err(format!(
                "objects[{e}]: event {e} is delivered, so its object JSON is needed"
            ))
        })?,
    };
    let obj = obj.as_bytes();
    PyBytes::new_with(py, core_watch::frame_len(t, obj.len()), |buf| {
        core_watch::frame_into(buf, t, obj);
        Ok(())
    })
}

fn group<'py>(
    py: Python<'py>,
    ids: &[i64],
    eidx: &[i32],
    types: &[i8],
    objects: &Bound<'py, PyAny>,
    prev_objects: Option<&Bound<'py, PyAny>>,
    kinds: Option<&[i8]>,
) -> PyResult<(Vec<i64>, Vec<Py<PyBytes>>)> {
    if ids.len() != eidx.len() || ids.len() != types.len() {
        return Err(PyValueError::new_err(
            "watcher_ids, event_index and event_type must have the same length",
        ));
    }
    let n_events = objects.len()?;
    if let Some(p) = prev_objects {
        if p.len()? != n_events {
            return Err(PyValueError::new_err(format!(
                "prev_objects: expected {n_events} items (as objects), got {}",
                p.len()?
            )));
        }
    }
    // dense watcher ranks, in ascending id order
    let mut rank: HashMap<i64, u32> = HashMap::new();
    for &id in ids {
        rank.entry(id).or_insert(0);
    }
    let mut uniq: Vec<i64> = rank.keys().copied().collect();
    uniq.sort_unstable();
    for (r, id) in uniq.iter().enumerate() {
        rank.insert(*id, r as u32);
    }
    // counting sort of row numbers by watcher; stable, so each watcher keeps event order
    let mut start = vec![0usize; uniq.len() + 1];
    let row_rank: Vec<u32> = ids.iter().map(|id| rank[id]).collect();
    for &r in &row_rank {
        start[r as usize + 1] += 1;
    }
    for i in 0..uniq.len() {
        start[i + 1] += start[i];
    }
    let mut fill = start.clone();
    let mut order = vec![0usize; ids.len()];
    for (row, &r) in row_rank.iter().enumerate() {
        order[fill[r as usize]] = row;
        fill[r as usize] += 1;
    }
    // line key of each row, in watcher-grouped order
    let mut keys = Vec::with_capacity(order.len());
    for &row in &order {
        let (e, t) = (eidx[row], types[row]);
        if e < 0 || e as usize >= n_events || !(0..=2).contains(&t) {
            return Err(PyValueError::new_err(format!(
                "row {row}: event_index {e} / event_type {t} out of range ({n_events} events, types 0..2)"
            )));
        }
        keys.push(e as u32 * 3 + t as u32);
    }
    let mut lines: Vec<Option<Bound<'py, PyBytes>>> = vec![None; n_events * 3];
    let mut get = |k: u32| -> PyResult<Bound<'py, PyBytes>> {
        if let Some(b) = &lines[k as usize] {
            return Ok(b.clone());
        }
        let b = line(
            py,
            (k / 3) as usize,
            (k % 3) as i8,
            objects,
            prev_objects,
            kinds,
        )?;
        lines[k as usize] = Some(b.clone());
        Ok(b)
    };
    // watchers with the same sequence of lines (e.g. every informer without a selector)
    // share one payload
    let mut joined: HashMap<&[u32], Bound<'py, PyBytes>> = HashMap::new();
    let mut payloads = Vec::with_capacity(uniq.len());
    let mut parts: Vec<Bound<'py, PyBytes>> = Vec::new();
    for w in 0..uniq.len() {
        let seq = &keys[start[w]..start[w + 1]];
        if seq.len() == 1 {
            payloads.push(get(seq[0])?.unbind());
            continue;
        }
        if let Some(b) = joined.get(seq) {
            payloads.push(b.clone().unbind());
            continue;
        }
        parts.clear();
        let mut total = 0;
        for &k in seq {
            let b = get(k)?;
            total += b.as_bytes().len();
            parts.push(b);
        }
        let b = PyBytes::new_with(py, total, |buf| {
            let mut at = 0;
            for p in &parts {
                let s = p.as_bytes();
                buf[at..at + s.len()].copy_from_slice(s);
                at += s.len();
            }
            Ok(())
        })?;
        joined.insert(seq, b.clone());
        payloads.push(b.unbind());
    }
    Ok((uniq, payloads))
}

/// Group dispatch rows by watcher and frame each (event, type) line once.
#[pyfunction]
#[pyo3(signature = (watcher_ids, event_index, event_type, objects, prev_objects = None))]
fn group_frames<'py>(
    py: Python<'py>,
    watcher_ids: PyReadonlyArray1<'py, i64>,
    event_index: PyReadonlyArray1<'py, i32>,
    event_type: PyReadonlyArray1<'py, i8>,
    objects: &Bound<'py, PyAny>,
    prev_objects: Option<&Bound<'py, PyAny>>,
) -> PyResult<(Vec<i64>, Vec<Py<PyBytes>>)> {
    group(
        py,
        watcher_ids.as_slice()?,
        event_index.as_slice()?,
        event_type.as_slice()?,
        objects,
        prev_objects,
        None,
    )
}

/// Frame watch lines `{"type":...,"object":...}\n`, one per (type, object JSON).
#[pyfunction]
fn watch_frames<'py>(
    py: Python<'py>,
    types: Vec<i64>,
    objects: &Bound<'py, PyAny>,
) -> PyResult<Vec<Bound<'py, PyBytes>>> {
    if objects.len()? != types.len() {
        return Err(PyValueError::new_err(format!(
            "types and objects must have the same length ({} != {})",
            types.len(),
            objects.len()?
        )));
    }
    let mut out = Vec::with_capacity(types.len());
    let mut v = Vec::new();
    for (i, (t, o)) in types.iter().zip(objects.try_iter()?).enumerate() {
        if !(0..core_watch::TYPE_NAMES.len() as i64).contains(t) {
            return Err(PyValueError::new_err(format!(
                "types[{i}]: must be 0 (ADDED), 1 (MODIFIED), 2 (DELETED), 3 (BOOKMARK) or 4 (ERROR), got {t}"
            )));
        }
        let o = o?;
        let o = o
            .cast::<PyBytes>()
            .map_err(|_| PyTypeError::new_err(format!("objects[{i}]: must be bytes (JSON)")))?;
        v.clear();
        core_watch::frame(&mut v, *t as i8, o.as_bytes());
        out.push(PyBytes::new(py, &v));
    }
    Ok(out)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<WatchFanout>()?;
    m.add_function(wrap_pyfunction!(group_frames, m)?)?;
    m.add_function(wrap_pyfunction!(watch_frames, m)?)?;
    Ok(())
}
