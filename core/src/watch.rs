//! Watch fan-out: decide, for a batch of store events, which watchers see which event and as
//! what type. Semantics follow upstream's cacher
//! (`staging/src/k8s.io/apiserver/pkg/storage/cacher/cache_watcher.go`, `convertToWatchEvent`).
//!
//! A [`Fanout`] is a registry of watchers: each has an optional namespace, a label selector and a
//! field selector. For every event the registry yields `(watcher id, type)` rows:
//!
//! - ADDED: the object must match; the watcher gets ADDED.
//! - DELETED: the object's last state must match; the watcher gets DELETED.
//! - MODIFIED: with `cur` = the new state matches and `prev` = the previous state matches:
//!   both → MODIFIED, only `cur` → ADDED, only `prev` → DELETED (sent with the previous object),
//!   neither → nothing.
//!
//! Field selectors are matched as upstream's `fields.Set` does: a field absent from the event's
//! field set reads as the empty string.
//!
//! Indexing (so a dispatch is not O(events × watchers)): watchers are partitioned by namespace
//! (one partition per namespace, plus one for all-namespace watchers). Inside a partition a watcher
//! is filed under
//! - `always` when it has no selectors (it sees every event of its partition without a test);
//! - a bucket keyed by one exact-match requirement, chosen in this order: a field equality
//!   (`spec.nodeName=node-7`: 5,000 kubelets each watching their own node), a label equality, a
//!   label `in (...)` (one bucket per value). An event looks up only the buckets of its own
//!   values (current and previous state), as upstream's cacher does with its `indexedTrigger`;
//! - `rest` otherwise, tested on every event of the partition.
//!
//! Strings are interned once per registry (label keys, field names, values referenced by any
//! selector), so an event's state is reduced to small id pairs and matching is integer compares.
//! Interned strings are kept when watchers go away; the interner is bounded by the distinct
//! selector strings ever registered.

use std::collections::HashMap;

use crate::selector::{parse_field_selector, Interner, Op, Requirement, Selector};

/// Event and row types (the wire names are in [`TYPE_NAMES`]).
pub const ADDED: i8 = 0;
pub const MODIFIED: i8 = 1;
pub const DELETED: i8 = 2;
pub const BOOKMARK: i8 = 3;
pub const ERROR: i8 = 4;
/// Wire names of the type codes, indexed by code.
pub const TYPE_NAMES: [&str; 5] = ["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"];

/// Id of a string the registry has never seen: equal to no selector value.
const UNKNOWN: u32 = u32::MAX;

/// One object state reduced to the registry's ids: labels whose key some selector uses, and
/// fields whose name some field selector uses. Built by [`Fanout::state`].
#[derive(Clone, Debug, Default)]
pub struct State {
    /// (key id, value id, raw value for `Gt`/`Lt`)
    labels: Vec<(u32, u32, Box<str>)>,
    /// (field id, value id)
    fields: Vec<(u32, u32)>,
}

impl State {
    #[inline]
    fn label(&self, key: u32) -> Option<(u32, &str)> {
        self.labels
            .iter()
            .find(|l| l.0 == key)
            .map(|l| (l.1, &*l.2))
    }
    #[inline]
    fn field(&self, field: u32, empty: u32) -> u32 {
        self.fields
            .iter()
            .find(|f| f.0 == field)
            .map_or(empty, |f| f.1)
    }
}

/// One event of a batch: type (ADDED, MODIFIED or DELETED), namespace ("" for cluster-scoped
/// objects), the object's state and, for MODIFIED, its previous state.
#[derive(Clone, Debug)]
pub struct Event {
    pub kind: i8,
    pub namespace: String,
    pub cur: State,
    pub prev: Option<State>,
}

#[derive(Clone, Debug)]
struct LabelReq {
    key: u32,
    op: Op,
    values: Vec<u32>,
    req: Requirement,
}

#[derive(Clone, Copy, Debug)]
struct FieldReq {
    field: u32,
    negate: bool,
    value: u32,
}

/// What an index bucket is keyed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Attr {
    Label(u32),
    Field(u32),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Placement {
    Always,
    Rest,
    Buckets(Attr, Vec<u32>),
}

#[derive(Clone, Debug)]
struct Watcher {
    id: i64,
    namespace: Option<String>,
    labels: Vec<LabelReq>,
    fields: Vec<FieldReq>,
    placement: Placement,
}

