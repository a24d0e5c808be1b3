"""Typed stub of hyperkube._native, the compiled core (Rust crates core/ and ext/)."""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, final

import numpy as np
import numpy.typing as npt

__version__: str

_LabelSet = Mapping[str, str] | None

# --- selectors (core/src/selector.rs) ---------------------------------------------------

@final
class Selector:
    """A label selector, parsed from its string form (``app=web,tier in (a,b),!canary``)."""

    def __new__(cls, selector: str = "") -> Selector: ...
    @staticmethod
    def from_label_selector(obj: Mapping[str, object] | None) -> Selector: ...
    @property
    def empty(self) -> bool: ...
    @property
    def matches_nothing(self) -> bool: ...
    @property
    def requirements(self) -> list[tuple[str, str, list[str]]]: ...
    def matches(self, labels: _LabelSet) -> bool: ...
    def match_many(self, label_sets: Iterable[_LabelSet]) -> npt.NDArray[np.bool_]: ...
    def match_table(self, table: LabelTable) -> npt.NDArray[np.bool_]: ...
    def __eq__(self, value: object, /) -> bool: ...

@final
class LabelTable:
    """Many label sets stored as interned ids, matched without touching Python objects."""

    def __new__(cls, label_sets: Iterable[_LabelSet]) -> LabelTable: ...
    def __len__(self) -> int: ...

def parse_field_selector(selector: str) -> list[tuple[str, bool, str]]: ...
def validate_qualified_name(value: str) -> list[str]: ...
def validate_label_value(value: str) -> list[str]: ...
def validate_dns1123_subdomain(value: str) -> list[str]: ...
def validate_dns1123_label(value: str) -> list[str]: ...

# --- scheduler engine (core/src/sched) ----------------------------------------------------
# (sched section: only the scheduler work edits between these markers)

SCORE_PLUGINS: list[str]

@final
class PodBatch:
    """Pod specs (dicts from hyperkube.scheduler.specs.pod_spec) converted once for placement."""

    def __new__(cls, pods: Iterable[Mapping[str, object]]) -> PodBatch: ...
    def __len__(self) -> int: ...

@final
class SchedCluster:
    """The scheduler engine: nodes as columns, placed pods, filters and scores."""

    def __new__(
        cls, profile: Mapping[str, object] | None = None, seed: int | None = None
    ) -> SchedCluster: ...
    def set_profile(self, profile: Mapping[str, object]) -> None: ...
    def seed(self, seed: int) -> None: ...
    def upsert_nodes(self, nodes: Iterable[Mapping[str, object]]) -> None: ...
    def add_nodes_arrays(
        self,
        names: list[str],
        cpu: npt.NDArray[np.int64],
        memory: npt.NDArray[np.int64],
        pods: npt.NDArray[np.int64],
        ephemeral: npt.NDArray[np.int64] | None = None,
    ) -> None: ...
    def remove_node(self, name: str) -> bool: ...
    def add_pods(self, pods: list[tuple[Mapping[str, object], str]]) -> None: ...
    def forget_pod(self, key: str) -> bool: ...
    def pod_node(self, key: str) -> str | None: ...
    def place(
        self, pods: PodBatch | Iterable[Mapping[str, object]], assume: bool = True, tie_break: str = "random"
    ) -> tuple[list[str | None], list[str | None]]: ...
    def scores(self, pod: Mapping[str, object]) -> dict[str, Any]: ...
    def node_names(self) -> list[str]: ...
    def columns(self) -> dict[str, npt.NDArray[np.int64]]: ...
    @property
    def num_nodes(self) -> int: ...
    @property
    def num_pods(self) -> int: ...

# --- end sched section --------------------------------------------------------------------

# --- watch fan-out (core/src/watch.rs) ----------------------------------------------------
# (watch section: only the watch work edits between these markers)

# (type, namespace, labels, fields, prev_labels, prev_fields); type 0=ADDED 1=MODIFIED 2=DELETED
_WatchEvent = tuple[int, str | None, _LabelSet, Mapping[str, str] | None, _LabelSet, Mapping[str, str] | None]
_Rows = tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.int8]]

