"""Reference watch fan-out: the semantics of `hyperkube._native.WatchFanout` in plain Python.

Upstream's cacher (`cache_watcher.go`, `convertToWatchEvent`) decides per watcher and event:
ADDED and DELETED events go to watchers whose namespace and selectors match the object (for
DELETED, its last state); a MODIFIED event is MODIFIED when both the new and previous state
match, ADDED when only the new one does, DELETED (with the previous object) when only the
previous one does. A watcher's namespace None or "" (NamespaceAll) means every namespace.
Fields absent from an event's field set read as "" (upstream's fields.Set). No index: every watcher is tested against every event. Rows are ordered by event, then watcher.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tests.reference import selector as ref_selector

ADDED, MODIFIED, DELETED, BOOKMARK, ERROR = 0, 1, 2, 3, 4
TYPE_NAMES = ("ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR")

# (type, namespace, labels, fields, prev_labels, prev_fields)
Event = tuple[
    int,
    str | None,
    Mapping[str, str] | None,
    Mapping[str, str] | None,
    Mapping[str, str] | None,
    Mapping[str, str] | None,
]


def parse_field_selector(s: str) -> list[tuple[str, bool, str]]:
    """fields.ParseSelector for selectors without escapes: `f=v`, `f==v`, `f!=v`, comma-joined."""
    out = []
    for part in s.split(","):
        if not part:
            continue
        for op, neg in (("!=", True), ("==", False), ("=", False)):
            if op in part:
                f, v = part.split(op, 1)
                out.append((f, neg, v))
                break
        else:
            raise ValueError(f"invalid selector: {s!r}; can't understand {part!r}")
    return out


@dataclass
class Watcher:
    id: int
    namespace: str | None
    label_selector: str = ""
    field_selector: str = ""
    labels: list[ref_selector.Req] = field(init=False)
    fields: list[tuple[str, bool, str]] = field(init=False)

    def __post_init__(self) -> None:
        self.labels = ref_selector.parse(self.label_selector)
        self.fields = parse_field_selector(self.field_selector)

    def matches(self, labels: Mapping[str, str] | None, fields: Mapping[str, str] | None) -> bool:
        fields = fields or {}
        if not all((fields.get(f, "") == v) != neg for f, neg, v in self.fields):
            return False
        return ref_selector.matches(self.labels, dict(labels or {}))

    def outcome(self, ev: Event) -> int | None:
        kind, ns, labels, fields, prev_labels, prev_fields = ev
        if self.namespace and self.namespace != (ns or ""):
            return None
        if kind != MODIFIED:
            return kind if self.matches(labels, fields) else None
        cur = self.matches(labels, fields)
        prev = self.matches(prev_labels, prev_fields)
        if cur and prev:
            return MODIFIED
        if cur:
            return ADDED
        if prev:
            return DELETED
        return None


def dispatch(watchers: Sequence[Watcher], events: Sequence[Event]) -> list[tuple[int, int, int]]:
    """(watcher id, event index, type) rows, ordered by event then watcher id."""
    ordered = sorted(watchers, key=lambda w: w.id)
    rows = []
    for e, ev in enumerate(events):
        for w in ordered:
            t = w.outcome(ev)
            if t is not None:
                rows.append((w.id, e, t))
    return rows


def frame(kind: int, obj: bytes) -> bytes:
    return b'{"type":"' + TYPE_NAMES[kind].encode() + b'","object":' + obj + b"}\n"


def group_frames(
    rows: Sequence[tuple[int, int, int]],
    objects: Sequence[bytes | None],
    prev_objects: Sequence[bytes | None] | None = None,
) -> tuple[list[int], list[bytes]]:
    """Per watcher (ascending id), its lines in event order joined; each line framed once.
    A DELETED row takes prev_objects[e] when given and not None, else objects[e]."""
    lines: dict[tuple[int, int], bytes] = {}
    per: dict[int, list[bytes]] = {}
    for w, e, t in rows:
        line = lines.get((e, t))
        if line is None:
            obj = prev_objects[e] if t == DELETED and prev_objects is not None else None
            if obj is None:
                obj = objects[e]
            assert obj is not None
            line = lines[(e, t)] = frame(t, obj)
        per.setdefault(w, []).append(line)
    ids = sorted(per)
    return ids, [b"".join(per[w]) for w in ids]