#[derive(Default, Debug)]
struct Partition {
    always: Vec<u32>,
    rest: Vec<u32>,
    /// attributes with at least one bucket here, with the number of watchers filed under each
    attrs: Vec<(Attr, usize)>,
    buckets: HashMap<(Attr, u32), Vec<u32>>,
}

impl Partition {
    fn is_empty(&self) -> bool {
        self.always.is_empty() && self.rest.is_empty() && self.attrs.is_empty()
    }
}

fn remove_from(v: &mut Vec<u32>, slot: u32) {
    if let Some(i) = v.iter().position(|&s| s == slot) {
        v.swap_remove(i);
    }
}

/// The watcher registry and dispatcher. See the module docs.
#[derive(Debug)]
pub struct Fanout {
    keys: Interner,
    field_names: Interner,
    values: Interner,
    empty: u32,
    slots: Vec<Option<Watcher>>,
    free: Vec<u32>,
    by_id: HashMap<i64, u32>,
    namespaced: HashMap<String, Partition>,
    all: Partition,
}

impl Default for Fanout {
    fn default() -> Self {
        Fanout::new()
    }
}

impl Fanout {
    pub fn new() -> Fanout {
        let mut values = Interner::default();
        let empty = values.intern("");
        Fanout {
            keys: Interner::default(),
            field_names: Interner::default(),
            values,
            empty,
            slots: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::new(),
            namespaced: HashMap::new(),
            all: Partition::default(),
        }
    }

