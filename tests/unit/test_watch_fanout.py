"""Native watch fan-out (`WatchFanout`, `group_frames`, `watch_frames`) against the reference.

Random watchers (namespaces, label and field selectors, indexed or not) and random event
batches (ADDED/MODIFIED/DELETED, label and field transitions) must give the same rows as the
plain-Python reference in tests/reference/watch.py, which tests every watcher on every event.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hyperkube import _native
from tests.reference import watch as ref

A, M, D = ref.ADDED, ref.MODIFIED, ref.DELETED
NAMESPACES = ["a", "b", "", "kube-system"]
KEYS = ["app", "tier", "n", "x.io/role"]
VALUES = ["", "web", "db", "5", "12", "a-1"]
FIELDS = ["spec.nodeName", "status.phase", "metadata.name"]
FIELD_VALUES = ["", "n1", "n2", "Running", "p-1"]


@st.composite
def label_requirement(draw: st.DrawFn) -> str:
    key = draw(st.sampled_from(KEYS))
    op = draw(st.sampled_from(["=", "==", "!=", "in", "notin", "exists", "!", ">", "<"]))
    if op == "exists":
        return key
    if op == "!":
        return "!" + key
    if op in (">", "<"):
        return f"{key}{op}{draw(st.sampled_from(['5', '0', '11']))}"
    if op in ("in", "notin"):
        vals = draw(st.lists(st.sampled_from(VALUES[1:]), min_size=1, max_size=3))
        return f"{key} {op} ({','.join(vals)})"
    return f"{key}{op}{draw(st.sampled_from(VALUES))}"


field_requirement = st.builds(
    lambda f, op, v: f"{f}{op}{v}",
    st.sampled_from(FIELDS),
    st.sampled_from(["=", "==", "!="]),
    st.sampled_from(FIELD_VALUES),
)

watcher_specs = st.tuples(
    st.one_of(st.none(), st.sampled_from(NAMESPACES)),
    st.lists(label_requirement(), max_size=3).map(",".join),
    st.lists(field_requirement, max_size=2).map(",".join),
)
labels = st.one_of(
    st.none(), st.dictionaries(st.sampled_from(KEYS + ["other"]), st.sampled_from(VALUES), max_size=4)
)
fields = st.one_of(
    st.none(),
    st.dictionaries(st.sampled_from(FIELDS + ["spec.other"]), st.sampled_from(FIELD_VALUES), max_size=3),
)
events = st.tuples(
    st.sampled_from([A, M, D]),
    st.one_of(st.none(), st.sampled_from(NAMESPACES + ["c"])),
    labels,
    fields,
    labels,
    fields,
)


def native_rows(fan: _native.WatchFanout, evs: list[ref.Event]) -> list[tuple[int, int, int]]:
    ids, eidx, types = fan.dispatch(evs)
    assert ids.dtype == np.int64 and eidx.dtype == np.int32 and types.dtype == np.int8
    return list(zip(ids.tolist(), eidx.tolist(), types.tolist(), strict=True))


def build(specs: list[tuple[str | None, str, str]]) -> tuple[_native.WatchFanout, list[ref.Watcher]]:
    fan = _native.WatchFanout()
    watchers = []
    for i, (ns, lsel, fsel) in enumerate(specs):
        wid = 1000 - 7 * i  # ids not in registration order
        fan.add(wid, ns, lsel, fsel)
        watchers.append(ref.Watcher(wid, ns, lsel, fsel))
    return fan, watchers


@settings(max_examples=300, deadline=None)
@given(st.lists(watcher_specs, max_size=25), st.lists(events, max_size=15))
def test_dispatch_matches_reference(specs: list[tuple[str | None, str, str]], evs: list[ref.Event]) -> None:
    fan, watchers = build(specs)
    assert len(fan) == len(watchers)
    assert native_rows(fan, evs) == ref.dispatch(watchers, evs)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(watcher_specs, min_size=1, max_size=25),
    st.lists(st.booleans(), min_size=25, max_size=25),
    st.lists(watcher_specs, max_size=5),
    st.lists(events, max_size=10),
)
def test_remove_and_readd(
    specs: list[tuple[str | None, str, str]],
    drop: list[bool],
    more: list[tuple[str | None, str, str]],
    evs: list[ref.Event],
) -> None:
    fan, watchers = build(specs)
    kept = []
    for w, d in zip(watchers, drop, strict=False):
        if d:
            assert fan.remove(w.id)
            assert w.id not in fan
        else:
            kept.append(w)
    kept += watchers[len(drop) :]
    for i, (ns, lsel, fsel) in enumerate(more):  # slots freed above are reused
        fan.add(5000 + i, ns, lsel, fsel)
        kept.append(ref.Watcher(5000 + i, ns, lsel, fsel))
    assert len(fan) == len(kept)
    assert native_rows(fan, evs) == ref.dispatch(kept, evs)


def obj(i: int, prev: bool = False) -> bytes:
    return json.dumps({"metadata": {"name": f"p{i}", "prev": prev}}, separators=(",", ":")).encode()


@settings(max_examples=150, deadline=None)
@given(st.lists(watcher_specs, max_size=15), st.lists(events, max_size=10))
def test_fanout_matches_reference(specs: list[tuple[str | None, str, str]], evs: list[ref.Event]) -> None:
    fan, watchers = build(specs)
    objects = [obj(i) for i in range(len(evs))]
    prev = [obj(i, prev=True) if ev[0] == M else None for i, ev in enumerate(evs)]
    rows = ref.dispatch(watchers, evs)
    expected = ref.group_frames(rows, objects, prev)
    got = fan.fanout(evs, objects, prev)
    assert got == expected
    ids, eidx, types = fan.dispatch(evs)
    assert _native.group_frames(ids, eidx, types, objects, prev) == expected
    # the stub's recipe: encode previous objects only for MODIFIED events that yield a DELETED
    kinds = np.array([ev[0] for ev in evs], dtype=np.int8)
    needed = set(eidx[(types == D) & (kinds[eidx] == M)].tolist())
    lazy = [prev[i] if i in needed else None for i in range(len(evs))]
    assert _native.group_frames(ids, eidx, types, objects, lazy) == expected


def test_transitions_follow_the_cacher() -> None:
    """convertToWatchEvent: a label change moves a pod in and out of a selector's view."""
    fan = _native.WatchFanout()
    fan.add(1, "ns", "app=web", "")
    fan.add(2, None)
    fan.add(3, None, "", "spec.nodeName=n1")
    fan.add(4, "other")
    web, db, n1 = {"app": "web"}, {"app": "db"}, {"spec.nodeName": "n1"}
    evs: list[ref.Event] = [
        (A, "ns", web, None, None, None),
        (M, "ns", db, n1, web, None),  # leaves 1's view (DELETED), enters 3's (ADDED)
        (M, "ns", web, n1, db, n1),  # back into 1's view (ADDED), 3 sees MODIFIED
        (M, "ns", web, None, web, n1),  # unscheduled: 3 sees DELETED
        (D, "ns", web, None, None, None),
    ]
    assert native_rows(fan, evs) == [
        (1, 0, A),
        (2, 0, A),
        (1, 1, D),
        (2, 1, M),
        (3, 1, A),
        (1, 2, A),
        (2, 2, M),
        (3, 2, M),
        (1, 3, M),
        (2, 3, M),
        (3, 3, D),
        (1, 4, D),
        (2, 4, D),
    ]