@final
class WatchFanout:
    """The watchers of one resource's watch cache, and the dispatcher of its events.

    Semantics are upstream's cacher (cache_watcher.go, convertToWatchEvent). Per watcher and
    event: ADDED and DELETED go to watchers whose namespace and selectors match the object (for
    DELETED: its last state, given as ``labels``/``fields``). A MODIFIED event becomes MODIFIED
    when the new and previous states both match, ADDED when only the new one does, DELETED when
    only the previous one does (upstream sends the previous object with the event's
    resourceVersion), and nothing when neither does.

    Events are tuples ``(type, namespace, labels, fields, prev_labels, prev_fields)``:
    ``namespace`` is None or "" for cluster-scoped objects; ``labels`` is the object's
    ``metadata.labels`` (None = no labels); ``fields`` maps field paths to string values
    (``metadata.name``, ``metadata.namespace``, ``spec.nodeName``, ``status.phase``, ...; a field
    absent from it reads as "", as upstream's fields.Set does). ``prev_labels``/``prev_fields``
    are the previous state of a MODIFIED object and are ignored for ADDED and DELETED.

    Watchers are indexed by namespace and by one exact-match requirement (a field equality
    such as ``spec.nodeName=node-7`` first, else a label ``=`` or ``in``), so an event is tested
    only against the watchers that can match it, plus those with no exact-match requirement.
    Matching runs with the GIL released. Not for concurrent use from several threads.

    Use in a watch cache: register each watcher (``add``) when it attaches and ``remove`` it when
    it goes; for every batch of store events (one or many) call ``fanout(events, objects,
    prev_objects)`` and hand each ``payload`` to its watcher's writer, one write per watcher per
    batch. To replay the cache window to a new watcher, use a WatchFanout holding only it.
    """

    def __new__(cls) -> WatchFanout: ...
    def add(
        self,
        watcher_id: int,
        namespace: str | None = None,
        label_selector: str = "",
        field_selector: str = "",
    ) -> None:
        """Register a watcher. ``namespace`` None or "" (upstream's NamespaceAll) watches every
        namespace. Selectors are the string forms of the labelSelector and fieldSelector query
        parameters. Raises ValueError for an id already registered or a selector that does not
        parse (the message says which selector and why). Whether a field is supported for the
        resource is the caller's check.
        """
    def remove(self, watcher_id: int) -> bool:
        """Unregister a watcher; False when it was not registered."""
    def __len__(self) -> int: ...
    def __contains__(self, watcher_id: int, /) -> bool: ...
    def dispatch(self, events: Iterable[_WatchEvent]) -> _Rows:
        """Match a batch of events; returns ``(watcher_ids, event_index, event_type)``, one row
        per delivery, ordered by event then watcher id (so each watcher's events stay in order).
        ``event_type`` is what the watcher is sent: 0 ADDED, 1 MODIFIED, 2 DELETED."""
    def fanout(
        self,
        events: Sequence[_WatchEvent],
        objects: Sequence[bytes | None],
        prev_objects: Sequence[bytes | None] | None = None,
    ) -> tuple[list[int], list[bytes]]:
        """``dispatch`` then ``group_frames`` in one call: ``(watcher_ids, payloads)``, one
        payload per watcher that gets anything. ``objects[i]`` is event i's object as JSON;
        ``prev_objects[i]`` the previous object's JSON (with event i's resourceVersion), needed
        only when a MODIFIED event yields a DELETED row (else ValueError). To encode previous
        objects only when needed, call ``dispatch``, encode the previous object of the events
        ``event_index[(event_type == 2) & (kinds[event_index] == 1)]`` (``kinds``: the events'
        own types as an array), then call ``group_frames``.
        """

def group_frames(
    watcher_ids: npt.NDArray[np.int64],
    event_index: npt.NDArray[np.int32],
    event_type: npt.NDArray[np.int8],
    objects: Sequence[bytes | None],
    prev_objects: Sequence[bytes | None] | None = None,
) -> tuple[list[int], list[bytes]]:
    """Turn dispatch rows into one payload per watcher: ``(watcher_ids ascending, payloads)``.

    Each (event, type) line ``{"type":"MODIFIED","object":<objects[i]>}\\n`` is framed once. A
    watcher that gets one line receives that shared bytes object; one that gets several
    receives their concatenation in event order (joined once and shared by every watcher with
    the same lines), so the caller does one write per watcher per batch. A DELETED row takes ``prev_objects[i]`` when given and not None, else
    ``objects[i]``. A None object that some row needs raises ValueError.
    """

def watch_frames(types: Sequence[int], objects: Iterable[bytes]) -> list[bytes]:
    """Frame one watch line per (type, object JSON): ``{"type":"<TYPE>","object":<obj>}\\n``
    with type 0 ADDED, 1 MODIFIED, 2 DELETED, 3 BOOKMARK, 4 ERROR."""

# --- end watch section --------------------------------------------------------------------

# --- proxy rule generation (core/src/proxy.rs) --------------------------------------------
# (proxy section: only the proxy work edits between these markers)

@final
class NftablesState:
    """The nftables table contents after a sync (elements and load-balancing chains)."""

    def __len__(self) -> int: ...
    @property
    def chains(self) -> list[str]: ...
    def elements(self, name: str) -> dict[str, str]: ...

def proxy_render_iptables(
    model: dict[str, object],
    *,
    cluster_cidr: str | None = None,
    node_ip: str | None = None,
    masquerade_all: bool = False,
    changed: list[bool] | None = None,
    existing_chains: list[str] = ...,
) -> tuple[bytes, list[str], dict[str, int]]: ...
def proxy_render_nftables(
    model: dict[str, object],
    *,
    cluster_cidr: str | None = None,
    node_ip: str | None = None,
    masquerade_all: bool = False,
    previous: NftablesState | None = None,
) -> tuple[bytes, NftablesState, dict[str, int]]: ...

@final
class ProxyTable:
    """The proxy's persistent service table: rows upserted per changed service, O(changes) syncs."""

    def __new__(
        cls,
        mode: str,
        *,
        cluster_cidr: str | None = None,
        node_ip: str | None = None,
        masquerade_all: bool = False,
    ) -> ProxyTable: ...
    def __len__(self) -> int: ...
    def update(self, model: dict[str, object], removed: list[tuple[str, int]] = ...) -> None: ...
    def replace(self, model: dict[str, object]) -> None: ...
    def render(
        self, full: bool = False, existing_chains: list[str] = ...
    ) -> tuple[bytes, dict[str, int]]: ...
    def commit(self) -> None: ...
    def invalidate(self) -> None: ...
    @property
    def active_chains(self) -> list[str]: ...

def proxy_service_chain_name(name: str, protocol: str) -> str: ...
def proxy_endpoint_chain_name(name: str, protocol: str, endpoint: str) -> str: ...

# --- end proxy section --------------------------------------------------------------------
