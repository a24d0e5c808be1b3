"""Random operation sequences: the SQLite store must agree with the in-memory reference store on
every result, every error, every read in the past and the watch history."""

from __future__ import annotations

import asyncio
import tempfile
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hyperkube.storage import MemoryStore, StorageError, Store
from hyperkube.storage.sqlite import SQLiteStore

KEYS = ["/registry/pods/a", "/registry/pods/b", "/registry/podsx/a", "/registry/svc/a"]

REV = st.one_of(st.just(0), st.integers(0, 40))  # 0: latest; else a revision resolved at run time

op = st.one_of(
    st.tuples(st.just("create"), st.sampled_from(KEYS), st.binary(max_size=8)),
    st.tuples(
        st.just("update"),
        st.sampled_from(KEYS),
        st.binary(max_size=8),
        st.sampled_from(["none", "cur", "stale"]),
    ),
    st.tuples(st.just("delete"), st.sampled_from(KEYS), st.sampled_from(["none", "cur", "stale"])),
    st.tuples(st.just("get"), st.sampled_from(KEYS), REV),
    st.tuples(
        st.just("list"),
        st.sampled_from(["/registry/", "/registry/pods", "/registry/pods/", "/registry/svc/", "/x"]),
        st.integers(0, 4),
        REV,
    ),
    st.tuples(st.just("compact"), st.integers(1, 40)),
)


def outcome(fn: Any) -> Any:
    async def run() -> Any:
        try:
            r = await fn()
        except StorageError as e:
            return ("error", type(e).__name__)
        return ("ok", r)

    return run()


async def apply(s: Store, ops: list[tuple[Any, ...]]) -> list[Any]:
    """Run ops; revisions in ops are resolved against the store's current revision (mostly
    valid past revisions, 0 = latest), and CAS "cur"/"stale" against the key's state."""
    out = []
    for o in ops:
        kind = o[0]
        current = await s.current_revision()
        expected: int | None = None
        if kind in ("update", "delete"):
            mode = o[-1]
            try:
                cur = (await s.get(o[1])).mod_revision
            except StorageError:
                cur = 1
            expected = None if mode == "none" else cur if mode == "cur" else cur + 1000
        if kind == "create":
            out.append(await outcome(lambda o=o: s.create(o[1], o[2])))
        elif kind == "update":
            out.append(await outcome(lambda o=o, e=expected: s.update(o[1], o[2], e)))
        elif kind == "delete":
            out.append(await outcome(lambda o=o, e=expected: s.delete(o[1], e)))
        elif kind == "get":
            rev = o[2] % (current + 2)  # current + 1: a future revision
            out.append(await outcome(lambda o=o, r=rev: s.get(o[1], r or None)))
        elif kind == "list":
            rev = o[3] % (current + 2)
            out.append(await outcome(lambda o=o, r=rev: s.list(o[1], limit=o[2], revision=r or None)))
            if o[2]:  # and the next page, at the same revision
                res = out[-1]
                if res[0] == "ok" and res[1].continue_key:
                    out.append(
                        await outcome(
                            lambda o=o, c=res[1].continue_key, r=res[1].revision: s.list(
                                o[1], limit=o[2], continue_key=c, revision=r
                            )
                        )
                    )
        else:
            out.append(await outcome(lambda o=o, c=current: s.compact(1 + o[1] % max(c, 1))))
    return out


async def history(s: Store) -> Any:
    rev = await s.current_revision()
    events = []
    for start in range(0, rev + 1):  # the first revision the store still has history from
        try:
            it = s.watch("/registry/", start).__aiter__()
            while len(events) < rev - start:
                events.append(await asyncio.wait_for(it.__anext__(), 10))
            await it.aclose()
            return start, events
        except StorageError:
            events = []
    raise AssertionError("no watch start accepted")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, min_size=8, max_size=60))
def test_sqlite_agrees_with_the_reference(ops: list[tuple[Any, ...]]) -> None:
    async def go() -> None:
        with tempfile.TemporaryDirectory(prefix="hk-storage-model-") as d:
            ref = MemoryStore()
            await ref.start()
            sq = SQLiteStore(f"{d}/state.db", compact_interval=0)
            await sq.start()
            try:
                a = await apply(ref, ops)
                b = await apply(sq, ops)
                assert a == b
                assert await ref.current_revision() == await sq.current_revision()
                assert await history(ref) == await history(sq)
            finally:
                await sq.close()

    asyncio.run(go())
