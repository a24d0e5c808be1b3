"""Node lifecycle: node health from heartbeats, NotReady/unreachable taints, taint-based eviction.

Upstream's node lifecycle controller plus its NoExecute taint manager:

- **Heartbeats.** A node is alive while its Lease in ``kube-node-lease`` is renewed or its
  Ready condition's ``lastHeartbeatTime`` moves. What counts is the *local* time at which we saw
  either change (as upstream's probeTimestamp), so clock skew between machines is harmless.
- **Monitor** (every ``--node-monitor-period``): a node silent for ``--node-monitor-grace-period``
  (40 s; ``--node-startup-grace-period`` if it never reported) gets Ready, MemoryPressure,
  DiskPressure and PIDPressure set to Unknown (``NodeStatusUnknown``, "Kubelet stopped posting node
  status."), its pods' Ready condition is set to False, and a ``NodeNotReady`` event is recorded.
- **Taints.** Ready=False → ``node.kubernetes.io/not-ready``, Ready=Unknown →
  ``node.kubernetes.io/unreachable``, each with effect NoExecute (with ``timeAdded``) and NoSchedule;
  ``spec.unschedulable`` → ``node.kubernetes.io/unschedulable:NoSchedule``. They go away when the
  node is Ready again. Adding NoExecute taints is rate-limited per zone, as upstream: a token
  bucket of ``--node-eviction-rate`` (0.1 node/s, burst 1) while the zone is healthy;
  ``--secondary-node-eviction-rate`` in a partially disrupted zone (>2 and ≥55 % of its nodes not
  ready) of more than ``--large-cluster-size-threshold`` nodes, 0 in a small one; and when every
  node of every zone is down, no taints at all (the control plane's own network is the likelier
  culprit), existing ones being removed.
- **Eviction** (the taint manager): a pod on a node with NoExecute taints is deleted when it does
  not tolerate one of them, or after the shortest ``tolerationSeconds`` of its matching
  tolerations counted from the taint's ``timeAdded``. A pod without any toleration for
  not-ready/unreachable is treated as tolerating them for ``--default-toleration-seconds`` (300),
  what the DefaultTolerationSeconds admission plugin would have added. Before deleting, the pod
  gets the ``DisruptionTarget`` condition (``DeletionByTaintManager``) and a
  ``TaintManagerEviction`` event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from hyperkube.client import (
    LEASES,
    NODES,
    NORMAL,
    PODS,
    ApiError,
    Conflict,
    NotFound,
    WorkQueue,
    index_by_field,
    run_worker,
)
from hyperkube.client.timeutil import parse_time, rfc3339
from hyperkube.controllers.base import (
    Controller,
    ControllerContext,
    Obj,
    is_deleting,
    meta,
    name_of,
    ns_of,
    pod_condition,
)

log = logging.getLogger("hyperkube.controllers.nodelifecycle")

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
MANAGED_TAINTS = {NOT_READY, UNREACHABLE, UNSCHEDULABLE}
LEASE_NS = "kube-node-lease"
UNKNOWN_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")
ZONE_LABELS = ("topology.kubernetes.io/region", "topology.kubernetes.io/zone")


def ready_condition(node: Obj) -> Obj | None:
    for c in (node.get("status") or {}).get("conditions") or ():
        if c.get("type") == "Ready":
            return c
    return None


def tolerates(tol: Obj, taint: Obj) -> bool:
    """Upstream's ``Toleration.ToleratesTaint``."""
    if tol.get("effect") and tol.get("effect") != taint.get("effect"):
        return False
    key = tol.get("key") or ""
    if key and key != taint.get("key"):
        return False
    op = tol.get("operator") or "Equal"
    if op == "Exists":
        return True
    return op == "Equal" and (tol.get("value") or "") == (taint.get("value") or "")


def eviction_deadline(pod: Obj, taints: list[Obj], default_seconds: float) -> float | None:
    """Seconds since the epoch when the pod must go (``0`` = now), or None (tolerates forever)."""
    tols = list((pod.get("spec") or {}).get("tolerations") or ())
    deadline: float | None = None
    for taint in taints:
        if taint.get("effect") != "NoExecute":
            continue
        matching = [t for t in tols if tolerates(t, taint)]
        if not matching:
            if taint.get("key") in (NOT_READY, UNREACHABLE):
                matching = [{"tolerationSeconds": default_seconds}]
            else:
                return 0.0
        secs = [t.get("tolerationSeconds") for t in matching]
        if any(s is None for s in secs):
            continue  # tolerated forever
        added = parse_time(taint.get("timeAdded"))
        start = added.timestamp() if added else time.time()
        d = start + max(0.0, float(min(secs)))  # type: ignore[type-var]
        deadline = d if deadline is None else min(deadline, d)
    return deadline


