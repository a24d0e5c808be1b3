"""The informer's local cache: objects by key, plus secondary indexes (client-go's ``Indexer``).

Keys are ``namespace/name`` (``name`` for cluster-scoped objects), as ``MetaNamespaceKeyFunc``.
Index functions map an object to zero or more index values; ``by_index(name, value)`` returns the
objects filed under a value in O(result). ``namespace`` is always indexed; helpers build the usual
others (``index_by_field("spec.nodeName")``, ``index_by_owner_uid``, ``index_by_label``).

Every method is synchronous and never awaits, so within one asyncio loop each mutation is atomic:
a reader can never see an object in the main map but missing from an index. Objects are stored as
received and must be treated as read-only by readers (copy before modifying), as in client-go.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

Obj = dict[str, Any]
IndexFunc = Callable[[Obj], Iterable[str]]


def meta_namespace_key(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name', '')}" if ns else meta.get("name", "")


def split_key(key: str) -> tuple[str | None, str]:
    ns, sep, name = key.partition("/")
    return (ns, name) if sep else (None, key)


def index_by_namespace(obj: Obj) -> list[str]:
    ns = (obj.get("metadata") or {}).get("namespace")
    return [ns] if ns else []


def index_by_field(path: str) -> IndexFunc:
    """Index on a dotted field path, e.g. ``spec.nodeName`` (empty/missing values are not indexed)."""
    parts = path.split(".")

    def f(obj: Obj) -> list[str]:
        v: Any = obj
        for p in parts:
            if not isinstance(v, dict):
                return []
            v = v.get(p)
        return [str(v)] if v not in (None, "") else []

    return f


def index_by_owner_uid(obj: Obj) -> list[str]:
    return [r["uid"] for r in (obj.get("metadata") or {}).get("ownerReferences") or () if r.get("uid")]


def index_by_controller_uid(obj: Obj) -> list[str]:
    for r in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if r.get("controller") and r.get("uid"):
            return [r["uid"]]
    return []


def index_by_label(key: str) -> IndexFunc:
    def f(obj: Obj) -> list[str]:
        v = ((obj.get("metadata") or {}).get("labels") or {}).get(key)
        return [v] if v is not None else []

    return f


class Store:
    """Key → object map with indexes."""

    def __init__(
        self,
        key_func: Callable[[Obj], str] = meta_namespace_key,
        indexers: dict[str, IndexFunc] | None = None,
    ):
        self.key_func = key_func
        self._items: dict[str, Obj] = {}
        self._indexers: dict[str, IndexFunc] = {"namespace": index_by_namespace}
        self._indices: dict[str, dict[str, set[str]]] = {"namespace": {}}
        if indexers:
            self.add_indexers(indexers)

    # -- indexes ----------------------------------------------------------------------------

    def add_indexers(self, indexers: dict[str, IndexFunc]) -> None:
        for name, fn in indexers.items():
            if name in self._indexers:
                if self._indexers[name] is fn:
                    continue
                raise ValueError(f"indexer {name!r} already exists")
            self._indexers[name] = fn
            idx: dict[str, set[str]] = {}
            for key, obj in self._items.items():
                for v in fn(obj):
                    idx.setdefault(v, set()).add(key)
            self._indices[name] = idx

    def _index(self, key: str, old: Obj | None, new: Obj | None) -> None:
        for name, fn in self._indexers.items():
            idx = self._indices[name]
            old_vals = set(fn(old)) if old is not None else set()
            new_vals = set(fn(new)) if new is not None else set()
            if old_vals == new_vals:
                continue
            for v in old_vals - new_vals:
                s = idx.get(v)
                if s is not None:
                    s.discard(key)
                    if not s:
                        del idx[v]
            for v in new_vals - old_vals:
                idx.setdefault(v, set()).add(key)

    # -- mutation -----------------------------------------------------------------------------

    def add(self, obj: Obj) -> Obj | None:
        """Insert or replace; returns the previous object under the key (or None)."""
        key = self.key_func(obj)
        old = self._items.get(key)
        self._items[key] = obj
        self._index(key, old, obj)
        return old

    update = add

    def delete(self, obj: Obj) -> Obj | None:
        return self.delete_key(self.key_func(obj))

    def delete_key(self, key: str) -> Obj | None:
        old = self._items.pop(key, None)
        if old is not None:
            self._index(key, old, None)
        return old

    def replace(self, objs: Iterable[Obj]) -> None:
        self._items = {}
        self._indices = {name: {} for name in self._indexers}
        for obj in objs:
            self.add(obj)

    # -- reads ----------------------------------------------------------------------------------

    def get(self, key: str) -> Obj | None:
        return self._items.get(key)

    def get_by_name(self, name: str, namespace: str | None = None) -> Obj | None:
        return self._items.get(f"{namespace}/{name}" if namespace else name)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> list[str]:
        return list(self._items)

    def list(self, namespace: str | None = None) -> list[Obj]:
        if namespace is None:
            return list(self._items.values())
        return self.by_index("namespace", namespace)

    def by_index(self, index: str, value: str) -> list[Obj]:
        try:
            keys = self._indices[index].get(value, ())
        except KeyError:
            raise KeyError(f"no index named {index!r}") from None
        items = self._items
        return [items[k] for k in keys]

    def index_keys(self, index: str, value: str) -> list[str]:
        return list(self._indices[index].get(value, ()))

    def index_values(self, index: str) -> list[str]:
        return list(self._indices[index])
