"""SQLite Store: the embedded default backend (``sqlite:///path/state.db``).

Data model (kine's): one table of revisions. Every write appends one row whose ``id`` is the new
global revision::

    kv(id = revision, name, created, deleted, create_revision, prev_revision, value, old_value)

The latest row of a name is its current version (``deleted = 1``: a tombstone); the state at
revision R is, per name, the newest row with ``id <= R``. ``prev_revision`` links a row to the
name's previous row, which is what compaction follows. ``meta`` holds the schema version, an
application tag and the compacted revision.

Writes: one writer thread owns the only writing connection. Callers put operations on a queue and
await a future; the writer drains everything pending (up to ``batch_max``), checks each operation
against the current state (create-if-absent, CAS on mod revision), appends the rows with one
``executemany`` and commits once: *group commit*, one fsync per batch however many writers wait.
It then hands the whole batch back to the event loop with a single ``call_soon_threadsafe``: the
futures are resolved and the batch's events are fanned out to the process's watchers there and
then, without polling. A write is acknowledged only after its transaction is durable:
``synchronous=FULL`` (default) fsyncs the WAL at each commit, so an acknowledged write survives
both ``kill -9`` and power loss; ``sync=normal`` keeps kill -9 safety (the WAL is in the OS page
cache) but may lose the last commits on power loss.

Reads: point reads (``get``) run on the event loop with a connection of their own; an indexed
lookup takes microseconds, less than a hop to a thread, and WAL readers never wait for the writer.
Lists and watch replays run in a small reader thread pool, each in one read transaction (a
consistent snapshot that includes the compacted revision, so a concurrent compaction can never
leave a silent gap).

Compaction: ``compact(R)`` deletes rows superseded at or below R and tombstones at or below R, in
steps of ``compact_step`` revisions so writers are not held up by one long transaction. A
background task samples the current revision every ``compact_interval`` seconds and compacts to
the newest sample at least ``history`` seconds old (default 300 s, as kube-apiserver asks of
etcd).

Integrity: at start the file header, ``PRAGMA quick_check`` and the ``meta`` rows are verified;
any failure raises :class:`Corrupt` naming the file. A lock file keeps a second process from
writing the same database (its watchers would miss the other process's commits).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ._watch import DEFAULT_WATCH_QUEUE, Fanout, Watcher, prefix_end
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
)

SCHEMA_VERSION = 1
APP_TAG = "hyperkube-store"
_SQLITE_MAGIC = b"SQLite format 3\x00"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS kv (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    value BLOB,
    old_value BLOB
);
CREATE INDEX IF NOT EXISTS kv_name_id ON kv (name, id);
"""

_OP_CREATE, _OP_UPDATE, _OP_DELETE, _OP_COMPACT = 0, 1, 2, 3

# latest row of one name
_SQL_LATEST = "SELECT id, create_revision, deleted, value FROM kv WHERE name = ? ORDER BY id DESC LIMIT 1"
_SQL_AT = (
    "SELECT id, create_revision, deleted, value FROM kv WHERE name = ? AND id <= ? ORDER BY id DESC LIMIT 1"
)
_SQL_INSERT = "INSERT INTO kv (id, name, created, deleted, create_revision, prev_revision, value, old_value) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


def _range_sql(prefix: str, after: str | None) -> tuple[str, list[Any]]:
    """WHERE clause (without WHERE) selecting names under `prefix`, strictly after `after`."""
    clauses, args = [], []
    lo = prefix
    if after is not None and after >= prefix:
        clauses.append("name > ?")
        args.append(after)
    else:
        clauses.append("name >= ?")
        args.append(lo)
    end = prefix_end(prefix)
    if end is not None:
        clauses.append("name < ?")
        args.append(end)
    return " AND ".join(clauses), args


_Events = list[Event]  # (the class's `list` method shadows the builtin in annotations)


class _Op:
    __slots__ = ("kind", "key", "value", "expected", "future", "result")

    def __init__(
        self, kind: int, key: str, value: bytes | None, expected: int | None, future: asyncio.Future[Any]
    ) -> None:
        self.kind, self.key, self.value, self.expected, self.future = kind, key, value, expected, future
        self.result: Any = None


