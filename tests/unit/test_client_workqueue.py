"""Work queue semantics: dedup, never-concurrent keys, delays, exponential backoff, token bucket."""

from __future__ import annotations

import asyncio

import pytest

from hyperkube.client import ShutDown, WorkQueue, run_worker
from hyperkube.client.workqueue import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    default_controller_rate_limiter,
)


async def test_dedup_and_fifo() -> None:
    q = WorkQueue("t")
    for k in ["a", "b", "a", "c", "b"]:
        q.add(k)
    assert len(q) == 3
    assert [await q.get() for _ in range(3)] == ["a", "b", "c"]


async def test_key_readded_while_processing_runs_again_after_done_never_concurrently() -> None:
    q = WorkQueue("t")
    q.add("k")
    k = await q.get()
    q.add("k")  # a change arrives while a worker processes "k"
    assert len(q) == 0  # parked, not handed to a second worker
    q.add("k")
    assert q.get_nowait() is None
    q.done(k)
    assert len(q) == 1  # once, however many adds
    assert await q.get() == "k"
    q.done("k")
    assert len(q) == 0


async def test_workers_never_overlap_on_a_key() -> None:
    q = WorkQueue("t")
    active: set[str] = set()
    overlaps = 0
    runs: dict[str, int] = {}

    async def reconcile(key: str) -> None:
        nonlocal overlaps
        if key in active:
            overlaps += 1
        active.add(key)
        runs[key] = runs.get(key, 0) + 1
        await asyncio.sleep(0.005)
        active.discard(key)

    workers = [asyncio.create_task(run_worker(q, reconcile)) for _ in range(4)]
    for _ in range(20):
        for k in "abc":
            q.add(k)
        await asyncio.sleep(0.002)
    while len(q) or q.processing:
        await asyncio.sleep(0.01)
    q.shut_down()
    await asyncio.gather(*workers)
    assert overlaps == 0
    assert set(runs) == {"a", "b", "c"} and all(2 <= n <= 20 for n in runs.values())


async def test_get_raises_shutdown_and_wakes_waiters() -> None:
    q = WorkQueue("t")
    waiter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.shut_down()
    with pytest.raises(ShutDown):
        await waiter
    q.add("x")
    assert len(q) == 0


async def test_add_after_earliest_wins() -> None:
    q = WorkQueue("t")
    q.add_after("k", 10)
    q.add_after("k", 0.02)
    q.add_after("k", 5)
    assert q.waiting_delayed == 1
    assert await asyncio.wait_for(q.get(), 2) == "k"
    q.shut_down()
    assert q.waiting_delayed == 0


def test_exponential_per_item_backoff_matches_client_go_defaults() -> None:
    rl = ItemExponentialFailureRateLimiter(0.005, 1000)
    delays = [rl.when("a") for _ in range(20)]
    assert delays[:4] == [0.005, 0.01, 0.02, 0.04]
    assert delays[-1] == 1000 and max(delays) == 1000
    assert rl.when("b") == 0.005  # per item
    assert rl.num_requeues("a") == 20
    rl.forget("a")
    assert rl.when("a") == 0.005
    for _ in range(100):
        rl.when("c")
    assert rl.when("c") == 1000


def test_token_bucket() -> None:
    now = [0.0]
    b = BucketRateLimiter(10, 100, clock=lambda: now[0])
    assert all(b.when(i) == 0 for i in range(100))
    assert b.when("x") == pytest.approx(0.1)
    assert b.when("y") == pytest.approx(0.2)
    now[0] = 20.0  # refilled (capped at the burst, after the two reserved tokens are paid back)
    assert all(b.when(i) == 0 for i in range(100))
    assert b.when("z") > 0


async def test_rate_limited_retries_then_forget() -> None:
    q = WorkQueue("t", default_controller_rate_limiter())
    attempts = 0

    async def flaky(key: str) -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 4:
            raise RuntimeError("transient")

    q.add("k")
    w = asyncio.create_task(run_worker(q, flaky))
    while attempts < 4 or q.processing:
        await asyncio.sleep(0.005)
    assert q.num_requeues("k") == 0  # forgotten after success
    assert q.retries == 3
    await q.shut_down_with_drain()
    await w


async def test_requeue_after_result() -> None:
    q = WorkQueue("t")
    runs = 0

    async def again(key: str) -> float | None:
        nonlocal runs
        runs += 1
        return 0.01 if runs < 3 else None

    q.add("k")
    w = asyncio.create_task(run_worker(q, again))
    while runs < 3:
        await asyncio.sleep(0.005)
    q.shut_down()
    await w
    assert runs == 3