    /// Number of registered watchers.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn contains(&self, id: i64) -> bool {
        self.by_id.contains_key(&id)
    }

    /// Register a watcher. `namespace` `None` or `""` (upstream's `NamespaceAll`) watches all
    /// namespaces. Selectors are in string
    /// form; a parse error is returned with the selector's own message.
    pub fn add(
        &mut self,
        id: i64,
        namespace: Option<&str>,
        label_selector: &str,
        field_selector: &str,
    ) -> Result<(), String> {
        if self.by_id.contains_key(&id) {
            return Err(format!("watcher {id} is already registered"));
        }
        let sel = Selector::parse(label_selector)
            .map_err(|e| format!("labelSelector {label_selector:?}: {e}"))?;
        let fsel = parse_field_selector(field_selector)
            .map_err(|e| format!("fieldSelector {field_selector:?}: {e}"))?;
        self.add_parsed(id, namespace, &sel, &fsel)
    }

    /// Register a watcher from parsed selectors.
    pub fn add_parsed(
        &mut self,
        id: i64,
        namespace: Option<&str>,
        sel: &Selector,
        fsel: &[crate::selector::FieldRequirement],
    ) -> Result<(), String> {
        if self.by_id.contains_key(&id) {
            return Err(format!("watcher {id} is already registered"));
        }
        let namespace = namespace.filter(|ns| !ns.is_empty());
        if sel.nothing {
            return Err(
                "a watcher's label selector cannot be the selector that matches nothing".into(),
            );
        }
        let labels: Vec<LabelReq> = sel
            .requirements
            .iter()
            .map(|r| LabelReq {
                key: self.keys.intern(&r.key),
                op: r.op,
                values: r.values.iter().map(|v| self.values.intern(v)).collect(),
                req: r.clone(),
            })
            .collect();
        let fields: Vec<FieldReq> = fsel
            .iter()
            .map(|f| FieldReq {
                field: self.field_names.intern(&f.field),
                negate: f.negate,
                value: self.values.intern(&f.value),
            })
            .collect();
        let placement = if labels.is_empty() && fields.is_empty() {
            Placement::Always
        } else if let Some(f) = fields.iter().find(|f| !f.negate) {
            Placement::Buckets(Attr::Field(f.field), vec![f.value])
        } else if let Some(l) = labels
            .iter()
            .find(|l| matches!(l.op, Op::Equals | Op::DoubleEquals))
        {
            Placement::Buckets(Attr::Label(l.key), l.values.clone())
        } else if let Some(l) = labels
            .iter()
            .filter(|l| l.op == Op::In)
            .min_by_key(|l| l.values.len())
        {
            Placement::Buckets(Attr::Label(l.key), l.values.clone())
        } else {
            Placement::Rest
        };
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        let part = match namespace {
            None => &mut self.all,
            Some(ns) => self.namespaced.entry(ns.to_string()).or_default(),
        };
        match &placement {
            Placement::Always => part.always.push(slot),
            Placement::Rest => part.rest.push(slot),
            Placement::Buckets(attr, vals) => {
                match part.attrs.iter_mut().find(|a| a.0 == *attr) {
                    Some(a) => a.1 += 1,
                    None => part.attrs.push((*attr, 1)),
                }
                for &v in vals {
                    part.buckets.entry((*attr, v)).or_default().push(slot);
                }
            }
        }
        self.slots[slot as usize] = Some(Watcher {
            id,
            namespace: namespace.map(str::to_string),
            labels,
            fields,
            placement,
        });
        self.by_id.insert(id, slot);
        Ok(())
    }

    /// Unregister a watcher; false when it was not registered.
    pub fn remove(&mut self, id: i64) -> bool {
        let Some(slot) = self.by_id.remove(&id) else {
            return false;
        };
        let w = self.slots[slot as usize]
            .take()
            .expect("registered slot is filled");
        self.free.push(slot);
        let part = match &w.namespace {
            None => &mut self.all,
            Some(ns) => self
                .namespaced
                .get_mut(ns)
                .expect("partition of a registered watcher"),
        };
        match &w.placement {
            Placement::Always => remove_from(&mut part.always, slot),
            Placement::Rest => remove_from(&mut part.rest, slot),
            Placement::Buckets(attr, vals) => {
                for v in vals {
                    if let Some(b) = part.buckets.get_mut(&(*attr, *v)) {
                        remove_from(b, slot);
                        if b.is_empty() {
                            part.buckets.remove(&(*attr, *v));
                        }
                    }
                }
                if let Some(i) = part.attrs.iter().position(|a| a.0 == *attr) {
                    part.attrs[i].1 -= 1;
                    if part.attrs[i].1 == 0 {
                        part.attrs.swap_remove(i);
                    }
                }
            }
        }
        if let Some(ns) = &w.namespace {
            if self.namespaced.get(ns).is_some_and(Partition::is_empty) {
                self.namespaced.remove(ns);
            }
        }
        true
    }

    /// Reduce one object state to ids. Labels and fields no selector refers to are dropped.
    pub fn state<'a, L, F>(&self, labels: L, fields: F) -> State
    where
        L: IntoIterator<Item = (&'a str, &'a str)>,
        F: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut s = State::default();
        self.push_labels(&mut s, labels);
        self.push_fields(&mut s, fields);
        s
    }

    /// Add labels to a state (see [`Fanout::state`]).
    pub fn push_labels<'a, L: IntoIterator<Item = (&'a str, &'a str)>>(
        &self,
        s: &mut State,
        labels: L,
    ) {
        for (k, v) in labels {
            if let Some(k) = self.keys.get(k) {
                let vid = self.values.get(v).unwrap_or(UNKNOWN);
                s.labels.push((k, vid, v.into()));
            }
        }
    }

    /// Add fields to a state (see [`Fanout::state`]).
    pub fn push_fields<'a, F: IntoIterator<Item = (&'a str, &'a str)>>(
        &self,
        s: &mut State,
        fields: F,
    ) {
        for (f, v) in fields {
            if let Some(f) = self.field_names.get(f) {
                s.fields.push((f, self.values.get(v).unwrap_or(UNKNOWN)));
            }
        }
    }

    /// Whether label key `key` / field `field` is referenced by some selector (callers can skip
    /// converting the others).
    pub fn uses_label(&self, key: &str) -> bool {
        self.keys.get(key).is_some()
    }
    pub fn uses_field(&self, field: &str) -> bool {
        self.field_names.get(field).is_some()
    }

    #[inline]
    fn matches(&self, w: &Watcher, s: &State) -> bool {
        for f in &w.fields {
            if (s.field(f.field, self.empty) == f.value) == f.negate {
                return false;
            }
        }
        for r in &w.labels {
            let v = s.label(r.key);
            let ok = match r.op {
                Op::Equals | Op::DoubleEquals | Op::In => {
                    v.is_some_and(|(id, _)| r.values.contains(&id))
                }
                Op::NotEquals | Op::NotIn => v.is_none_or(|(id, _)| !r.values.contains(&id)),
                Op::Exists => v.is_some(),
                Op::DoesNotExist => v.is_none(),
                Op::GreaterThan | Op::LessThan => r.req.matches(v.map(|(_, raw)| raw)),
            };
            if !ok {
                return false;
            }
        }
        true
    }

    /// The row type watcher `w` gets for `ev`, if any (upstream's `convertToWatchEvent`).
    #[inline]
    fn outcome(&self, w: &Watcher, ev: &Event) -> Option<i8> {
        match ev.kind {
            MODIFIED => {
                let cur = self.matches(w, &ev.cur);
                let prev = ev.prev.as_ref().is_some_and(|p| self.matches(w, p));
                match (cur, prev) {
                    (true, true) => Some(MODIFIED),
                    (true, false) => Some(ADDED),
                    (false, true) => Some(DELETED),
                    (false, false) => None,
                }
            }
            k => self.matches(w, &ev.cur).then_some(k),
        }
    }

    /// Dispatch a batch. Appends one row `(watcher id, event index, type)` per delivery to the
    /// three output vectors, ordered by event then watcher id.
    pub fn dispatch(
        &self,
        events: &[Event],
        ids: &mut Vec<i64>,
        event_index: &mut Vec<i32>,
        types: &mut Vec<i8>,
    ) {
        let mut hits: Vec<(i64, i8)> = Vec::new();
        // bucket candidates of one partition: a watcher filed under several buckets (`in`), or
        // reached through both the current and the previous value, is found more than once
        let mut cand: Vec<u32> = Vec::new();
        for (e, ev) in (0i32..).zip(events) {
            hits.clear();
            let parts = [self.namespaced.get(ev.namespace.as_str()), Some(&self.all)];
            for part in parts.into_iter().flatten() {
                let test = |slot: u32, hits: &mut Vec<(i64, i8)>| {
                    let w = self.slots[slot as usize].as_ref().expect("live slot");
                    if let Some(t) = self.outcome(w, ev) {
                        hits.push((w.id, t));
                    }
                };
                for &slot in &part.always {
                    let w = self.slots[slot as usize].as_ref().expect("live slot");
                    hits.push((w.id, ev.kind));
                }
                for &slot in &part.rest {
                    test(slot, &mut hits);
                }
                cand.clear();
                for &(attr, _) in &part.attrs {
                    let value = |s: &State| match attr {
                        Attr::Field(f) => Some(s.field(f, self.empty)),
                        Attr::Label(k) => s.label(k).map(|(id, _)| id),
                    };
                    let cur = value(&ev.cur);
                    let prev = match (ev.kind, &ev.prev) {
                        (MODIFIED, Some(p)) => value(p),
                        _ => None,
                    };
                    for v in [cur, prev.filter(|p| Some(*p) != cur)]
                        .into_iter()
                        .flatten()
                    {
                        if let Some(bucket) = part.buckets.get(&(attr, v)) {
                            cand.extend_from_slice(bucket);
                        }
                    }
                }
                cand.sort_unstable();
                cand.dedup();
                for &slot in &cand {
                    test(slot, &mut hits);
                }
            }
            hits.sort_unstable_by_key(|h| h.0);
            for &(id, t) in &hits {
                ids.push(id);
                event_index.push(e);
                types.push(t);
            }
        }
    }
}

