"""Typed stub of hyperkube._native, the compiled core (Rust crates core/ and ext/)."""

from collections.abc import Iterable, Mapping
from typing import final

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

# --- end sched section --------------------------------------------------------------------

# --- watch fan-out (core/src/watch.rs) ----------------------------------------------------
# (watch section: only the API server work edits between these markers)

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
