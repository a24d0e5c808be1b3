"""One behavioural suite for every Store backend (memory, SQLite, real etcd).

Each test works under its own key prefix, so the etcd backend can share one etcd server per
session; revisions are global, so tests only compare revisions relative to each other.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from hyperkube.storage import (
    AlreadyExists,
    Compacted,
    Conflict,
    EventType,
    FutureRevision,
    NotFound,
    WatchOverflow,
)
from tests.integration.storage import fixtures
from tests.integration.storage.fixtures import BACKENDS, StoreFactory

store_factory = fixtures.store_factory  # the parametrized fixture, shared by the storage suites
etcd_server = fixtures.etcd_server

pytestmark = pytest.mark.parametrize("store_factory", BACKENDS, indirect=True)


@pytest.fixture
def prefix() -> str:
    return f"/registry/test-{uuid.uuid4().hex[:8]}/"


async def test_create_get_and_create_exists(store_factory: StoreFactory, prefix: str) -> None:
    s = await store_factory()
    before = await s.current_revision()
    kv = await s.create(prefix + "a", b"one")
    assert kv.mod_revision == kv.create_revision == before + 1
    assert await s.current_revision() == before + 1
    got = await s.get(prefix + "a")
    assert (got.key, got.value, got.create_revision, got.mod_revision) == (
        prefix + "a",
        b"one",
        kv.mod_revision,
        kv.mod_revision,
    )
    with pytest.raises(AlreadyExists):
        await s.create(prefix + "a", b"two")
    # a failed write takes no revision and changes nothing
    assert await s.current_revision() == before + 1
    assert (await s.get(prefix + "a")).value == b"one"
    with pytest.raises(NotFound):
        await s.get(prefix + "missing")


async def test_update_compare_and_swap(store_factory: StoreFactory, prefix: str) -> None:
    s = await store_factory()
    kv = await s.create(prefix + "a", b"v1")
    kv2 = await s.update(prefix + "a", b"v2", expected_mod_revision=kv.mod_revision)
    assert kv2.mod_revision == kv.mod_revision + 1 and kv2.create_revision == kv.create_revision
    with pytest.raises(Conflict) as e:
        await s.update(prefix + "a", b"stale", expected_mod_revision=kv.mod_revision)
    assert e.value.expected == kv.mod_revision and e.value.actual == kv2.mod_revision
    assert (await s.get(prefix + "a")).value == b"v2"
    kv3 = await s.update(prefix + "a", b"v3")  # unconditional
    assert kv3.mod_revision == kv2.mod_revision + 1
    with pytest.raises(NotFound):
        await s.update(prefix + "missing", b"x")
    with pytest.raises(NotFound):
        await s.update(prefix + "missing", b"x", expected_mod_revision=1)


async def test_concurrent_cas_exactly_one_wins(store_factory: StoreFactory, prefix: str) -> None:
    s = await store_factory()
    kv = await s.create(prefix + "c", b"0")
    results = await asyncio.gather(
        *(s.update(prefix + "c", str(i).encode(), expected_mod_revision=kv.mod_revision) for i in range(20)),
        return_exceptions=True,
    )
    wins = [r for r in results if not isinstance(r, BaseException)]
    assert len(wins) == 1
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException))
    assert (await s.get(prefix + "c")).value == wins[0].value


async def test_delete(store_factory: StoreFactory, prefix: str) -> None:
    s = await store_factory()
    with pytest.raises(NotFound):
        await s.delete(prefix + "missing")
    kv = await s.create(prefix + "d", b"val")
    with pytest.raises(Conflict):
        await s.delete(prefix + "d", expected_mod_revision=kv.mod_revision + 100)
    gone = await s.delete(prefix + "d", expected_mod_revision=kv.mod_revision)
    assert gone.value == b"val" and gone.mod_revision == kv.mod_revision + 1
    assert gone.create_revision == kv.create_revision
    with pytest.raises(NotFound):
        await s.get(prefix + "d")
    with pytest.raises(NotFound):
        await s.delete(prefix + "d")
    # the old value is still readable at the old revision; re-creating starts a new life
    assert (await s.get(prefix + "d", revision=kv.mod_revision)).value == b"val"
    again = await s.create(prefix + "d", b"new")
    assert again.create_revision == again.mod_revision > gone.mod_revision


async def test_list_pagination_at_fixed_revision_while_writing(
    store_factory: StoreFactory, prefix: str
) -> None:
    s = await store_factory()
    names = [f"{prefix}k{i:03d}" for i in range(30)]
    for n in names:
        await s.create(n, n.encode())
    await s.create(prefix[:-1] + "-outside", b"not listed")  # shares the text, not the prefix
    snapshot = await s.current_revision()

    stop = asyncio.Event()

    async def churn() -> None:
        i = 0
        while not stop.is_set():
            await s.create(f"{prefix}k{i:03d}-new", b"new")
            await s.update(names[i % 30], b"changed")
            if i % 3 == 0:
                await s.delete(names[(i + 7) % 30])
                await s.create(names[(i + 7) % 30], b"recreated")
            i += 1
            await asyncio.sleep(0)

    writer = asyncio.create_task(churn())
    try:
        first = await s.list(prefix, limit=7)
        got = list(first.items)
        rev = first.revision
        assert first.remaining is not None and first.remaining > 0
        remaining = [(len(got), first.remaining)]
        cont = first.continue_key
        pages = 1
        while cont is not None:
            await asyncio.sleep(0.005)  # let the writer land changes between pages
            page = await s.list(prefix, limit=7, continue_key=cont, revision=rev)
            assert page.revision == rev
            got.extend(page.items)
            remaining.append((len(got), page.remaining))
            cont = page.continue_key
            pages += 1
    finally:
        stop.set()
        await writer
    assert rev >= snapshot
    # the pages together are exactly the state at `rev`: no key twice, none missing
    keys = [kv.key for kv in got]
    assert keys == sorted(set(keys))
    full = await s.list(prefix, revision=rev)
    assert [(kv.key, kv.value, kv.mod_revision) for kv in full.items] == [
        (kv.key, kv.value, kv.mod_revision) for kv in got
    ]
    assert full.continue_key is None
    # each page says how many keys follow it (Kubernetes' remainingItemCount)
    assert remaining == [(n, len(got) - n) for n, _ in remaining]
    assert pages == -(-len(got) // 7)
    if rev == snapshot:
        assert keys == names and all(kv.value == kv.key.encode() for kv in got)
    # and the latest state differs (the writer changed things after the snapshot)
    latest = await s.list(prefix)
    assert latest.revision > rev
    assert [(kv.key, kv.value) for kv in latest.items] != [(kv.key, kv.value) for kv in got]
    with pytest.raises(FutureRevision):
        await s.list(prefix, revision=latest.revision + 1000)
    assert await s.count(prefix) == len(latest.items)


async def test_watch_ordering_fifty_concurrent_writers(store_factory: StoreFactory, prefix: str) -> None:
    s = await store_factory()
    start = await s.current_revision()
    writers, per_writer = 50, 8
    expected = writers * per_writer * 2  # each writer: create + update per key

    async def writer(w: int) -> list[int]:
        revs = []
        for i in range(per_writer):
            kv = await s.create(f"{prefix}w{w}/{i}", b"c")
            revs.append(kv.mod_revision)
            kv = await s.update(f"{prefix}w{w}/{i}", b"u", expected_mod_revision=kv.mod_revision)
            revs.append(kv.mod_revision)
        return revs

    events = []

    async def watcher() -> None:
        async for ev in s.watch(prefix, start):
            events.append(ev)
            if len(events) == expected:
                return

    wtask = asyncio.create_task(watcher())
    acked = await asyncio.gather(*(writer(w) for w in range(writers)))
    await asyncio.wait_for(wtask, 30)
    revs = [e.revision for e in events]
    # no gaps, no duplicates, in order; exactly the acknowledged writes
    assert revs == list(range(start + 1, start + expected + 1))
    assert sorted(r for a in acked for r in a) == revs
    last: dict[str, int] = {}
    for e in events:
        if e.type == EventType.ADDED:
            assert e.key not in last and e.prev_value is None and e.value == b"c"
            assert e.create_revision == e.revision
        else:
            assert e.type == EventType.MODIFIED and e.prev_value == b"c" and e.value == b"u"
            assert e.create_revision == last[e.key]
        last.setdefault(e.key, e.revision)


async def test_watch_from_old_revision_with_prev_values(store_factory: StoreFactory, prefix: str) -> None:
    s = await store_factory()
    a = await s.create(prefix + "a", b"a1")
    await s.create(prefix + "b", b"b1")
    mark = await s.current_revision()
    await s.update(prefix + "a", b"a2")
    await s.create("/registry/elsewhere-" + uuid.uuid4().hex, b"other prefix")
    await s.delete(prefix + "b")
    await s.create(prefix + "c", b"c1")

    got = []

    async def collect() -> None:
        async for ev in s.watch(prefix, mark):
            got.append(ev)
            if len(got) == 4:
                return

    task = asyncio.create_task(collect())
    await asyncio.sleep(0.05)
    live = await s.update(prefix + "c", b"c2")  # delivered live, after the replay
    await asyncio.wait_for(task, 10)
    assert [(e.type, e.key, e.value, e.prev_value) for e in got] == [
        (EventType.MODIFIED, prefix + "a", b"a2", b"a1"),
        (EventType.DELETED, prefix + "b", None, b"b1"),
        (EventType.ADDED, prefix + "c", b"c1", None),
        (EventType.MODIFIED, prefix + "c", b"c2", b"c1"),
    ]
    assert got[0].create_revision == a.create_revision
    assert got[-1].revision == live.mod_revision
    assert all(x.revision < y.revision for x, y in zip(got, got[1:], strict=False))


async def test_compaction(store_factory: StoreFactory, prefix: str) -> None:
    s = await store_factory()
    kv = await s.create(prefix + "a", b"1")
    old = await s.current_revision()
    gone = await s.create(prefix + "gone", b"x")
    await s.delete(prefix + "gone")
    await s.update(prefix + "a", b"2")
    mid = await s.current_revision()
    await s.update(prefix + "a", b"3")
    await s.create(prefix + "b", b"b")
    await s.compact(mid)
    with pytest.raises(Compacted):
        await s.list(prefix, revision=old)
    with pytest.raises(Compacted):
        await s.get(prefix + "a", revision=kv.mod_revision)
    with pytest.raises(Compacted):
        async for _ in s.watch(prefix, old):
            pass
    # the state at the compacted revision and everything after survive
    at_mid = await s.list(prefix, revision=mid)
    assert [(x.key, x.value) for x in at_mid.items] == [(prefix + "a", b"2")]
    latest = await s.list(prefix)
    assert [(x.key, x.value) for x in latest.items] == [(prefix + "a", b"3"), (prefix + "b", b"b")]
    assert (await s.get(prefix + "a")).create_revision == kv.create_revision
    with pytest.raises(NotFound):
        await s.get(prefix + "gone")
    assert gone.mod_revision < mid
    # watching from the compacted revision itself still gives every later event
    evs = []
    async for ev in s.watch(prefix, mid):
        evs.append((ev.key, ev.value, ev.prev_value))
        if len(evs) == 2:
            break
    assert evs == [(prefix + "a", b"3", b"2"), (prefix + "b", b"b", None)]


async def test_slow_watcher_is_ended_with_overflow(store_factory: StoreFactory, prefix: str) -> None:
    s = await store_factory(watch_queue=16)
    start = await s.current_revision()
    seen = []
    it = s.watch(prefix, start).__aiter__()
    await s.create(prefix + "first", b"x")
    seen.append(await asyncio.wait_for(it.__anext__(), 10))  # the watch is live
    # writers are never held up by a watcher that does not read
    await asyncio.gather(*(s.create(f"{prefix}k{i}", b"x") for i in range(200)))
    with pytest.raises(WatchOverflow):
        for _ in range(400):
            seen.append(await asyncio.wait_for(it.__anext__(), 10))
    assert seen[0].key == prefix + "first"
    # fewer than all events were delivered: the watcher did not silently skip, it was ended
    assert len(seen) < 201
    assert await s.count(prefix) == 201
