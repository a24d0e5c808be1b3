"""Pod garbage collector (upstream's podgc): pods nobody else will ever clean up.

Every ``gc_period`` (20 s) it force-deletes (grace 0):

- **orphaned** pods: bound to a Node that does not exist, once the Node has been missing for the
  quarantine time (40 s, re-checked with a live GET so a slow node cache never kills a pod);
- **unscheduled terminating** pods: marked for deletion but never bound, so no kubelet will ever
  confirm the deletion;
- **terminating pods on out-of-service nodes**: the node is not Ready and carries the
  ``node.kubernetes.io/out-of-service`` taint (the operator's "this node is gone" signal);
- the oldest **terminated** pods (Succeeded/Failed) above ``terminated_pod_gc_threshold`` (12,500).

Orphaned and out-of-service pods first get the ``DisruptionTarget`` condition (``DeletionByPodGC``),
as upstream.
"""

from __future__ import annotations

import asyncio
import logging
import time

from hyperkube.client import NODES, PODS, ApiError, Conflict, NotFound
from hyperkube.client.timeutil import parse_time, rfc3339
from hyperkube.controllers.base import Controller, ControllerContext, Obj, is_deleting, meta, name_of, ns_of
from hyperkube.controllers.nodelifecycle import ready_condition

log = logging.getLogger("hyperkube.controllers.podgc")
OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"


class PodGCController(Controller):
    name = "podgc"

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.pod_informer = ctx.factory.informer(PODS)
        self.node_informer = ctx.factory.informer(NODES)
        self.informers = (self.pod_informer, self.node_informer)
        self.gc_period = ctx.options.pod_gc_period
        self.quarantine = ctx.options.pod_gc_quarantine
        self.threshold = ctx.options.terminated_pod_gc_threshold
        self.missing_since: dict[str, float] = {}
        self.deleted = 0

    async def gc_once(self) -> None:
        pods = self.pod_informer.list()
        now = time.monotonic()
        nodes = {name_of(n): n for n in self.node_informer.list()}
        # terminated pods over the threshold, oldest first
        terminated = [
            p
            for p in pods
            if (p.get("status") or {}).get("phase") in ("Succeeded", "Failed") and not is_deleting(p)
        ]
        if self.threshold > 0 and len(terminated) > self.threshold:
            terminated.sort(key=lambda p: (parse_time(meta(p).get("creationTimestamp")) or 0, name_of(p)))  # type: ignore[arg-type, return-value]
            for p in terminated[: len(terminated) - self.threshold]:
                await self._delete(p, condition=False)
        seen_missing: set[str] = set()
        for p in pods:
            node_name = (p.get("spec") or {}).get("nodeName") or ""
            if not node_name:
                if is_deleting(p):
                    await self._delete(p, condition=False)
                continue
            node = nodes.get(node_name)
            if node is None:
                seen_missing.add(node_name)
                first = self.missing_since.setdefault(node_name, now)
                if now - first >= self.quarantine and await self._node_gone(node_name):
                    await self._delete(p, condition=True)
                continue
            if is_deleting(p):
                taints = {
                    (t.get("key"), t.get("effect")) for t in (node.get("spec") or {}).get("taints") or ()
                }
                ready = (ready_condition(node) or {}).get("status") == "True"
                if not ready and any(k == OUT_OF_SERVICE for k, _ in taints):
                    await self._delete(p, condition=True)
        for n in list(self.missing_since):
            if n not in seen_missing:
                del self.missing_since[n]

    async def _node_gone(self, name: str) -> bool:
        try:
            await self.client.get(NODES, name)
            return False
        except NotFound:
            return True

    async def _delete(self, pod: Obj, condition: bool) -> None:
        if condition:
            status = dict(pod.get("status") or {})
            conds = [c for c in status.get("conditions") or () if c.get("type") != "DisruptionTarget"]
            conds.append(
                {
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "DeletionByPodGC",
                    "message": "PodGC: node no longer exists"
                    if not is_deleting(pod)
                    else "PodGC: node is out of service",
                    "lastTransitionTime": rfc3339(),
                }
            )
            try:
                await self.client.update(
                    PODS, dict(pod, status=dict(status, conditions=conds)), ns_of(pod), subresource="status"
                )
            except ApiError:
                pass
        try:
            await self.client.delete(
                PODS,
                name_of(pod),
                ns_of(pod),
                grace_period_seconds=0,
                preconditions={"uid": meta(pod).get("uid")},
            )
            self.deleted += 1
            log.info("force-deleted pod %s/%s", ns_of(pod), name_of(pod))
        except (NotFound, Conflict):
            pass

    async def run(self) -> None:
        while not all(i.has_synced for i in self.informers):
            await asyncio.sleep(0.05)
        while True:
            try:
                await self.gc_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                log.exception("pod GC pass failed")
            await asyncio.sleep(self.gc_period)

    def metrics(self) -> dict[str, float]:
        return {"deleted": self.deleted}
