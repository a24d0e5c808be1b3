"""What every controller shares: its context, the queue-driven reconcile loop, and helpers.

A controller is a class with a ``name`` (upstream's ``--controllers`` name) built from a
:class:`ControllerContext` (API client, the process's shared informer factory, an event
recorder, options, clock). Its constructor only *registers* informers and handlers; ``run()``
waits for the caches and runs the workers. Most controllers are :class:`QueueController`\\ s:
handlers turn informer events into keys on a rate-limited :class:`~hyperkube.client.WorkQueue`,
and ``reconcile(key)`` drives one object to its desired state, reading from the informers'
caches and writing through the client. A failing reconcile is retried with per-key backoff.

Helpers here implement the bits of ``pkg/controller`` several controllers use: controller
references, pod readiness/availability, and expectations (so a controller never acts twice on
a change its own informer has not yet shown it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hyperkube.client import (
    Client,
    EventRecorder,
    SharedInformerFactory,
    WorkQueue,
    meta_namespace_key,
    run_worker,
)
from hyperkube.client.timeutil import parse_time

log = logging.getLogger("hyperkube.controllers")

Obj = dict[str, Any]


@dataclass
class Options:
    """The controller manager's tunables (upstream flag names in comments)."""

    concurrent_syncs: int = 5  # --concurrent-*-syncs
    node_monitor_period: float = 5.0  # --node-monitor-period
    node_monitor_grace_period: float = 40.0  # --node-monitor-grace-period
    node_startup_grace_period: float = 60.0  # --node-startup-grace-period
    node_eviction_rate: float = 0.1  # --node-eviction-rate (nodes per second)
    secondary_node_eviction_rate: float = 0.01  # --secondary-node-eviction-rate
    large_cluster_size_threshold: int = 50  # --large-cluster-size-threshold
    unhealthy_zone_threshold: float = 0.55  # --unhealthy-zone-threshold
    default_toleration_seconds: float = 300.0  # DefaultTolerationSeconds admission default
    cluster_cidr: str = "10.244.0.0/16"  # --cluster-cidr
    node_cidr_mask_size: int = 24  # --node-cidr-mask-size
    allocate_node_cidrs: bool = True  # --allocate-node-cidrs
    endpoint_updates_batch_period: float = 0.0  # --endpoint-updates-batch-period
    max_endpoints_per_slice: int = 100  # --max-endpoints-per-slice
    burst_replicas: int = 500
    terminated_pod_gc_threshold: int = 12500  # --terminated-pod-gc-threshold
    pod_gc_period: float = 20.0  # upstream's gcCheckPeriod
    pod_gc_quarantine: float = 40.0  # how long a pod's node must be missing before podgc acts
    extra: dict[str, Any] = field(default_factory=dict)


class ControllerContext:
    """What the controller manager hands each controller."""

    def __init__(
        self,
        client: Client,
        factory: SharedInformerFactory | None = None,
        options: Options | None = None,
        clock: Callable[[], float] = time.time,
        host: str = "",
    ):
        self.client = client
        self.factory = factory or SharedInformerFactory(client)
        self.options = options or Options()
        self.clock = clock
        self.host = host
        self._recorders: dict[str, EventRecorder] = {}

    def recorder(self, component: str) -> EventRecorder:
        r = self._recorders.get(component)
        if r is None:
            r = self._recorders[component] = EventRecorder(self.client, component, self.host)
        return r

    async def close(self) -> None:
        for r in self._recorders.values():
            await r.close()


