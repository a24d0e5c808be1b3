"""ReplicaSet controller: keep ``spec.replicas`` pods matching the selector (pkg/controller/replicaset).

Per ReplicaSet key, ``reconcile``:

1. **claims** pods: candidates are the pods whose controllerRef is this ReplicaSet (an index on
   the controller uid) plus the orphans of its namespace (an index too), so a sync never scans
   every pod. Owned pods that stopped matching the selector are *released* (ownerReference
   removed); matching orphans are *adopted* (ownerReference added), both with a patch
   conditioned on the pod's uid and resourceVersion.
2. **manages replicas** when its expectations are satisfied (the informer has shown every create
   and delete of the previous sync, so nothing is done twice): too few active pods → create the
   missing ones in slow-start batches (1, 2, 4 ... stopping at the first error, so a quota or
   admission failure costs one request, not hundreds); too many → delete the least useful first,
   ranked as upstream: unscheduled < scheduled, Pending < Unknown < Running, not ready < ready,
   more pods of the set on the same node first, ready more recently first, more restarts first,
   newer first. At most ``burst_replicas`` (500) per sync.
3. writes **status**: replicas, fullyLabeledReplicas, readyReplicas, availableReplicas (ready for
   ``minReadySeconds``), observedGeneration, and the ReplicaFailure condition; it requeues itself
   when a ready pod will become available later.

Events: SuccessfulCreate, SuccessfulDelete, FailedCreate, FailedDelete.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any

from hyperkube import _native
from hyperkube.client import (
    NORMAL,
    PODS,
    REPLICASETS,
    WARNING,
    ApiError,
    Conflict,
    NotFound,
    index_by_controller_uid,
    meta_namespace_key,
)
from hyperkube.client.timeutil import parse_time, rfc3339
from hyperkube.controllers.base import (
    ControllerContext,
    Expectations,
    Obj,
    QueueController,
    controller_ref,
    index_orphans_by_namespace,
    is_deleting,
    is_pod_active,
    is_pod_available,
    is_pod_ready,
    meta,
    name_of,
    ns_of,
    owner_reference,
    ready_since,
    uid_of,
)

log = logging.getLogger("hyperkube.controllers.replicaset")

POD_INDEXERS = {"controller-uid": index_by_controller_uid, "orphans": index_orphans_by_namespace}
PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def selector_of(obj: Obj) -> Any:
    return _native.Selector.from_label_selector((obj.get("spec") or {}).get("selector"))


def deletion_order(pods: list[Obj]) -> list[Obj]:
    """Pods sorted least useful first (upstream's ``ActivePodsWithRanks`` ordering)."""
    per_node: dict[str, int] = {}
    for p in pods:
        n = (p.get("spec") or {}).get("nodeName") or ""
        if n:
            per_node[n] = per_node.get(n, 0) + 1

    def key(p: Obj) -> tuple:
        spec, status = p.get("spec") or {}, p.get("status") or {}
        node = spec.get("nodeName") or ""
        ready = is_pod_ready(p)
        since = ready_since(p) if ready else None
        restarts = sum(int(c.get("restartCount") or 0) for c in status.get("containerStatuses") or ())
        created = parse_time(meta(p).get("creationTimestamp"))
        return (
            1 if node else 0,
            PHASE_RANK.get(status.get("phase") or "Pending", 0),
            1 if ready else 0,
            -per_node.get(node, 0),
            -(since or 0.0),
            -restarts,
            -(created.timestamp() if created else 0.0),
        )

    return sorted(pods, key=key)


def pod_from_template(owner: Obj, template: Obj) -> Obj:
    tmeta = template.get("metadata") or {}
    md: Obj = {
        "generateName": f"{name_of(owner)}-",
        "namespace": ns_of(owner),
        "labels": dict(tmeta.get("labels") or {}),
        "ownerReferences": [owner_reference(owner)],
    }
    if tmeta.get("annotations"):
        md["annotations"] = dict(tmeta["annotations"])
    if tmeta.get("finalizers"):
        md["finalizers"] = list(tmeta["finalizers"])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": md,
        "spec": copy.deepcopy(template.get("spec") or {}),
    }


def set_condition(conds: list[Obj], cond: Obj | None, ctype: str) -> list[Obj]:
    out = [c for c in conds if c.get("type") != ctype]
    if cond is not None:
        old = next((c for c in conds if c.get("type") == ctype), None)
        if old is not None and old.get("status") == cond.get("status"):
            cond = dict(cond, lastTransitionTime=old.get("lastTransitionTime"))
        out.append(cond)
    return out