def test_kubelet_index_scales_to_many_node_watchers() -> None:
    """Each of many node watchers gets only its own node's pods, whether scheduled there
    (ADDED via MODIFIED), updated, or moved away (DELETED)."""
    fan = _native.WatchFanout()
    for n in range(2000):
        fan.add(n, None, "", f"spec.nodeName=node-{n}")
    evs: list[ref.Event] = [
        (M, "default", None, {"spec.nodeName": "node-7"}, None, {"spec.nodeName": ""}),
        (M, "default", None, {"spec.nodeName": "node-9"}, None, {"spec.nodeName": "node-7"}),
        (A, "x", None, {"spec.nodeName": "node-1999"}, None, None),
        (A, "x", None, {"spec.nodeName": "node-2000"}, None, None),
    ]
    assert native_rows(fan, evs) == [(7, 0, A), (7, 1, D), (9, 1, A), (1999, 2, A)]


def test_fanout_payloads_share_lines_and_keep_event_order() -> None:
    fan = _native.WatchFanout()
    fan.add(5, "ns")
    fan.add(6, "ns")
    evs: list[ref.Event] = [
        (A, "ns", None, {"metadata.name": "y"}, None, None),
        (M, "ns", None, {"metadata.name": "x"}, None, {"metadata.name": "y"}),
    ]
    ids, payloads = fan.fanout(evs[:1], [b'{"a":1}'])
    assert ids == [5, 6]
    assert payloads[0] == b'{"type":"ADDED","object":{"a":1}}\n'
    assert payloads[0] is payloads[1]  # encoded once, the same object for every watcher
    ids, payloads = fan.fanout(evs, [b"{}", b"[]"])
    assert payloads == [b'{"type":"ADDED","object":{}}\n{"type":"MODIFIED","object":[]}\n'] * 2
    assert payloads[0] is payloads[1]  # same lines in the same order: joined once, shared
    fan.add(7, "ns", "", "metadata.name=x")  # sees only the second event
    ids, payloads = fan.fanout(evs, [b"{}", b"[]"], [None, None])
    assert ids == [5, 6, 7]
    assert payloads[2] == b'{"type":"ADDED","object":[]}\n'
    for line in payloads[0].splitlines():
        assert set(json.loads(line)) == {"type", "object"}


