"""The scheduling queue: PrioritySort order, backoff 1 s -> 10 s, re-queue on cluster change."""

from __future__ import annotations

from typing import Any

from hyperkube.scheduler.queue import SchedulingQueue


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def pod(name: str, priority: int = 0) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": {"priority": priority}}


async def test_priority_then_fifo() -> None:
    q = SchedulingQueue(clock=Clock())
    for name, prio in [("a", 0), ("b", 10), ("c", 0), ("d", 10)]:
        q.add(pod(name, prio))
    got = await q.pop_batch(10)
    assert [p["metadata"]["name"] for p in got] == ["b", "d", "a", "c"]


async def test_unschedulable_waits_for_a_cluster_change_and_backs_off() -> None:
    clock = Clock()
    q = SchedulingQueue(clock=clock)
    q.add(pod("a"))
    assert len(await q.pop_batch(5)) == 1
    q.done_unschedulable("ns/a")
    assert q.active_len == 0 and "ns/a" in q.unschedulable
    q.flush()
    assert q.active_len == 0  # no change: stays unschedulable
    q.move_all_to_active()  # within its 1 s backoff: goes to backoff
    assert q.backoff_len == 1 and q.active_len == 0
    clock.t += 1.0
    q.flush()
    assert q.active_len == 1
    assert len(await q.pop_batch(5)) == 1
    # backoff doubles per attempt up to 10 s
    for expected in (2.0, 4.0, 8.0, 10.0, 10.0):
        q.done_unschedulable("ns/a")
        assert q.backoff_duration("ns/a") == expected
        clock.t += expected
        q.move_all_to_active()
        assert q.active_len == 1
        await q.pop_batch(5)


async def test_long_unschedulable_pods_are_retried_and_scheduled_pods_leave() -> None:
    clock = Clock()
    q = SchedulingQueue(clock=clock, max_unschedulable=300.0)
    q.add(pod("a"))
    await q.pop_batch(1)
    q.done_unschedulable("ns/a")
    clock.t += 299
    q.flush()
    assert q.active_len == 0
    clock.t += 1
    q.flush()
    assert q.active_len == 1
    [p] = await q.pop_batch(1)
    q.done_scheduled("ns/a")
    assert len(q) == 0 and q.attempts == {}
    # a failed binding comes back with backoff
    q.requeue(p)
    assert q.backoff_len == 1
    q.delete("ns/a")
    clock.t += 10
    q.flush()
    assert q.active_len == 0 and len(q) == 0


async def test_abandoned_batch_is_pending_again() -> None:
    q = SchedulingQueue(clock=Clock())
    q.add(pod("a"))
    q.add(pod("b"))
    got = await q.pop_batch(5)
    assert len(got) == 2 and q.active_len == 0
    q.done_scheduled("ns/a")
    q.abandon_in_flight()
    assert q.active_len == 1
    assert [p["metadata"]["name"] for p in await q.pop_batch(5)] == ["b"]
