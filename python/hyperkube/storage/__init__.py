"""hyperkube.storage: revisioned key-value stores with watch, behind one protocol.

``open_store(url)`` picks the backend from a URL:

- ``memory://``: in-process, nothing persisted (tests);
- ``sqlite:///abs/path/state.db``: the embedded default (group commit, WAL, in-process watch);
  query options: ``sync=full|normal``, ``watch_queue=N``, ``history=SECONDS``;
- ``etcd://host:port[,host:port...]``: a real etcd v3 cluster over its JSON gateway (HTTP);
  ``etcds://`` for HTTPS, with ``ca``, ``cert`` and ``key`` given as keyword arguments or URL
  query parameters (``etcds://h:2379?ca=/p/ca.crt&cert=/p/c.crt&key=/p/c.key``).

The returned store is not started: ``await store.start()`` (or ``async with open_store(url) as s``).
Values are bytes; :mod:`hyperkube.storage.codec` encodes objects with msgpack.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .interface import (
    AlreadyExists,
    Compacted,
    Conflict,
    Corrupt,
    Event,
    EventType,
    FutureRevision,
    KeyValue,
    ListResult,
    NotFound,
    StorageError,
    Store,
    WatchOverflow,
)
from .memory import MemoryStore

__all__ = [
    "AlreadyExists",
    "Compacted",
    "Conflict",
    "Corrupt",
    "Event",
    "EventType",
    "FutureRevision",
    "KeyValue",
    "ListResult",
    "MemoryStore",
    "NotFound",
    "StorageError",
    "Store",
    "WatchOverflow",
    "open_store",
]

_INT_OPTIONS = {"watch_queue", "history", "compact_interval"}


def _options(query: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    for k, v in parse_qsl(query, keep_blank_values=True):
        k = k.replace("-", "_")
        opts[k] = int(v) if k in _INT_OPTIONS else v
    opts.update(kwargs)
    return opts


def open_store(url: str, **kwargs: Any) -> Store:
    """Return an (unstarted) store for `url`; raises ValueError with the accepted forms."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    opts = _options(parts.query, kwargs)
    if scheme == "memory":
        return MemoryStore(**opts)
    if scheme == "sqlite":
        path = unquote(parts.path)
        if parts.netloc or not path.startswith("/"):
            raise ValueError(
                f"invalid sqlite storage URL {url!r}: use sqlite:///absolute/path/state.db (three slashes)"
            )
        from .sqlite import SQLiteStore

        return SQLiteStore(path, **opts)
    if scheme in ("etcd", "etcds", "etcd+https", "etcd+http"):
        hosts = [h.strip() for h in parts.netloc.split(",") if h.strip()]
        if not hosts:
            raise ValueError(f"invalid etcd storage URL {url!r}: use etcd://host:port[,host:port...]")
        tls = scheme in ("etcds", "etcd+https") or any(opts.get(k) for k in ("ca", "cert", "key"))
        endpoints = [f"{'https' if tls else 'http'}://{h}" for h in hosts]
        from .etcd import EtcdStore

        return EtcdStore(endpoints, **opts)
    raise ValueError(
        f"unsupported storage URL {url!r}: use memory://, sqlite:///abs/path.db or etcd://host:port[,host:port]"
    )