class SQLiteStore:
    """Revisioned store in one SQLite file with group commit and in-process watch."""

    def __init__(
        self,
        path: str,
        *,
        sync: str = "full",
        watch_queue: int = DEFAULT_WATCH_QUEUE,
        history: float = 300.0,
        compact_interval: float = 60.0,
        compact_step: int = 10_000,
        batch_max: int = 10_000,
        readonly: bool | str = False,
    ) -> None:
        if sync.lower() not in ("full", "normal"):
            raise ValueError(f"sync must be 'full' or 'normal', not {sync!r}")
        self.path = path
        self._sync = sync.upper()
        self._watch_queue = int(watch_queue)
        self._history = float(history)
        self._compact_interval = float(compact_interval)
        self._compact_step = int(compact_step)
        self._batch_max = int(batch_max)
        self._readonly = readonly in (True, "1", "true", "yes")
        self._fanout = Fanout()
        self._queue: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pool_conns: list[sqlite3.Connection] = []
        self._local = threading.local()
        # remaining-item counts of recent pages: (prefix, revision, last key) -> count after it
        self._remaining: dict[tuple[str, int, str | None], int] = {}
        self._remaining_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lockfd: int | None = None
        self._compactor: asyncio.Task[None] | None = None
        self._rev = 0  # writer thread's view: last committed revision
        self._published = 0  # loop's view: last revision whose events were fanned out
        self._compact_rev = 0
        self._closed = True
        self._fatal: BaseException | None = None
        # writer counters: committed transactions (one fsync each with sync=full) and operations
        self.stats = {"commits": 0, "ops": 0}

    async def __aenter__(self) -> SQLiteStore:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # -- open / verify / close -----------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        uri = f"file:{self.path}{'?mode=ro' if self._readonly else ''}"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA busy_timeout = 30000")
        return conn

    def _open(self) -> None:
        """Verify (or create) the database; runs in a thread at start."""
        exists = os.path.exists(self.path) and os.path.getsize(self.path) > 0
        if self._readonly and not exists:
            raise StorageError(f"{self.path}: no such store")
        if exists:
            with open(self.path, "rb") as f:
                head = f.read(16)
            if head != _SQLITE_MAGIC:
                raise Corrupt(
                    f"{self.path} is not a SQLite database (bad header): the store is damaged; "
                    "restore it from a backup or move it away to start empty"
                )
        else:
            d = os.path.dirname(self.path)
            if d:
                os.makedirs(d, exist_ok=True)
        if not self._readonly:
            self._lockfd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(self._lockfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(self._lockfd)
                self._lockfd = None
                raise StorageError(
                    f"{self.path} is in use by another process (lock {self.path}.lock); "
                    "stop it or open the store read-only (?readonly=1)"
                ) from None
        try:
            conn = self._connect()
            try:
                if exists:
                    res = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
                    if res != ["ok"]:
                        raise Corrupt(
                            f"{self.path} failed its integrity check ({'; '.join(res[:3])}): the store is "
                            "damaged; restore it from a backup or move it away to start empty"
                        )
                if not self._readonly:
                    conn.execute("PRAGMA journal_mode = WAL")
                    conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA)
                    meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
                    if not meta:
                        has_rows = conn.execute("SELECT 1 FROM kv LIMIT 1").fetchone()
                        if has_rows:
                            conn.execute("ROLLBACK")
                            raise Corrupt(f"{self.path}: revisions present but the meta table is empty")
                        conn.executemany(
                            "INSERT INTO meta (name, value) VALUES (?, ?)",
                            [("app", APP_TAG), ("schema_version", str(SCHEMA_VERSION)), ("compact_rev", "0")],
                        )
                    conn.execute("COMMIT")
                self._check_meta(conn)
                self._compact_rev = int(
                    conn.execute("SELECT value FROM meta WHERE name='compact_rev'").fetchone()[0]
                )
                top = conn.execute("SELECT max(id) FROM kv").fetchone()[0] or 0
                self._rev = self._published = max(top, self._compact_rev)
            finally:
                conn.close()
        except sqlite3.DatabaseError as e:
            self._unlock()
            raise Corrupt(
                f"{self.path} cannot be read as a store ({e}): the database is damaged; "
                "restore it from a backup or move it away to start empty"
            ) from e
        except BaseException:
            self._unlock()
            raise

    def _check_meta(self, conn: sqlite3.Connection) -> None:
        try:
            meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
        except sqlite3.OperationalError as e:
            raise Corrupt(f"{self.path} is a SQLite database but not a hyperkube store ({e})") from e
        if meta.get("app") != APP_TAG:
            raise Corrupt(
                f"{self.path} is a SQLite database but not a hyperkube store (meta.app={meta.get('app')!r})"
            )
        if meta.get("schema_version") != str(SCHEMA_VERSION):
            raise Corrupt(
                f"{self.path} has schema version {meta.get('schema_version')!r}; this build reads {SCHEMA_VERSION}"
            )

    def _unlock(self) -> None:
        if self._lockfd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lockfd, fcntl.LOCK_UN)
                os.close(self._lockfd)
            self._lockfd = None

    async def start(self) -> None:
        if not self._closed:
            return
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._open)
        self._rconn = self._connect()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="hk-sqlite-read")
        self._closed = False
        self._fatal = None
        if not self._readonly:
            self._wconn = self._connect()
            self._wconn.execute(f"PRAGMA synchronous = {self._sync}")
            self._queue = queue.SimpleQueue()
            self._writer = threading.Thread(target=self._writer_main, name="hk-sqlite-writer", daemon=True)
            self._writer.start()
            if self._compact_interval > 0:
                self._compactor = asyncio.create_task(self._compact_loop())

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._compactor is not None:
            self._compactor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._compactor
            self._compactor = None
        if self._writer is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        self._fanout.close_all()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for c in [*self._pool_conns, self._rconn, self._wconn]:
            if c is not None:
                c.close()
        self._pool_conns.clear()
        self._local = threading.local()
        self._rconn = self._wconn = None
        self._unlock()

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"store {self.path} is closed")
        if self._fatal is not None:
            raise StorageError(f"store {self.path} failed: {self._fatal}")

    async def current_revision(self) -> int:
        self._check_open()
        if self._readonly:
            return await self._in_pool(self._read_current)
        return self._published

    def _read_current(self, conn: sqlite3.Connection) -> int:
        top = conn.execute("SELECT max(id) FROM kv").fetchone()[0] or 0
        return max(top, int(conn.execute("SELECT value FROM meta WHERE name='compact_rev'").fetchone()[0]))

    # -- writer thread -------------------------------------------------------------------------

    def _writer_main(self) -> None:
        assert self._wconn is not None and self._loop is not None
        q, loop, conn = self._queue, self._loop, self._wconn
        stop = False
        while not stop:
            first = q.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self._batch_max:
                try:
                    op = q.get_nowait()
                except queue.Empty:
                    break
                if op is None:
                    stop = True
                    break
                batch.append(op)
            try:
                events = self._apply(conn, batch)
            except BaseException as e:  # the transaction did not commit: fail the whole batch
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                err = e if isinstance(e, StorageError) else StorageError(f"write to {self.path} failed: {e}")
                for op in batch:
                    op.result = err
                events = []
                # the in-memory revision may be ahead of the database now: reload it
                with contextlib.suppress(sqlite3.Error):
                    self._rev = self._read_current(conn)
            try:
                loop.call_soon_threadsafe(self._complete, batch, events, self._rev)
            except RuntimeError:  # loop closed
                break

    def _apply(self, conn: sqlite3.Connection, batch: list[_Op]) -> list[Event]:
        """Check and apply one batch in one transaction; returns its events. Sets op.result."""
        rev = self._rev
        rows: list[tuple[Any, ...]] = []
        events: list[Event] = []
        # latest (id, create_revision, deleted, value) of names written earlier in this batch
        pending: dict[str, tuple[int, int, int, bytes | None]] = {}
        compact_to = 0
        conn.execute("BEGIN IMMEDIATE")
        for op in batch:
            key = op.key
            if op.kind == _OP_COMPACT:
                compact_to = max(compact_to, int(op.expected or 0))
                continue
            cur = pending.get(key)
            if cur is None:
                cur = conn.execute(_SQL_LATEST, (key,)).fetchone()
            live = cur is not None and not cur[2]
            if op.kind == _OP_CREATE:
                if live:
                    op.result = AlreadyExists(key)
                    continue
                rev += 1
                prev = cur[0] if cur is not None else 0
                rows.append((rev, key, 1, 0, rev, prev, op.value, None))
                pending[key] = (rev, rev, 0, op.value)
                op.result = KeyValue(key, op.value, rev, rev)  # type: ignore[arg-type]
                events.append(Event(EventType.ADDED, key, rev, op.value, None, rev))
                continue
            if not live:
                op.result = NotFound(key)
                continue
            assert cur is not None
            if op.expected is not None and op.expected != cur[0]:
                op.result = Conflict(key, op.expected, cur[0])
                continue
            rev += 1
            if op.kind == _OP_UPDATE:
                rows.append((rev, key, 0, 0, cur[1], cur[0], op.value, cur[3]))
                pending[key] = (rev, cur[1], 0, op.value)
                op.result = KeyValue(key, op.value, cur[1], rev)  # type: ignore[arg-type]
                events.append(Event(EventType.MODIFIED, key, rev, op.value, cur[3], cur[1]))
            else:
                rows.append((rev, key, 0, 1, cur[1], cur[0], None, cur[3]))
                pending[key] = (rev, cur[1], 1, None)
                op.result = KeyValue(key, cur[3], cur[1], rev)  # type: ignore[arg-type]
                events.append(Event(EventType.DELETED, key, rev, None, cur[3], cur[1]))
        if rows:
            conn.executemany(_SQL_INSERT, rows)
        if compact_to:
            self._compact_step_sql(conn, batch, compact_to, rev)
        conn.execute("COMMIT")
        self._rev = rev
        self.stats["commits"] += 1
        self.stats["ops"] += len(batch)
        return events

    def _compact_step_sql(self, conn: sqlite3.Connection, batch: list[_Op], target: int, rev: int) -> None:
        old = self._compact_rev
        result: Any
        if target <= old:
            result = Compacted(target, old)
        elif target > rev:
            result = FutureRevision(target, rev)
        else:
            # rows superseded by a later row at or below target, then tombstones at or below target
            conn.execute(
                "DELETE FROM kv WHERE id IN (SELECT prev_revision FROM kv WHERE id > ? AND id <= ? AND prev_revision > 0)",
                (old, target),
            )
            conn.execute("DELETE FROM kv WHERE id > ? AND id <= ? AND deleted = 1", (old, target))
            conn.execute("UPDATE meta SET value = ? WHERE name = 'compact_rev'", (str(target),))
            self._compact_rev = target
            result = None
        for op in batch:
            if op.kind == _OP_COMPACT:
                op.result = result if int(op.expected or 0) == target else None

    def _complete(self, batch: list[_Op], events: list[Event], rev: int) -> None:
        """On the loop: publish the batch's events and resolve its futures."""
        if events:
            self._published = events[-1].revision
            self._fanout.publish(events)
        elif rev > self._published:
            self._published = rev
        for op in batch:
            fut = op.future
            if fut.done():
                continue
            if isinstance(op.result, BaseException):
                fut.set_exception(op.result)
            else:
                fut.set_result(op.result)

    async def _submit(self, kind: int, key: str, value: bytes | None, expected: int | None) -> Any:
        self._check_open()
        if self._readonly:
            raise StorageError(f"store {self.path} is open read-only")
        assert self._loop is not None
        fut = self._loop.create_future()
        self._queue.put(_Op(kind, key, value, expected, fut))
        return await fut

    async def create(self, key: str, value: bytes) -> KeyValue:
        return await self._submit(_OP_CREATE, key, bytes(value), None)  # type: ignore[no-any-return]

    async def update(self, key: str, value: bytes, expected_mod_revision: int | None = None) -> KeyValue:
        return await self._submit(_OP_UPDATE, key, bytes(value), expected_mod_revision)  # type: ignore[no-any-return]

    async def delete(self, key: str, expected_mod_revision: int | None = None) -> KeyValue:
        return await self._submit(_OP_DELETE, key, None, expected_mod_revision)  # type: ignore[no-any-return]

    async def compact(self, revision: int) -> None:
        self._check_open()
        if revision <= self._compact_rev:
            raise Compacted(revision, self._compact_rev)
        if revision > self._published:
            raise FutureRevision(revision, self._published)
        step = self._compact_rev
        while step < revision:
            step = min(revision, step + self._compact_step)
            await self._submit(_OP_COMPACT, "", None, step)

    async def _compact_loop(self) -> None:
        samples: deque[tuple[float, int]] = deque()
        while True:
            await asyncio.sleep(self._compact_interval)
            now = time.monotonic()
            samples.append((now, self._published))
            target = 0
            while samples and samples[0][0] <= now - self._history:
                target = samples.popleft()[1]
            if target > self._compact_rev:
                with contextlib.suppress(StorageError):
                    await self.compact(target)

    # -- reads ---------------------------------------------------------------------------------

    def _pool_conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
            self._pool_conns.append(conn)
        return conn

    async def _in_pool(self, fn: Callable[..., Any], *args: Any) -> Any:
        assert self._loop is not None and self._pool is not None

        def run() -> Any:
            return fn(self._pool_conn(), *args)

        return await self._loop.run_in_executor(self._pool, run)

    def _snapshot_rev(self, conn: sqlite3.Connection, revision: int | None, published: int) -> int:
        """Inside a read transaction: the revision to read at, checked against compaction."""
        compacted = int(conn.execute("SELECT value FROM meta WHERE name='compact_rev'").fetchone()[0])
        current = max(published, compacted) if not self._readonly else self._read_current(conn)
        if not revision:
            return current
        if revision < compacted:
            raise Compacted(revision, compacted)
        if revision > current:
            raise FutureRevision(revision, current)
        return revision

    def _get_sync(self, conn: sqlite3.Connection, key: str, revision: int | None, published: int) -> KeyValue:
        if revision:
            conn.execute("BEGIN")
            try:
                rev = self._snapshot_rev(conn, revision, published)
                row = conn.execute(_SQL_AT, (key, rev)).fetchone()
            finally:
                conn.execute("COMMIT")
        else:  # one statement: its own consistent snapshot
            row = conn.execute(_SQL_LATEST, (key,)).fetchone()
        if row is None or row[2]:
            raise NotFound(key)
        return KeyValue(key, row[3], row[1], row[0])

    async def get(self, key: str, revision: int | None = None) -> KeyValue:
        self._check_open()
        if self._readonly:
            return await self._in_pool(self._get_sync, key, revision, 0)  # type: ignore[no-any-return]
        assert self._rconn is not None
        try:
            return self._get_sync(self._rconn, key, revision, self._published)
        except sqlite3.Error as e:
            raise StorageError(f"read from {self.path} failed: {e}") from e

    def _list_sync(
        self,
        conn: sqlite3.Connection,
        prefix: str,
        limit: int,
        after: str | None,
        revision: int | None,
        published: int,
    ) -> ListResult:
        # Per name, the newest row at or below `rev` (SQLite takes the bare columns from the row
        # holding max(id)); HAVING drops names whose newest row is a tombstone. The GROUP BY walks
        # the (name, id) index in order, so a page stops after `limit` names.
        conn.execute("BEGIN")
        try:
            rev = self._snapshot_rev(conn, revision, published)
            where, args = _range_sql(prefix, after)
            sql = (
                "SELECT name, max(id), deleted, create_revision, value FROM kv "
                f"WHERE {where} AND id <= ? GROUP BY name HAVING deleted = 0 ORDER BY name"
            )
            params: list[Any] = [*args, rev]
            if limit:
                sql += " LIMIT ?"
                params.append(limit + 1)
            rows = conn.execute(sql, params).fetchall()
            more = bool(limit) and len(rows) > limit
            if more:
                rows = rows[:limit]
            remaining = 0
            if more:
                # pages of one list share a revision: the count after this page follows from the
                # count after the previous page, so only the first page pays for counting
                ck = (prefix, rev, after)
                with self._remaining_lock:
                    before = self._remaining.pop(ck, None)
                if before is not None:
                    remaining = before - len(rows)
                else:
                    remaining = self._count_in(conn, prefix, rows[-1][0], rev)
                with self._remaining_lock:
                    self._remaining[(prefix, rev, rows[-1][0])] = remaining
                    while len(self._remaining) > 256:
                        self._remaining.pop(next(iter(self._remaining)))
        finally:
            conn.execute("COMMIT")
        items = [KeyValue(r[0], r[4], r[3], r[1]) for r in rows]
        return ListResult(items, rev, items[-1].key if more else None, remaining)

    @staticmethod
    def _count_in(conn: sqlite3.Connection, prefix: str, after: str | None, rev: int | None) -> int:
        where, args = _range_sql(prefix, after)
        at = ""
        if rev is not None:
            at = " AND id <= ?"
            args.append(rev)
        return int(
            conn.execute(
                "SELECT count(*) FROM (SELECT max(id), deleted FROM kv "
                f"WHERE {where}{at} GROUP BY name HAVING deleted = 0)",
                args,
            ).fetchone()[0]
        )

    async def list(
        self,
        prefix: str,
        *,
        limit: int = 0,
        continue_key: str | None = None,
        revision: int | None = None,
    ) -> ListResult:
        self._check_open()
        try:
            return await self._in_pool(  # type: ignore[no-any-return]
                self._list_sync, prefix, limit, continue_key, revision, self._published
            )
        except sqlite3.Error as e:
            raise StorageError(f"list from {self.path} failed: {e}") from e

    def _count_sync(self, conn: sqlite3.Connection, prefix: str) -> int:
        return self._count_in(conn, prefix, None, None)

    async def count(self, prefix: str) -> int:
        self._check_open()
        return await self._in_pool(self._count_sync, prefix)  # type: ignore[no-any-return]

    # -- watch ---------------------------------------------------------------------------------

    def _history_sync(
        self, conn: sqlite3.Connection, prefix: str, after: int, upto: int, limit: int
    ) -> tuple[_Events, int]:
        """Events under prefix with after < revision <= upto (at most `limit` rows scanned)."""
        conn.execute("BEGIN")
        try:
            compacted = int(conn.execute("SELECT value FROM meta WHERE name='compact_rev'").fetchone()[0])
            if after < compacted:
                return [], compacted
            where, args = _range_sql(prefix, None)
            rows = conn.execute(
                "SELECT id, name, created, deleted, create_revision, value, old_value FROM kv "
                f"WHERE id > ? AND id <= ? AND {where} ORDER BY id LIMIT ?",
                [after, upto, *args, limit],
            ).fetchall()
        finally:
            conn.execute("COMMIT")
        out = []
        for rid, name, created, deleted, crev, value, old in rows:
            if deleted:
                out.append(Event(EventType.DELETED, name, rid, None, old, crev))
            elif created:
                out.append(Event(EventType.ADDED, name, rid, value, None, crev))
            else:
                out.append(Event(EventType.MODIFIED, name, rid, value, old, crev))
        return out, compacted

    async def watch(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        self._check_open()
        if from_revision < self._compact_rev:
            raise Compacted(from_revision, self._compact_rev)
        w = Watcher(prefix, self._watch_queue)
        if self._readonly:
            async for e in self._poll_watch(prefix, from_revision):
                yield e
            return
        # Register first (live events after `upto` are buffered), then replay (from, upto].
        self._fanout.add(w)
        upto = self._published
        try:
            pos = from_revision
            page = 1000
            while pos < upto:
                events, compacted = await self._in_pool(self._history_sync, prefix, pos, upto, page)
                if pos < compacted:
                    raise Compacted(from_revision, compacted)
                for e in events:
                    yield e
                if len(events) < page:
                    break
                pos = events[-1].revision
            while True:
                batch = await w.next_batch()
                if batch is None:
                    return
                for e in batch:
                    if e.revision > from_revision:
                        yield e
        finally:
            self._fanout.remove(w)

    async def _poll_watch(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        """Read-only opens (another process writes): poll the revisions table."""
        pos = from_revision
        while not self._closed:
            events, compacted = await self._in_pool(self._history_sync, prefix, pos, 2**62, 1000)
            if pos < compacted:
                raise Compacted(from_revision, compacted)
            for e in events:
                yield e
                pos = e.revision
            if len(events) < 1000:
                await asyncio.sleep(0.2)
