"""The watch cache replays its window to a new watcher with the plain-Python fan-out
(hyperkube.apiserver.fanout.PyFanout) and serves live events with the native WatchFanout: both
must send every watcher the same event types."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hyperkube import _native
from hyperkube.apiserver.fanout import PyFanout

NAMES = ["ADDED", "MODIFIED", "DELETED"]
labels = st.one_of(
    st.none(),
    st.dictionaries(st.sampled_from(["app", "tier", "x"]), st.sampled_from(["a", "b", "c"]), max_size=3),
)
fieldsets = st.fixed_dictionaries(
    {"metadata.name": st.sampled_from(["p1", "p2"]), "spec.nodeName": st.sampled_from(["", "n1", "n2"])}
)
watcher = st.tuples(
    st.sampled_from(["", "ns1", "ns2"]),
    st.sampled_from(["", "app=a", "app in (a,b),!x", "tier!=c", "x"]),
    st.sampled_from(["", "spec.nodeName=n1", "metadata.name!=p2", "spec.nodeName="]),
)
event = st.tuples(st.integers(0, 2), st.sampled_from(["ns1", "ns2"]), labels, fieldsets, labels, fieldsets)


@settings(max_examples=150, deadline=None)
@given(st.lists(watcher, min_size=1, max_size=8), st.lists(event, min_size=1, max_size=10))
def test_python_and_native_fanout_agree(watchers: list[tuple[str, str, str]], events: list[tuple]) -> None:
    native = _native.WatchFanout()
    py = PyFanout()
    for i, (ns, lsel, fsel) in enumerate(watchers):
        native.add(i, ns or None, lsel, fsel)
        py.add(i, i, ns, lsel, fsel)
    wids, idx, types = native.dispatch(events)
    got = sorted(zip(idx.tolist(), wids.tolist(), [NAMES[t] for t in types.tolist()], strict=True))
    want = []
    for k, (t, ns, lab, flds, plab, pflds) in enumerate(events):
        prev_l, prev_f = (plab or {}, pflds) if t == 1 else (None, None)
        for etype, targets in py.dispatch(NAMES[t], ns, lab, flds, prev_l, prev_f):
            want += [(k, w, etype) for w in targets]
    assert got == sorted(want)