/// Frame one watch event as a JSON stream line: `{"type":"<TYPE>","object":<object>}\n`,
/// appended to `out`. `object` must already be JSON.
pub fn frame(out: &mut Vec<u8>, kind: i8, object: &[u8]) {
    out.extend_from_slice(FRAME_HEAD);
    out.extend_from_slice(TYPE_NAMES[kind as usize].as_bytes());
    out.extend_from_slice(FRAME_MID);
    out.extend_from_slice(object);
    out.extend_from_slice(FRAME_TAIL);
}

const FRAME_HEAD: &[u8] = b"{\"type\":\"";
const FRAME_MID: &[u8] = b"\",\"object\":";
const FRAME_TAIL: &[u8] = b"}\n";

/// Write the line [`frame`] appends into `buf`, whose length must be [`frame_len`].
pub fn frame_into(buf: &mut [u8], kind: i8, object: &[u8]) {
    let name = TYPE_NAMES[kind as usize].as_bytes();
    let mut at = 0;
    for part in [FRAME_HEAD, name, FRAME_MID, object, FRAME_TAIL] {
        buf[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
}

/// Length of the line [`frame`] writes.
pub fn frame_len(kind: i8, object_len: usize) -> usize {
    FRAME_HEAD.len()
        + FRAME_MID.len()
        + FRAME_TAIL.len()
        + TYPE_NAMES[kind as usize].len()
        + object_len
}

#[cfg(test)]
mod tests {
    use super::*;

    type Pairs<'a> = &'a [(&'a str, &'a str)];

    fn ev(
        f: &Fanout,
        kind: i8,
        ns: &str,
        labels: Pairs,
        fields: Pairs,
        prev: Option<(Pairs, Pairs)>,
    ) -> Event {
        Event {
            kind,
            namespace: ns.into(),
            cur: f.state(labels.iter().copied(), fields.iter().copied()),
            prev: prev.map(|(l, fl)| f.state(l.iter().copied(), fl.iter().copied())),
        }
    }

    fn run(f: &Fanout, events: &[Event]) -> Vec<(i64, i32, i8)> {
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        f.dispatch(events, &mut a, &mut b, &mut c);
        a.into_iter()
            .zip(b)
            .zip(c)
            .map(|((a, b), c)| (a, b, c))
            .collect()
    }

    #[test]
    fn transitions() {
        let mut f = Fanout::new();
        f.add(1, Some("ns"), "app=web", "").unwrap();
        f.add(2, None, "", "").unwrap();
        f.add(3, None, "", "spec.nodeName=n1").unwrap();
        f.add(4, Some("other"), "", "").unwrap();
        f.add(5, None, "tier!=db", "status.phase!=Failed").unwrap();
        let web: &[(&str, &str)] = &[("app", "web")];
        let db: &[(&str, &str)] = &[("app", "db"), ("tier", "db")];
        let n1: &[(&str, &str)] = &[("spec.nodeName", "n1")];
        let events = vec![
            ev(&f, ADDED, "ns", web, &[], None),
            ev(&f, MODIFIED, "ns", db, n1, Some((web, &[]))),
            ev(&f, MODIFIED, "ns", web, n1, Some((db, n1))),
            ev(
                &f,
                MODIFIED,
                "ns",
                web,
                &[("status.phase", "Failed")],
                Some((web, n1)),
            ),
            ev(&f, DELETED, "ns", db, n1, None),
        ];
        let rows = run(&f, &events);
        assert_eq!(
            rows,
            vec![
                (1, 0, ADDED),
                (2, 0, ADDED),
                (5, 0, ADDED),
                (1, 1, DELETED),
                (2, 1, MODIFIED),
                (3, 1, ADDED),
                (5, 1, DELETED),
                (1, 2, ADDED),
                (2, 2, MODIFIED),
                (3, 2, MODIFIED),
                (5, 2, ADDED),
                (1, 3, MODIFIED),
                (2, 3, MODIFIED),
                (3, 3, DELETED),
                (5, 3, DELETED),
                (2, 4, DELETED),
                (3, 4, DELETED),
            ]
        );
    }

    #[test]
    fn remove_and_reuse() {
        let mut f = Fanout::new();
        f.add(10, Some("a"), "x in (1,2)", "").unwrap();
        f.add(11, Some("a"), "x=1", "").unwrap();
        assert!(f.add(10, None, "", "").is_err());
        assert!(f
            .add(12, None, "a b", "")
            .unwrap_err()
            .contains("labelSelector"));
        assert!(f
            .add(12, None, "", "nope")
            .unwrap_err()
            .contains("fieldSelector"));
        assert_eq!(f.len(), 2);
        let e = ev(
            &f,
            MODIFIED,
            "a",
            &[("x", "2")],
            &[],
            Some((&[("x", "1")], &[])),
        );
        assert_eq!(
            run(&f, std::slice::from_ref(&e)),
            vec![(10, 0, MODIFIED), (11, 0, DELETED)]
        );
        assert!(f.remove(10));
        assert!(!f.remove(10));
        f.add(20, Some("a"), "", "").unwrap();
        assert_eq!(run(&f, &[e]), vec![(11, 0, DELETED), (20, 0, MODIFIED)]);
        assert!(f.remove(11) && f.remove(20));
        assert!(f.is_empty() && f.namespaced.is_empty());
    }

    #[test]
    fn absent_field_reads_empty() {
        let mut f = Fanout::new();
        f.add(1, None, "", "spec.nodeName=").unwrap();
        f.add(2, None, "", "spec.nodeName!=").unwrap();
        let rows = run(&f, &[ev(&f, ADDED, "", &[], &[], None)]);
        assert_eq!(rows, vec![(1, 0, ADDED)]);
        // "" is NamespaceAll
        f.add(3, Some(""), "", "").unwrap();
        let rows = run(&f, &[ev(&f, ADDED, "x", &[], &[], None)]);
        assert_eq!(rows, vec![(1, 0, ADDED), (3, 0, ADDED)]);
    }

    #[test]
    fn framing() {
        let mut out = Vec::new();
        frame(&mut out, MODIFIED, b"{}");
        assert_eq!(out, b"{\"type\":\"MODIFIED\",\"object\":{}}\n");
        assert_eq!(frame_len(MODIFIED, 2), out.len());
        let mut buf = vec![0; out.len()];
        frame_into(&mut buf, MODIFIED, b"{}");
        assert_eq!(buf, out);
    }
}
