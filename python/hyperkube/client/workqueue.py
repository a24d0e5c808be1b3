"""Work queues for controllers (client-go's ``util/workqueue``).

Semantics, as upstream:

- **Per-key deduplication.** A key added while already waiting is not added twice ("dirty" set).
  A key added while a worker is processing it is parked and re-queued when the worker calls
  ``done(key)``: one key is never processed by two workers at once, and a change that arrives
  during processing is never lost.
- **Delays.** ``add_after(key, seconds)`` adds later; when the same key is already waiting for a
  later time, the earlier time wins.
- **Rate limiting.** ``add_rate_limited(key)`` delays by the rate limiter's ``when(key)``. The
  default (``default_controller_rate_limiter``) is client-go's: the max of a per-item exponential
  backoff (5 ms doubling per failure up to 1000 s) and an overall token bucket (10 qps, burst 100).
  ``forget(key)`` resets the item's failures after a success.
- **Shutdown.** ``shut_down()`` wakes every waiting ``get()`` with :class:`ShutDown`; pending
  delayed adds are dropped. ``shut_down_with_drain()`` first waits for in-flight keys.

Single event loop: no locks needed, every method except ``get``/``shut_down_with_drain`` is sync.
Counters (``adds``, ``retries``, ``depth``, work durations) feed the components' /metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

log = logging.getLogger("hyperkube.client.workqueue")


class ShutDown(Exception):
    """The queue was shut down; the worker should exit."""


class ItemExponentialFailureRateLimiter:
    """``base * 2**failures`` per item, capped at ``max_delay``."""

    def __init__(self, base: float = 0.005, max_delay: float = 1000.0):
        self.base, self.max_delay = base, max_delay
        self._failures: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        n = self._failures.get(item, 0)
        self._failures[item] = n + 1
        if n > 62:
            return self.max_delay
        return min(self.base * (2**n), self.max_delay)

    def num_requeues(self, item: Hashable) -> int:
        return self._failures.get(item, 0)

    def forget(self, item: Hashable) -> None:
        self._failures.pop(item, None)


class BucketRateLimiter:
    """An overall token bucket: ``qps`` tokens per second, ``burst`` at most; returns the wait."""

    def __init__(self, qps: float = 10.0, burst: int = 100, clock: Callable[[], float] = time.monotonic):
        self.qps, self.burst, self.clock = qps, burst, clock
        self._tokens = float(burst)
        self._last = clock()

    def when(self, item: Hashable) -> float:
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1.0  # reserve a token (may go negative: the reservation waits for it)
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def num_requeues(self, item: Hashable) -> int:
        return 0

    def forget(self, item: Hashable) -> None:
        pass


class MaxOfRateLimiter:
    def __init__(self, *limiters: Any):
        self.limiters = limiters

    def when(self, item: Hashable) -> float:
        return max(lim.when(item) for lim in self.limiters)

    def num_requeues(self, item: Hashable) -> int:
        return max(lim.num_requeues(item) for lim in self.limiters)

    def forget(self, item: Hashable) -> None:
        for lim in self.limiters:
            lim.forget(item)


def default_controller_rate_limiter() -> MaxOfRateLimiter:
    return MaxOfRateLimiter(ItemExponentialFailureRateLimiter(0.005, 1000.0), BucketRateLimiter(10.0, 100))


class WorkQueue:
    """A rate-limited, delaying, deduplicating queue of keys."""

    def __init__(self, name: str = "", rate_limiter: Any = None):
        self.name = name
        self.rate_limiter = rate_limiter or default_controller_rate_limiter()
        self._queue: deque[Hashable] = deque()
        self._dirty: set[Hashable] = set()
        self._processing: set[Hashable] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._delayed: dict[Hashable, tuple[float, asyncio.TimerHandle]] = {}
        self._started: dict[Hashable, float] = {}
        self._shutting_down = False
        self._drained: asyncio.Event | None = None
        # metrics
        self.adds = 0
        self.retries = 0
        self.work_seconds_total = 0.0
        self.work_count = 0

    # -- adding -----------------------------------------------------------------------------------

    def add(self, item: Hashable) -> None:
        if self._shutting_down or item in self._dirty:
            return
        self.adds += 1
        self._dirty.add(item)
        if item in self._processing:
            return
        self._queue.append(item)
        self._wake_one()

    def add_after(self, item: Hashable, delay: float) -> None:
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(item)
            return
        loop = asyncio.get_running_loop()
        ready = loop.time() + delay
        prev = self._delayed.get(item)
        if prev is not None:
            if prev[0] <= ready:
                return
            prev[1].cancel()
        handle = loop.call_at(ready, self._fire, item)
        self._delayed[item] = (ready, handle)

    def _fire(self, item: Hashable) -> None:
        self._delayed.pop(item, None)
        self.add(item)

    def add_rate_limited(self, item: Hashable) -> None:
        self.retries += 1
        self.add_after(item, self.rate_limiter.when(item))

    def forget(self, item: Hashable) -> None:
        self.rate_limiter.forget(item)

    def num_requeues(self, item: Hashable) -> int:
        return self.rate_limiter.num_requeues(item)

    # -- consuming ----------------------------------------------------------------------------------

    async def get(self) -> Hashable:
        """The next key (now marked processing); raises :class:`ShutDown` once shut down."""
        while not self._queue:
            if self._shutting_down:
                raise ShutDown(self.name)
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut in self._waiters:
                    self._waiters.remove(fut)
                elif self._queue:  # we were woken and are going away: pass the wake-up on
                    self._wake_one()
                raise
        item = self._queue.popleft()
        self._processing.add(item)
        self._dirty.discard(item)
        self._started[item] = time.monotonic()
        return item

    def get_nowait(self) -> Hashable | None:
        if not self._queue:
            return None
        item = self._queue.popleft()
        self._processing.add(item)
        self._dirty.discard(item)
        self._started[item] = time.monotonic()
        return item

    def done(self, item: Hashable) -> None:
        if item not in self._processing:
            return
        self._processing.discard(item)
        t0 = self._started.pop(item, None)
        if t0 is not None:
            self.work_seconds_total += time.monotonic() - t0
            self.work_count += 1
        if item in self._dirty:
            self._queue.append(item)
            self._wake_one()
        elif not self._processing and self._drained is not None:
            self._drained.set()

    def _wake_one(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    # -- state --------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def depth(self) -> int:
        return len(self._queue)

    @property
    def waiting_delayed(self) -> int:
        return len(self._delayed)

    @property
    def processing(self) -> int:
        return len(self._processing)

    @property
    def longest_running(self) -> float:
        if not self._started:
            return 0.0
        return time.monotonic() - min(self._started.values())

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def shut_down(self) -> None:
        self._shutting_down = True
        for _, handle in self._delayed.values():
            handle.cancel()
        self._delayed.clear()
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)

    async def shut_down_with_drain(self) -> None:
        self.shut_down()
        if self._processing:
            self._drained = asyncio.Event()
            await self._drained.wait()


async def run_worker(
    queue: WorkQueue,
    reconcile: Callable[[Any], Awaitable[Any]],
    *,
    max_retries: int | None = None,
    on_error: Callable[[Any, BaseException], Any] | None = None,
) -> None:
    """The standard worker loop: get → reconcile → forget (success) or add_rate_limited (failure) → done.

    ``reconcile`` may return a number of seconds to requeue the key after (a "requeue after" result).
    """
    while True:
        try:
            key = await queue.get()
        except ShutDown:
            return
        try:
            after = await reconcile(key)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - the key is retried with backoff
            if on_error is not None:
                on_error(key, e)
            if max_retries is None or queue.num_requeues(key) < max_retries:
                log.debug("%s: %r failed (%s); retrying", queue.name, key, e)
                queue.add_rate_limited(key)
            else:
                log.warning("%s: dropping %r after %d retries: %s", queue.name, key, max_retries, e)
                queue.forget(key)
        else:
            queue.forget(key)
            if isinstance(after, (int, float)) and not isinstance(after, bool) and after > 0:
                queue.add_after(key, after)
        finally:
            queue.done(key)