def test_deleted_from_modified_needs_previous_object() -> None:
    fan = _native.WatchFanout()
    fan.add(1, None, "app=web")
    ev: ref.Event = (M, "ns", {"app": "db"}, None, {"app": "web"}, None)
    with pytest.raises(ValueError, match=r"prev_objects\[0\]"):
        fan.fanout([ev], [b'{"new":1}'])
    ids, payloads = fan.fanout([ev], [b'{"new":1}'], [b'{"old":1}'])
    assert payloads == [b'{"type":"DELETED","object":{"old":1}}\n']
    # a DELETED event uses the object itself
    ids, payloads = fan.fanout([(D, "ns", {"app": "web"}, None, None, None)], [b"{}"])
    assert payloads == [b'{"type":"DELETED","object":{}}\n']


def test_bad_input_is_rejected_with_a_clear_message() -> None:
    fan = _native.WatchFanout()
    fan.add(1, None, "app=web")
    with pytest.raises(ValueError, match="already registered"):
        fan.add(1, None)
    with pytest.raises(ValueError, match="labelSelector"):
        fan.add(2, None, "app in web")
    with pytest.raises(ValueError, match="fieldSelector"):
        fan.add(2, None, "", "spec.nodeName")
    assert len(fan) == 1 and 2 not in fan
    assert not fan.remove(2)
    with pytest.raises(ValueError, match=r"events\[0\]: type must be 0"):
        fan.dispatch([(7, "ns", None, None, None, None)])
    with pytest.raises(TypeError, match=r"events\[1\]: labels must be a dict"):
        fan.dispatch([(A, "ns", None, None, None, None), (A, "ns", {"app": 1}, None, None, None)])
    with pytest.raises(ValueError, match="6 items"):
        fan.dispatch([(A, "ns")])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="objects: expected 1"):
        fan.fanout([(A, "ns", {"app": "web"}, None, None, None)], [])
    with pytest.raises(ValueError, match=r"objects\[0\]"):
        fan.fanout([(A, "ns", {"app": "web"}, None, None, None)], [None])


def test_watch_frames() -> None:
    lines = _native.watch_frames([0, 3, 4], [b"{}", b'{"kind":"Pod"}', b'{"kind":"Status"}'])
    assert lines == [ref.frame(0, b"{}"), ref.frame(3, b'{"kind":"Pod"}'), ref.frame(4, b'{"kind":"Status"}')]
    assert json.loads(lines[2]) == {"type": "ERROR", "object": {"kind": "Status"}}
    with pytest.raises(ValueError, match=r"types\[0\]"):
        _native.watch_frames([5], [b"{}"])


def test_benchmark_workload_small() -> None:
    """The benchmark's path at small scale: 10,000 watchers (kubelets, namespaced label
    selectors, informers), realistic pod events, grouped payloads equal to the reference's."""
    import random

    from benchmarks import watch as bench

    rnd = random.Random(3)
    specs = bench.watchers(rnd)
    evs, objs, prevs = bench.events(12, rnd)
    fan = _native.WatchFanout()
    for wid, ns, lsel, fsel in specs:
        fan.add(wid, ns, lsel, fsel)
    rows = ref.dispatch([ref.Watcher(*s) for s in specs], evs)
    assert native_rows(fan, evs) == rows
    assert len({e for _, e, _ in rows}) == len(evs)  # every event reaches someone (the informers)
    assert fan.fanout(evs, objs, prevs) == ref.group_frames(rows, objs, prevs)
    queues = [[] for _ in specs]
    assert bench.deliver_native(fan, evs, objs, prevs, 5, queues) == len({(w, s // 5) for w, s, _ in rows})
