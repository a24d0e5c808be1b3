"""The scheduling queue: upstream's PriorityQueue with its three sub-queues.

* **active**: pods ready to be tried, ordered as PrioritySort orders them (higher
  ``spec.priority`` first, then the earliest-queued);
* **backoff**: pods that failed and wait out their backoff, 1 s doubled per attempt up to 10 s
  (``podInitialBackoffSeconds`` / ``podMaxBackoffSeconds``);
* **unschedulable**: pods that fit nowhere. A cluster change (node added or changed, a pod
  deleted) moves them back (to backoff if their backoff has not expired, else to active), and so
  does being there longer than ``max_unschedulable`` (upstream's 5 minutes).

The queue holds each pod's latest object by key (``namespace/name``); an update of a queued pod
replaces it in place. Time comes from an injectable clock so tests can drive it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Any

Obj = dict[str, Any]


def pod_key(pod: Obj) -> str:
    md = pod.get("metadata") or {}
    return f"{md.get('namespace') or 'default'}/{md.get('name')}"


def pod_priority(pod: Obj) -> int:
    return int((pod.get("spec") or {}).get("priority") or 0)


class SchedulingQueue:
    def __init__(
        self,
        *,
        initial_backoff: float = 1.0,
        max_backoff: float = 10.0,
        max_unschedulable: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_unschedulable = max_unschedulable
        self.clock = clock
        self.pods: dict[str, Obj] = {}
        self._active: list[tuple[int, int, str]] = []
        self._in_active: set[str] = set()
        self._backoff: list[tuple[float, int, str]] = []
        self._in_backoff: dict[str, float] = {}
        self.unschedulable: dict[str, float] = {}
        self.attempts: dict[str, int] = {}
        self._last_failure: dict[str, float] = {}
        self._in_flight: set[str] = set()
        self._seq = itertools.count()
        self._wakeup = asyncio.Event()

    # ---- sizes
    @property
    def active_len(self) -> int:
        return len(self._in_active)

    @property
    def backoff_len(self) -> int:
        return len(self._in_backoff)

    def __len__(self) -> int:
        return len(self.pods)

    # ---- internal moves
    def _push_active(self, key: str) -> None:
        if key in self._in_active or key in self._in_flight:
            return
        self._in_backoff.pop(key, None)
        self.unschedulable.pop(key, None)
        self._in_active.add(key)
        heapq.heappush(self._active, (-pod_priority(self.pods[key]), next(self._seq), key))
        self._wakeup.set()

    def backoff_duration(self, key: str) -> float:
        n = self.attempts.get(key, 0)
        if n <= 0:
            return 0.0
        return min(self.initial_backoff * 2 ** (n - 1), self.max_backoff)

    def _backoff_expiry(self, key: str) -> float:
        return self._last_failure.get(key, 0.0) + self.backoff_duration(key)

    def _push_backoff_or_active(self, key: str) -> None:
        ready = self._backoff_expiry(key)
        if ready <= self.clock():
            self._push_active(key)
            return
        self.unschedulable.pop(key, None)
        self._in_backoff[key] = ready
        heapq.heappush(self._backoff, (ready, next(self._seq), key))

    # ---- API
    def add(self, pod: Obj) -> None:
        """A pending pod was added or updated."""
        key = pod_key(pod)
        new = key not in self.pods
        self.pods[key] = pod
        if key in self._in_flight:
            return
        if new:
            self._push_active(key)
        elif key in self.unschedulable:
            self._push_backoff_or_active(key)

    def delete(self, key: str) -> None:
        self.pods.pop(key, None)
        self._in_active.discard(key)
        self._in_backoff.pop(key, None)
        self.unschedulable.pop(key, None)
        self.attempts.pop(key, None)
        self._last_failure.pop(key, None)

    def flush(self) -> None:
        """Move expired backoffs to active and long-unschedulable pods back."""
        now = self.clock()
        while self._backoff and self._backoff[0][0] <= now:
            _, _, key = heapq.heappop(self._backoff)
            if self._in_backoff.get(key) is not None and self._in_backoff[key] <= now and key in self.pods:
                del self._in_backoff[key]
                self._push_active(key)
        for key, since in list(self.unschedulable.items()):
            if now - since >= self.max_unschedulable:
                self._push_backoff_or_active(key)

    def move_all_to_active(self) -> None:
        """A cluster change: unschedulable pods get another try (after their backoff)."""
        for key in list(self.unschedulable):
            self._push_backoff_or_active(key)

    def next_wakeup(self) -> float | None:
        return self._backoff[0][0] if self._backoff else None

    async def pop_batch(self, max_items: int) -> list[Obj]:
        """Wait for active pods; return up to ``max_items`` of them in priority order."""
        while True:
            self.flush()
            out: list[Obj] = []
            while self._active and len(out) < max_items:
                _, _, key = heapq.heappop(self._active)
                if key not in self._in_active:
                    continue
                self._in_active.discard(key)
                pod = self.pods.get(key)
                if pod is None:
                    continue
                self._in_flight.add(key)
                out.append(pod)
            if out:
                return out
            self._wakeup.clear()
            nxt = self.next_wakeup()
            timeout = 1.0 if nxt is None else max(0.0, min(1.0, nxt - self.clock()))
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout)
            except TimeoutError:
                pass

    def done_scheduled(self, key: str) -> None:
        """The pod was placed (and its binding is on the way): it leaves the queue."""
        self._in_flight.discard(key)
        self.pods.pop(key, None)
        self.attempts.pop(key, None)
        self._last_failure.pop(key, None)

    def done_unschedulable(self, key: str) -> None:
        self._in_flight.discard(key)
        if key not in self.pods:
            return
        self.attempts[key] = self.attempts.get(key, 0) + 1
        self._last_failure[key] = self.unschedulable[key] = self.clock()

    def done_error(self, key: str) -> None:
        """Binding or another transient error: retry after the backoff."""
        self._in_flight.discard(key)
        if key not in self.pods:
            return
        self.attempts[key] = self.attempts.get(key, 0) + 1
        self._last_failure[key] = self.clock()
        self._push_backoff_or_active(key)

    def abandon_in_flight(self) -> None:
        """The scheduling loop stopped mid-batch (leadership lost): its pods are pending again."""
        for key in list(self._in_flight):
            self._in_flight.discard(key)
            if key in self.pods:
                self._push_active(key)

    def requeue(self, pod: Obj) -> None:
        """A pod whose binding failed comes back (it is pending again)."""
        key = pod_key(pod)
        self.pods.setdefault(key, pod)
        self.done_error(key)