class Controller:
    """Base class: ``name`` + ``run()``; subclasses register informers in ``__init__``."""

    name = ""

    def __init__(self, ctx: ControllerContext):
        self.ctx = ctx
        self.client = ctx.client
        self.options = ctx.options
        self.reconciles = 0
        self.errors = 0
        self.reconcile_seconds = 0.0

    async def run(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def metrics(self) -> dict[str, float]:
        return {}


class QueueController(Controller):
    """A controller driven by one work queue of keys."""

    workers = 5
    informers: tuple = ()

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.queue = WorkQueue(self.name)
        self.workers = ctx.options.concurrent_syncs or self.workers

    def enqueue(self, obj: Obj | str) -> None:
        self.queue.add(obj if isinstance(obj, str) else meta_namespace_key(obj))

    def enqueue_after(self, obj: Obj | str, delay: float) -> None:
        self.queue.add_after(obj if isinstance(obj, str) else meta_namespace_key(obj), delay)

    async def reconcile(self, key: str) -> float | None:  # pragma: no cover - abstract
        raise NotImplementedError

    async def _timed(self, key: str) -> float | None:
        t0 = time.perf_counter()
        self.reconciles += 1
        try:
            return await self.reconcile(key)
        except Exception as e:
            self.errors += 1
            log.info("%s: syncing %s failed: %s", self.name, key, e)
            raise
        finally:
            self.reconcile_seconds += time.perf_counter() - t0

    async def wait_for_caches(self) -> None:
        infs = self.informers or ()
        while True:
            if all(i.has_synced for i in infs):
                return
            await asyncio.sleep(0.05)

    async def run(self) -> None:
        await self.wait_for_caches()
        tasks = [
            asyncio.create_task(run_worker(self.queue, self._timed), name=f"{self.name}-worker-{i}")
            for i in range(self.workers)
        ]
        extra = self.background()
        if extra is not None:
            tasks.append(asyncio.create_task(extra, name=f"{self.name}-loop"))
        try:
            await asyncio.gather(*tasks)
        finally:
            self.queue.shut_down()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def background(self) -> Any:
        """An optional extra coroutine run beside the workers (periodic monitors)."""
        return None

    def metrics(self) -> dict[str, float]:
        q = self.queue
        return {
            "depth": q.depth,
            "adds": q.adds,
            "retries": q.retries,
            "work_seconds": q.work_seconds_total,
            "work_count": q.work_count,
            "longest_running": q.longest_running,
        }


# -- object helpers ------------------------------------------------------------------------------


def meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def name_of(obj: Obj) -> str:
    return meta(obj).get("name", "")


def ns_of(obj: Obj) -> str:
    return meta(obj).get("namespace", "")


def uid_of(obj: Obj) -> str:
    return meta(obj).get("uid", "")


def is_deleting(obj: Obj) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def controller_ref(obj: Obj) -> Obj | None:
    for r in meta(obj).get("ownerReferences") or ():
        if r.get("controller"):
            return r
    return None


def owner_reference(owner: Obj, *, controller: bool = True, block: bool = True) -> Obj:
    return {
        "apiVersion": owner.get("apiVersion", ""),
        "kind": owner.get("kind", ""),
        "name": name_of(owner),
        "uid": uid_of(owner),
        "controller": controller,
        "blockOwnerDeletion": block,
    }


def index_orphans_by_namespace(obj: Obj) -> list[str]:
    """Index: objects without a controller, by namespace (candidates for adoption)."""
    if controller_ref(obj) is None:
        ns = ns_of(obj)
        return [ns] if ns else []
    return []


def pod_condition(pod: Obj, ctype: str) -> Obj | None:
    for c in (pod.get("status") or {}).get("conditions") or ():
        if c.get("type") == ctype:
            return c
    return None


def is_pod_ready(pod: Obj) -> bool:
    c = pod_condition(pod, "Ready")
    return bool(c and c.get("status") == "True")


def is_pod_active(pod: Obj) -> bool:
    """Not terminal and not being deleted (upstream's ``IsPodActive``)."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not is_deleting(pod)


def ready_since(pod: Obj) -> float | None:
    c = pod_condition(pod, "Ready")
    if not c or c.get("status") != "True":
        return None
    t = parse_time(c.get("lastTransitionTime"))
    return t.timestamp() if t else 0.0


def is_pod_available(pod: Obj, min_ready_seconds: float, now: float) -> bool:
    if not is_pod_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = ready_since(pod)
    return since is not None and since + min_ready_seconds <= now


class Expectations:
    """Per-controller-key counts of creates/deletes in flight (upstream's ControllerExpectations).

    A controller that created N pods must not create more before its informer has seen those N
    (or their failures were accounted). ``satisfied(key)`` is true when nothing is pending or the
    record is older than ``ttl`` (a lost event must not block the controller forever).
    """

    def __init__(self, ttl: float = 300.0, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.clock = clock
        self._rec: dict[str, list[Any]] = {}  # key -> [adds, dels(set of pod keys), timestamp]

    def expect(self, key: str, adds: int = 0, dels: set[str] | None = None) -> None:
        self._rec[key] = [adds, set(dels or ()), self.clock()]

    def raise_adds(self, key: str, n: int) -> None:
        r = self._rec.setdefault(key, [0, set(), self.clock()])
        r[0] += n

    def creation_observed(self, key: str) -> None:
        r = self._rec.get(key)
        if r is not None and r[0] > 0:
            r[0] -= 1

    def deletion_observed(self, key: str, pod_key: str) -> None:
        r = self._rec.get(key)
        if r is not None:
            r[1].discard(pod_key)

    def satisfied(self, key: str) -> bool:
        r = self._rec.get(key)
        if r is None:
            return True
        if (r[0] <= 0 and not r[1]) or self.clock() - r[2] > self.ttl:
            return True
        return False

    def delete(self, key: str) -> None:
        self._rec.pop(key, None)


def _rv_int(obj: Obj | None) -> int:
    try:
        return int(meta(obj or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def observe_write(informer: Any, obj: Obj) -> None:
    """Put the object a write returned into the informer's cache when it is newer than the cached
    one (a mutation cache): the next sync then starts from what we wrote, not from a stale copy,
    which avoids a round of 409 Conflicts while the watch event is in flight."""
    store = informer.store
    cur = store.get(store.key_func(obj))
    if cur is None or _rv_int(obj) > _rv_int(cur):
        if "kind" not in obj and cur is not None:
            obj = dict(obj, kind=cur.get("kind"), apiVersion=cur.get("apiVersion"))
        store.add(obj)
