"""SQLite-only behaviour: durability across kill -9, damage detected at start, the single-writer
lock, periodic compaction, and read-only opens (another process's database)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from hyperkube.storage import Compacted, Corrupt, StorageError, open_store
from hyperkube.storage.sqlite import SQLiteStore

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("sync", ["full", "normal"])
def test_acknowledged_writes_survive_kill_9(tmp_path: Path, sync: str) -> None:
    """WAL + synchronous=FULL fsyncs each group commit; NORMAL leaves the WAL in the page cache,
    which survives the death of the process (not of the machine). Both must keep every
    acknowledged write across kill -9, and a torn frame at the WAL's end must be ignored."""
    db = tmp_path / "state.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python") + os.pathsep + str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.storage.sqlite_writer", str(db), sync],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    acked: list[str] = []
    try:
        assert child.stdout is not None
        while len(acked) < 3000:
            line = child.stdout.readline()
            assert line, f"writer exited early with {child.poll()}"
            acked.append(line.decode().strip())
        os.kill(child.pid, signal.SIGKILL)  # mid-load: 50 writers have creates in flight
        acked.extend(x.decode().strip() for x in child.stdout.read().splitlines())
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    wal = tmp_path / "state.db-wal"
    assert wal.exists() and wal.stat().st_size > 0  # the commits are still in the WAL
    with open(wal, "ab") as f:  # a frame torn by the crash: its checksum cannot match
        f.write(os.urandom(3000))

    async def check() -> None:
        async with SQLiteStore(str(db)) as s:  # passes the integrity check at start
            listed = await s.list("/registry/load/")
            present = {kv.key: kv.value for kv in listed.items}
            missing = [k for k in acked if k not in present]
            assert not missing, f"{len(missing)} acknowledged keys lost, e.g. {missing[:3]}"
            assert all(present[k] == k.encode() * 4 for k in acked)
            # revisions are dense and the store keeps counting from where it was killed
            assert await s.current_revision() == len(present)
            kv = await s.create("/registry/after", b"x")
            assert kv.mod_revision == len(present) + 1

    asyncio.run(check())


async def _fill(path: Path, n: int = 3000) -> None:
    async with SQLiteStore(str(path)) as s:
        await asyncio.gather(*(s.create(f"/registry/pods/ns/p{i:05d}", os.urandom(300)) for i in range(n)))


def _start(path: Path) -> None:
    async def go() -> None:
        s = SQLiteStore(str(path))
        await s.start()
        await s.close()

    asyncio.run(go())


def test_garbage_file_is_corrupt(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    db.write_bytes(os.urandom(64 * 1024))
    with pytest.raises(Corrupt, match="not a SQLite database"):
        _start(db)
    assert db.stat().st_size == 64 * 1024  # left untouched for inspection


def test_truncated_file_is_corrupt(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    asyncio.run(_fill(db))
    assert not (tmp_path / "state.db-wal").exists() or (tmp_path / "state.db-wal").stat().st_size == 0
    size = db.stat().st_size
    with open(db, "r+b") as f:
        f.truncate(size // 2)  # a torn copy / partial write of the file
    with pytest.raises(Corrupt, match="state.db"):
        _start(db)


def test_garbage_pages_are_corrupt(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    asyncio.run(_fill(db))
    size = db.stat().st_size
    with open(db, "r+b") as f:
        f.seek(size // 3)
        f.write(os.urandom(16 * 4096))
    with pytest.raises(Corrupt, match="integrity check|damaged"):
        _start(db)


def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT)")
    conn.execute("INSERT INTO meta VALUES ('app', 'something-else')")
    conn.commit()
    conn.close()
    with pytest.raises(Corrupt, match="not a hyperkube store"):
        _start(db)


async def test_second_writer_is_refused_and_readonly_sees_writes(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    async with SQLiteStore(str(db)) as s:
        await s.create("/registry/a", b"1")
        with pytest.raises(StorageError, match="in use by another process"):
            await SQLiteStore(str(db)).start()
        ro = open_store(f"sqlite://{db}?readonly=1")
        await ro.start()
        try:
            assert (await ro.get("/registry/a")).value == b"1"
            with pytest.raises(StorageError, match="read-only"):
                await ro.create("/registry/b", b"2")
            seen = ro.watch("/registry/", 0).__aiter__()
            assert (await asyncio.wait_for(seen.__anext__(), 10)).key == "/registry/a"
            await s.create("/registry/b", b"2")  # written by the other (writing) store
            assert (await asyncio.wait_for(seen.__anext__(), 10)).key == "/registry/b"
            await seen.aclose()
        finally:
            await ro.close()


async def test_periodic_compaction_keeps_recent_history(tmp_path: Path) -> None:
    async with SQLiteStore(str(tmp_path / "state.db"), history=0, compact_interval=0.02) as s:
        first = await s.create("/registry/a", b"1")
        await s.update("/registry/a", b"2")
        await s.update("/registry/a", b"3")
        for _ in range(500):  # the compactor runs in the background; wait for it
            try:
                await s.get("/registry/a", revision=first.mod_revision)
            except Compacted:
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("the periodic compaction never ran")
        assert (await s.get("/registry/a")).value == b"3"
        with pytest.raises(Compacted):
            async for _ in s.watch("/registry/", first.mod_revision):
                pass


async def test_reopen_keeps_revisions_and_compaction(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    async with SQLiteStore(str(db), compact_interval=0) as s:
        a = await s.create("/registry/a", b"1")
        await s.update("/registry/a", b"2")
        gone = await s.create("/registry/gone", b"x")
        d = await s.delete("/registry/gone")
        await s.compact(d.mod_revision)
    async with SQLiteStore(str(db), compact_interval=0) as s:
        # the newest revision was a compacted tombstone: the count must not go back
        assert await s.current_revision() == d.mod_revision
        with pytest.raises(Compacted):
            await s.get("/registry/a", revision=a.mod_revision)
        b = await s.create("/registry/b", b"1")
        assert b.mod_revision == d.mod_revision + 1 > gone.mod_revision
        assert [kv.key for kv in (await s.list("/registry/")).items] == ["/registry/a", "/registry/b"]


async def test_concurrent_writers_share_commits(tmp_path: Path) -> None:
    async with SQLiteStore(str(tmp_path / "state.db"), compact_interval=0) as s:
        kvs = await asyncio.gather(*(s.create(f"/registry/gc/{i}", b"x") for i in range(400)))
        assert sorted(kv.mod_revision for kv in kvs) == list(range(1, 401))
        assert s.stats["ops"] == 400
        # group commit: the writers waiting together were committed (fsynced) together
        assert s.stats["commits"] <= 40, s.stats
