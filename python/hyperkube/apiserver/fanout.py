"""Watch fan-out: which watchers get an event, and as which event type.

A watcher has a namespace (or all), a label selector and field requirements. For an event
(new object, previous object) each watcher sees:

- ``MODIFIED``/``ADDED``/``DELETED`` as stored, when both the new and the old object pass
  (or, for ADDED/DELETED, the one object there is);
- ``ADDED`` when the object newly passes the filters (it moved into the selection);
- ``DELETED`` when it no longer passes (it moved out), carrying the previous object.

This is the step the compiled ``watch`` module does in bulk; :class:`PyFanout` is the plain-Python
implementation with the same interface. Watchers with the same filters are grouped, so the
filters run once per distinct (namespace, labels, fields) and not once per watcher.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hyperkube import _native
from hyperkube.api import fields as _fields

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"


@dataclass
class FilterGroup:
    namespace: str
    label_selector: str
    field_selector: str
    selector: Any
    field_reqs: list[tuple[str, bool, str]]
    members: dict[int, Any] = field(default_factory=dict)


class PyFanout:
    def __init__(self) -> None:
        self.groups: dict[tuple[str, str, str], FilterGroup] = {}
        self.by_id: dict[int, tuple[str, str, str]] = {}

    def __len__(self) -> int:
        return len(self.by_id)

    def add(self, wid: int, target: Any, namespace: str, label_selector: str, field_selector: str) -> None:
        key = (namespace, label_selector, field_selector)
        g = self.groups.get(key)
        if g is None:
            g = FilterGroup(
                namespace,
                label_selector,
                field_selector,
                _native.Selector(label_selector) if label_selector else None,
                _native.parse_field_selector(field_selector) if field_selector else [],
            )
            self.groups[key] = g
        g.members[wid] = target
        self.by_id[wid] = key

    def remove(self, wid: int) -> None:
        key = self.by_id.pop(wid, None)
        if key is None:
            return
        g = self.groups[key]
        g.members.pop(wid, None)
        if not g.members:
            del self.groups[key]

    def passes(self, g: FilterGroup, ns: str, labels: Any, fieldset: dict[str, str] | None) -> bool:
        if g.namespace and g.namespace != ns:
            return False
        if g.selector is not None and not g.selector.matches(labels or {}):
            return False
        if g.field_reqs and not _fields.matches(g.field_reqs, fieldset or {}):
            return False
        return True

    def dispatch(
        self,
        etype: str,
        ns: str,
        labels: Any,
        fieldset: dict[str, str] | None,
        prev_labels: Any,
        prev_fields: dict[str, str] | None,
    ) -> list[tuple[str, list[Any]]]:
        """[(event type, [targets])] for one event."""
        out: list[tuple[str, list[Any]]] = []
        for g in self.groups.values():
            if etype == ADDED:
                t = ADDED if self.passes(g, ns, labels, fieldset) else None
            elif etype == DELETED:  # the deleted object is the event's object
                t = DELETED if self.passes(g, ns, labels, fieldset) else None
            else:
                cur = self.passes(g, ns, labels, fieldset)
                old = (
                    self.passes(g, ns, prev_labels, prev_fields)
                    if prev_labels is not None or prev_fields is not None
                    else cur
                )
                t = MODIFIED if cur and old else ADDED if cur else DELETED if old else None
            if t is not None:
                out.append((t, list(g.members.values())))
        return out
