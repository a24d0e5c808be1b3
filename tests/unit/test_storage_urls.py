"""open_store(url): which backend each URL picks, its options, and clear errors for bad URLs."""

from __future__ import annotations

import pytest

from hyperkube.storage import MemoryStore, Store, open_store
from hyperkube.storage.etcd import EtcdStore, _range_end
from hyperkube.storage.sqlite import SQLiteStore


def test_memory_and_sqlite_urls() -> None:
    m = open_store("memory://?watch_queue=7")
    assert isinstance(m, MemoryStore) and isinstance(m, Store) and m._watch_queue == 7
    s = open_store("sqlite:///var/lib/hk/state.db?sync=normal&history=60")
    assert isinstance(s, SQLiteStore) and isinstance(s, Store)
    assert (s.path, s._sync, s._history) == ("/var/lib/hk/state.db", "NORMAL", 60.0)


def test_etcd_urls() -> None:
    e = open_store("etcd://10.0.0.1:2379,10.0.0.2:2379")
    assert isinstance(e, EtcdStore) and isinstance(e, Store)
    assert e.endpoints == ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
    t = open_store("etcds://h:2379?ca=/p/ca.crt&cert=/p/c.crt&key=/p/c.key")
    assert isinstance(t, EtcdStore)
    assert t.endpoints == ["https://h:2379"] and (t._ca, t._cert, t._key) == (
        "/p/ca.crt",
        "/p/c.crt",
        "/p/c.key",
    )
    k = open_store("etcd://h:2379", ca="/ca.crt")
    assert isinstance(k, EtcdStore) and k.endpoints == ["https://h:2379"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite://relative/state.db", "three slashes"),
        ("sqlite:relative.db", "three slashes"),
        ("etcd://", "host:port"),
        ("postgres://db/x", "unsupported storage URL"),
        ("sqlite:///x.db?sync=sometimes", "sync must be"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_store(url)


def test_etcd_prefix_range_end() -> None:
    assert _range_end(b"/registry/pods/") == b"/registry/pods0"
    assert _range_end(b"a\xff") == b"b"
    assert _range_end(b"") == b"\x00"