def _rv(obj: Obj) -> int:
    try:
        return int(meta(obj).get("resourceVersion") or 0)
    except ValueError:
        return 0


def zone_of(node: Obj) -> str:
    labels = meta(node).get("labels") or {}
    return ":\x00:".join(labels.get(k, "") for k in ZONE_LABELS)


class TokenBucket:
    def __init__(self, qps: float, burst: int = 1):
        self.qps, self.burst = qps, burst
        self.tokens = float(burst)
        self.last = time.monotonic()

    def set_rate(self, qps: float) -> None:
        self._refill()
        self.qps = qps

    def _refill(self) -> None:
        now = time.monotonic()
        if self.qps > 0:
            self.tokens = min(float(self.burst), self.tokens + (now - self.last) * self.qps)
        self.last = now

    def try_take(self) -> bool:
        self._refill()
        if self.qps <= 0:
            return False
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class NodeLifecycleController(Controller):
    name = "nodelifecycle"
    component = "node-controller"

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        f = ctx.factory
        self.node_informer = f.informer(NODES)
        self.lease_informer = f.informer(LEASES, namespace=LEASE_NS)
        self.pod_informer = f.informer(PODS, indexers={"node": index_by_field("spec.nodeName")})
        self.informers = (self.node_informer, self.lease_informer, self.pod_informer)
        self.recorder = ctx.recorder(self.component)
        self.probe: dict[str, float] = {}  # node -> local monotonic time of the last sign of life
        self._seen: dict[str, tuple[str, str]] = {}  # node -> (ready heartbeat, lease renewTime)
        self.buckets: dict[str, TokenBucket] = {}
        self.zone_states: dict[str, str] = {}
        self.pod_queue = WorkQueue("node_lifecycle_eviction")
        self.evictions = 0
        self._evicted: dict[str, float] = {}
        self.node_informer.add_event_handler(self._node, lambda o, n: self._node(n), self._node_deleted)
        self.lease_informer.add_event_handler(self._lease, lambda o, n: self._lease(n), None)
        self.pod_informer.add_event_handler(self._pod, lambda o, n: self._pod(n), None)

    # -- observations -----------------------------------------------------------------------------

    def _touch(self, node: str, heartbeat: str | None = None, renew: str | None = None) -> None:
        hb, rn = self._seen.get(node, ("", ""))
        changed = node not in self.probe
        if heartbeat is not None and heartbeat != hb:
            hb, changed = heartbeat, True
        if renew is not None and renew != rn:
            rn, changed = renew, True
        self._seen[node] = (hb, rn)
        if changed:
            self.probe[node] = time.monotonic()

    def _node(self, node: Obj) -> None:
        c = ready_condition(node)
        self._touch(name_of(node), heartbeat=(c or {}).get("lastHeartbeatTime") or "")
        for t in (node.get("spec") or {}).get("taints") or ():
            if t.get("effect") == "NoExecute":
                for p in self.pod_informer.by_index("node", name_of(node)):
                    self.pod_queue.add(f"{ns_of(p)}/{name_of(p)}")
                break

    def _node_deleted(self, node: Obj) -> None:
        n = name_of(node)
        self.probe.pop(n, None)
        self._seen.pop(n, None)

    def _lease(self, lease: Obj) -> None:
        renew = (lease.get("spec") or {}).get("renewTime") or ""
        if self.node_informer.get(name_of(lease)) is not None or name_of(lease) in self.probe:
            self._touch(name_of(lease), renew=renew)

    def _pod(self, pod: Obj) -> None:
        node = (pod.get("spec") or {}).get("nodeName")
        if not node or is_deleting(pod):
            return
        n = self.node_informer.get(node)
        if n and any(t.get("effect") == "NoExecute" for t in (n.get("spec") or {}).get("taints") or ()):
            self.pod_queue.add(f"{ns_of(pod)}/{name_of(pod)}")

    # -- monitor ----------------------------------------------------------------------------------

    async def monitor_once(self) -> None:
        opts = self.options
        now = time.monotonic()
        nodes = self.node_informer.list()
        states: dict[str, list[int]] = {}
        status_of: dict[str, str] = {}
        fresh: dict[str, Obj] = {}  # nodes written in this pass (newer than the cache)
        for node in nodes:
            n = name_of(node)
            if n not in self.probe:
                self._touch(n)
            c = ready_condition(node)
            grace = opts.node_monitor_grace_period if c is not None else opts.node_startup_grace_period
            status = (c or {}).get("status") or "Unknown"
            if now - self.probe[n] > grace and not (
                c is not None
                and status == "Unknown"
                and c.get("reason") in ("NodeStatusUnknown", "NodeStatusNeverUpdated")
            ):
                marked = await self._mark_unknown(node, c is None)
                if marked is not None:
                    fresh[n] = marked
                status = "Unknown"
            status_of[n] = status
            z = states.setdefault(zone_of(node), [0, 0, 0])
            z[0 if status == "True" else 1] += 1
            z[2] += 1
        all_down = bool(states) and all(r == 0 and nr > 0 for r, nr, _ in states.values())
        for zone, (ready, not_ready, size) in states.items():
            if ready == 0 and not_ready > 0:
                state = "FullDisruption"
            elif not_ready > 2 and not_ready / (ready + not_ready) >= opts.unhealthy_zone_threshold:
                state = "PartialDisruption"
            else:
                state = "Normal"
            if self.zone_states.get(zone) != state:
                log.info("zone %r is now %s (%d ready, %d not ready)", zone, state, ready, not_ready)
            self.zone_states[zone] = state
            if state == "PartialDisruption":
                rate = opts.secondary_node_eviction_rate if size > opts.large_cluster_size_threshold else 0.0
            else:
                rate = opts.node_eviction_rate
            b = self.buckets.get(zone)
            if b is None:
                b = self.buckets[zone] = TokenBucket(rate, 1)
            b.set_rate(rate)
        for node in nodes:
            n = name_of(node)
            cached = self.node_informer.get(n) or node
            latest = fresh.get(n)
            if latest is not None and _rv(latest) > _rv(cached):
                cached = latest
            await self._sync_taints(cached, status_of[n], all_down)

    async def _mark_unknown(self, node: Obj, never: bool) -> Obj | None:
        n = name_of(node)
        now = rfc3339()
        reason = "NodeStatusNeverUpdated" if never else "NodeStatusUnknown"
        message = "Kubelet never posted node status." if never else "Kubelet stopped posting node status."
        status = dict(node.get("status") or {})
        conds = {c.get("type"): dict(c) for c in status.get("conditions") or ()}
        was_ready = (conds.get("Ready") or {}).get("status") == "True"
        for t in UNKNOWN_CONDITIONS:
            c = conds.get(t) or {"type": t, "lastHeartbeatTime": now}
            if c.get("status") != "Unknown":
                c["lastTransitionTime"] = now
            c.update({"status": "Unknown", "reason": reason, "message": message})
            conds[t] = c
        status["conditions"] = list(conds.values())
        try:
            out = await self.client.update(NODES, dict(node, status=status), subresource="status")
        except (Conflict, NotFound) as e:
            log.debug("marking %s unknown: %s", n, e)
            return None
        log.info("node %s: %s", n, message)
        if was_ready or never:
            self.recorder.event(node, NORMAL, "NodeNotReady", f"Node {n} status is now: NodeNotReady")
        await self._mark_pods_not_ready(n)
        return out

    async def _mark_pods_not_ready(self, node: str) -> None:
        for pod in self.pod_informer.by_index("node", node):
            c = pod_condition(pod, "Ready")
            if c is None or c.get("status") != "True" or is_deleting(pod):
                continue
            status = dict(pod.get("status") or {})
            status["conditions"] = [
                dict(x, status="False", lastTransitionTime=rfc3339()) if x.get("type") == "Ready" else x
                for x in status.get("conditions") or ()
            ]
            try:
                await self.client.update(PODS, dict(pod, status=status), ns_of(pod), subresource="status")
            except ApiError as e:
                log.debug("marking pod %s/%s not ready: %s", ns_of(pod), name_of(pod), e)

    async def _sync_taints(self, node: Obj, status: str, all_down: bool) -> None:
        spec = node.get("spec") or {}
        taints = list(spec.get("taints") or ())
        have = {(t.get("key"), t.get("effect")) for t in taints}
        want: set[tuple[str, str]] = set()
        if status == "False":
            want |= {(NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute")}
        elif status == "Unknown":
            want |= {(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")}
        if spec.get("unschedulable"):
            want.add((UNSCHEDULABLE, "NoSchedule"))
        if all_down:
            want = {w for w in want if w[1] != "NoExecute"}
        managed_have = {h for h in have if h[0] in MANAGED_TAINTS}
        if managed_have == want:
            return
        adding_noexec = any(w[1] == "NoExecute" and w not in have for w in want)
        if adding_noexec:
            bucket = self.buckets.get(zone_of(node))
            if bucket is not None and not bucket.try_take():
                want = {w for w in want if w[1] != "NoExecute" or w in have}  # later, rate-limited
                if managed_have == want:
                    return
        now = rfc3339()
        new = [
            t
            for t in taints
            if (t.get("key"), t.get("effect")) not in managed_have or (t.get("key"), t.get("effect")) in want
        ]
        for key, effect in sorted(want - have):
            t: Obj = {"key": key, "effect": effect}
            if effect == "NoExecute":
                t["timeAdded"] = now
            new.append(t)
        body = dict(node, spec=dict(spec, taints=new or None))
        if not new:
            body["spec"].pop("taints", None)
        try:
            await self.client.update(NODES, body)
        except (Conflict, NotFound) as e:
            log.debug("tainting %s: %s (next pass retries)", name_of(node), e)
            return
        log.info("node %s taints: %s", name_of(node), sorted(f"{k}:{e}" for k, e in want) or "none")

    # -- eviction ---------------------------------------------------------------------------------

    async def reconcile_pod(self, key: str) -> float | None:
        ns, _, name = key.partition("/")
        pod = self.pod_informer.get(name, ns)
        if pod is None or is_deleting(pod):
            return None
        node = self.node_informer.get((pod.get("spec") or {}).get("nodeName") or "")
        if node is None:
            return None
        taints = [t for t in (node.get("spec") or {}).get("taints") or () if t.get("effect") == "NoExecute"]
        if not taints:
            return None
        deadline = eviction_deadline(pod, taints, self.options.default_toleration_seconds)
        if deadline is None:
            return None
        wait = deadline - self.ctx.clock()
        if wait > 0:
            return wait
        await self.evict(pod)
        return None

    async def evict(self, pod: Obj) -> None:
        uid = meta(pod).get("uid") or ""
        now = time.monotonic()
        if now - self._evicted.get(uid, -1e9) < 30:
            return  # already deleted; the cache has not caught up yet
        if len(self._evicted) > 10000:
            self._evicted = {u: t for u, t in self._evicted.items() if now - t < 30}
        self._evicted[uid] = now
        self.evictions += 1
        self.recorder.event(
            pod, NORMAL, "TaintManagerEviction", f"Marking for deletion Pod {ns_of(pod)}/{name_of(pod)}"
        )
        status = dict(pod.get("status") or {})
        conds = [c for c in status.get("conditions") or () if c.get("type") != "DisruptionTarget"]
        conds.append(
            {
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "DeletionByTaintManager",
                "message": "Taint manager: deleting due to NoExecute taint",
                "lastTransitionTime": rfc3339(),
            }
        )
        try:
            await self.client.update(
                PODS, dict(pod, status=dict(status, conditions=conds)), ns_of(pod), subresource="status"
            )
        except ApiError as e:
            log.debug("DisruptionTarget on %s/%s: %s", ns_of(pod), name_of(pod), e)
        try:
            await self.client.delete(
                PODS, name_of(pod), ns_of(pod), preconditions={"uid": meta(pod).get("uid")}
            )
        except (NotFound, Conflict):
            pass

    # -- run ----------------------------------------------------------------------------------------

    async def run(self) -> None:
        while not all(i.has_synced for i in self.informers):
            await asyncio.sleep(0.05)
        for n in self.node_informer.list():
            self._touch(name_of(n))
        workers = [asyncio.create_task(run_worker(self.pod_queue, self.reconcile_pod)) for _ in range(4)]
        try:
            while True:
                try:
                    await self.monitor_once()
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - the monitor must keep running
                    log.exception("node monitor pass failed")
                await asyncio.sleep(self.options.node_monitor_period)
        finally:
            self.pod_queue.shut_down()
            for w in workers:
                w.cancel()

    def metrics(self) -> dict[str, Any]:
        return {"depth": self.pod_queue.depth, "adds": self.pod_queue.adds, "evictions": self.evictions}