class ReplicaSetController(QueueController):
    name = "replicaset"
    kind = "ReplicaSet"
    resource = REPLICASETS
    component = "replicaset-controller"

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        f = ctx.factory
        self.rs_informer = f.informer(self.resource)
        self.pod_informer = f.informer(PODS, indexers=POD_INDEXERS)
        self.informers = (self.rs_informer, self.pod_informer)
        self.expectations = Expectations()
        self.recorder = ctx.recorder(self.component)
        self.burst = ctx.options.burst_replicas
        self.rs_informer.add_event_handler(self.enqueue, self._rs_updated, self._rs_deleted)
        self.pod_informer.add_event_handler(self._pod_added, self._pod_updated, self._pod_deleted)

    # -- event handlers -------------------------------------------------------------------------

    def _rs_updated(self, old: Obj, new: Obj) -> None:
        self.enqueue(new)

    def _rs_deleted(self, rs: Obj) -> None:
        key = meta_namespace_key(rs)
        self.expectations.delete(key)
        self.queue.add(key)

    def _owner_key(self, pod: Obj, ref: Obj | None) -> str | None:
        if ref is None or ref.get("kind") != self.kind:
            return None
        rs = self.rs_informer.get(ref.get("name", ""), ns_of(pod))
        if rs is None or uid_of(rs) != ref.get("uid"):
            return None
        return meta_namespace_key(rs)

    def _matching_sets(self, pod: Obj) -> list[str]:
        labels = meta(pod).get("labels") or {}
        if not labels:
            return []
        return [
            meta_namespace_key(rs)
            for rs in self.rs_informer.list(ns_of(pod))
            if selector_of(rs).matches(labels) and not selector_of(rs).empty
        ]

    def _pod_added(self, pod: Obj) -> None:
        if is_deleting(pod):
            self._pod_deleted(pod)
            return
        key = self._owner_key(pod, controller_ref(pod))
        if key is not None:
            self.expectations.creation_observed(key)
            self.queue.add(key)
        elif controller_ref(pod) is None:
            for k in self._matching_sets(pod):
                self.queue.add(k)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if meta(old).get("resourceVersion") == meta(new).get("resourceVersion"):
            return
        if is_deleting(new) and not is_deleting(old):
            self._pod_deleted(new)
            return
        old_ref, new_ref = controller_ref(old), controller_ref(new)
        labels_changed = meta(old).get("labels") != meta(new).get("labels")
        if old_ref != new_ref and old_ref is not None:
            k = self._owner_key(old, old_ref)
            if k:
                self.queue.add(k)
        key = self._owner_key(new, new_ref)
        if key is not None:
            self.queue.add(key)
            rs = self.rs_informer.store.get(key)
            mrs = float(((rs or {}).get("spec") or {}).get("minReadySeconds") or 0)
            if mrs > 0 and not is_pod_ready(old) and is_pod_ready(new):
                self.queue.add_after(key, mrs + 0.01)
        elif new_ref is None and (labels_changed or old_ref is not None):
            for k in self._matching_sets(new):
                self.queue.add(k)

    def _pod_deleted(self, pod: Obj) -> None:
        key = self._owner_key(pod, controller_ref(pod))
        if key is not None:
            self.expectations.deletion_observed(key, meta_namespace_key(pod))
            self.queue.add(key)

    # -- reconcile ----------------------------------------------------------------------------------

    async def reconcile(self, key: str) -> float | None:
        ns, _, name = key.partition("/")
        rs = self.rs_informer.get(name, ns)
        if rs is None:
            self.expectations.delete(key)
            return None
        needs_sync = self.expectations.satisfied(key)
        selector = selector_of(rs)
        pods = await self.claim_pods(rs, selector)
        active = [p for p in pods if is_pod_active(p)]
        err: Exception | None = None
        if needs_sync and not is_deleting(rs):
            try:
                await self.manage_replicas(key, rs, active)
            except Exception as e:  # noqa: BLE001 - reported in status, then retried
                err = e
        status = self.calculate_status(rs, active, err)
        rs = await self.update_status(rs, status)
        if err is not None:
            raise err
        mrs = float((rs.get("spec") or {}).get("minReadySeconds") or 0)
        if mrs > 0 and status["readyReplicas"] != status["availableReplicas"]:
            return mrs
        return None

    async def claim_pods(self, rs: Obj, selector: Any) -> list[Obj]:
        store = self.pod_informer.store
        uid = uid_of(rs)
        owned = store.by_index("controller-uid", uid)
        orphans = store.by_index("orphans", ns_of(rs))
        out: list[Obj] = []
        release: list[Obj] = []
        adopt: list[Obj] = []
        if owned:
            matches = selector.match_many([meta(p).get("labels") for p in owned])
            for p, ok in zip(owned, matches, strict=True):
                if ok or selector.empty:
                    out.append(p)
                elif not is_deleting(p):
                    release.append(p)
        if orphans and not is_deleting(rs) and not selector.empty:
            matches = selector.match_many([meta(p).get("labels") for p in orphans])
            adopt = [p for p, ok in zip(orphans, matches, strict=True) if ok and not is_deleting(p)]
        for p in release:
            refs = [r for r in meta(p).get("ownerReferences") or () if r.get("uid") != uid]
            await self._patch_owners(p, refs)
        for p in adopt:
            refs = [*(meta(p).get("ownerReferences") or ()), owner_reference(rs)]
            patched = await self._patch_owners(p, refs)
            if patched is not None:
                out.append(patched)
        return out

    async def _patch_owners(self, pod: Obj, refs: list[Obj]) -> Obj | None:
        patch = {
            "metadata": {
                "ownerReferences": refs,
                "uid": uid_of(pod),
                "resourceVersion": meta(pod).get("resourceVersion"),
            }
        }
        try:
            return await self.client.patch(PODS, name_of(pod), patch, ns_of(pod))
        except (NotFound, Conflict):
            return None  # gone or changed: the next sync sees the new state

    async def manage_replicas(self, key: str, rs: Obj, active: list[Obj]) -> None:
        want = int((rs.get("spec") or {}).get("replicas", 1) or 0)
        diff = len(active) - want
        if diff < 0:
            await self.create_pods(key, rs, min(-diff, self.burst))
        elif diff > 0:
            victims = deletion_order(active)[: min(diff, self.burst)]
            await self.delete_pods(key, rs, victims)

    async def create_pods(self, key: str, rs: Obj, count: int) -> None:
        template = (rs.get("spec") or {}).get("template") or {}
        self.expectations.expect(key, adds=count)
        remaining, batch = count, 1
        while remaining > 0:
            n = min(batch, remaining)
            results = await asyncio.gather(
                *(self.client.create(PODS, pod_from_template(rs, template), ns_of(rs)) for _ in range(n)),
                return_exceptions=True,
            )
            failures = [r for r in results if isinstance(r, BaseException)]
            for r in results:
                if isinstance(r, BaseException):
                    self.expectations.creation_observed(key)  # it will never be observed
                    self.recorder.event(rs, WARNING, "FailedCreate", f"Error creating: {_msg(r)}")
                else:
                    self.recorder.event(rs, NORMAL, "SuccessfulCreate", f"Created pod: {name_of(r)}")
            remaining -= n
            if failures:
                for _ in range(remaining):  # the rest are skipped: lower expectations
                    self.expectations.creation_observed(key)
                raise failures[0]
            batch *= 2

    async def delete_pods(self, key: str, rs: Obj, victims: list[Obj]) -> None:
        self.expectations.expect(key, dels={meta_namespace_key(p) for p in victims})
        results = await asyncio.gather(
            *(
                self.client.delete(PODS, name_of(p), ns_of(p), preconditions={"uid": uid_of(p)})
                for p in victims
            ),
            return_exceptions=True,
        )
        first: BaseException | None = None
        for p, r in zip(victims, results, strict=True):
            if isinstance(r, NotFound):
                self.expectations.deletion_observed(key, meta_namespace_key(p))
            elif isinstance(r, BaseException):
                self.expectations.deletion_observed(key, meta_namespace_key(p))
                self.recorder.event(rs, WARNING, "FailedDelete", f"Error deleting: {_msg(r)}")
                first = first or r
            else:
                self.recorder.event(rs, NORMAL, "SuccessfulDelete", f"Deleted pod: {name_of(p)}")
        if first is not None:
            raise first

    def calculate_status(self, rs: Obj, active: list[Obj], err: Exception | None) -> Obj:
        spec = rs.get("spec") or {}
        tlabels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        mrs = float(spec.get("minReadySeconds") or 0)
        now = self.ctx.clock()
        fully = ready = available = 0
        for p in active:
            labels = meta(p).get("labels") or {}
            if all(labels.get(k) == v for k, v in tlabels.items()):
                fully += 1
            if is_pod_ready(p):
                ready += 1
                if is_pod_available(p, mrs, now):
                    available += 1
        old = rs.get("status") or {}
        conds = list(old.get("conditions") or [])
        want = int(spec.get("replicas", 1) or 0)
        if err is not None and not isinstance(err, Conflict):
            reason = "FailedCreate" if len(active) < want else "FailedDelete"
            conds = set_condition(
                conds,
                {
                    "type": "ReplicaFailure",
                    "status": "True",
                    "reason": reason,
                    "message": _msg(err),
                    "lastTransitionTime": rfc3339(),
                },
                "ReplicaFailure",
            )
        elif err is None:
            conds = set_condition(conds, None, "ReplicaFailure")
        status: Obj = {
            "replicas": len(active),
            "fullyLabeledReplicas": fully,
            "readyReplicas": ready,
            "availableReplicas": available,
            "observedGeneration": meta(rs).get("generation", 0),
        }
        if conds:
            status["conditions"] = conds
        return status

    async def update_status(self, rs: Obj, status: Obj) -> Obj:
        old = rs.get("status") or {}
        if all(old.get(k, 0 if k != "conditions" else None) == v for k, v in status.items()) and (
            "conditions" in status or not old.get("conditions")
        ):
            return rs
        body = dict(rs, status=status)
        for attempt in range(2):
            try:
                return await self.client.update(self.resource, body, ns_of(rs), subresource="status")
            except Conflict:
                if attempt:
                    raise
                fresh = await self.client.get(self.resource, name_of(rs), ns_of(rs))
                body = dict(fresh, status=status)
            except NotFound:
                return rs
        return rs


def _msg(e: BaseException) -> str:
    return e.message if isinstance(e, ApiError) else f"{type(e).__name__}: {e}"
