"""Deployment controller: rollouts over ReplicaSets (pkg/controller/deployment).

A Deployment owns ReplicaSets; the one whose pod template equals the Deployment's (ignoring the
``pod-template-hash`` label) is the *new* ReplicaSet, the others are *old*. Per Deployment key:

- **claim** ReplicaSets (owned by controllerRef, or orphans matching the selector; release the
  ones that stopped matching), then pick new/old and sync the revision: the new ReplicaSet gets
  ``deployment.kubernetes.io/revision`` = max(old revisions) + 1 (so ``kubectl rollout undo``,
  which copies an old ReplicaSet's template back into the Deployment, makes that ReplicaSet new
  again with the next revision), and the Deployment carries the same annotation.
- **RollingUpdate** (maxSurge 25 % rounded up, maxUnavailable 25 % rounded down, never both 0):
  scale the new ReplicaSet up while the total stays within ``replicas + maxSurge``; scale old
  ReplicaSets down (unhealthy replicas first, then oldest ReplicaSet first) while the available
  total stays above ``replicas - maxUnavailable``. Decisions are conservative against the live pods
  in the shared pod cache: a ReplicaSet counts as ``max(spec.replicas, active pods)`` towards the
  surge bound and as ``min(spec.replicas, available pods)`` towards availability, so the bounds hold
  on the actual pods even while ReplicaSet statuses lag behind.
- **Recreate**: scale every old ReplicaSet to 0, wait until none of their pods runs, then scale up
  the new one.
- **Scaling** (``spec.replicas`` changed mid-rollout) is proportional across active ReplicaSets,
  using the ``desired-replicas`` annotation, as upstream; a **paused** Deployment only scales.
- **Status**: replicas, updatedReplicas, readyReplicas, availableReplicas, unavailableReplicas,
  observedGeneration, collisionCount and the Available / Progressing conditions, including
  ``ProgressDeadlineExceeded`` after ``progressDeadlineSeconds`` without progress (the key is
  requeued for the deadline), ``DeploymentPaused`` / ``DeploymentResumed``.
- **History**: old ReplicaSets scaled to zero beyond ``revisionHistoryLimit`` are deleted, oldest
  revision first.

New ReplicaSets are named ``{deployment}-{hash}`` where hash is an FNV-1a of the template and
``collisionCount``, encoded with upstream's safe alphabet; a name collision with a different
template bumps ``status.collisionCount``. Events: ScalingReplicaSet.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from typing import Any

from hyperkube.client import (
    DEPLOYMENTS,
    NORMAL,
    PODS,
    REPLICASETS,
    AlreadyExists,
    Conflict,
    NotFound,
    index_by_controller_uid,
    meta_namespace_key,
)
from hyperkube.client.timeutil import parse_time, rfc3339
from hyperkube.controllers.base import (
    ControllerContext,
    Obj,
    QueueController,
    controller_ref,
    index_orphans_by_namespace,
    is_deleting,
    is_pod_active,
    is_pod_available,
    meta,
    name_of,
    ns_of,
    observe_write,
    owner_reference,
    uid_of,
)
from hyperkube.controllers.replicaset import POD_INDEXERS, selector_of

log = logging.getLogger("hyperkube.controllers.deployment")

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
HASH_LABEL = "pod-template-hash"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
SKIP_ANNOTATIONS = {REVISION, REVISION_HISTORY, DESIRED, MAX_REPLICAS, LAST_APPLIED}
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
RS_INDEXERS = {"controller-uid": index_by_controller_uid, "orphans": index_orphans_by_namespace}


# -- pure helpers ------------------------------------------------------------------------------------


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def template_hash(template: Obj, collision_count: int | None = None) -> str:
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += collision_count.to_bytes(4, "little")
    return "".join(SAFE_ALPHABET[int(c) % len(SAFE_ALPHABET)] for c in str(fnv32a(data)))


def strip_hash(template: Obj) -> Obj:
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if labels and HASH_LABEL in labels:
        del labels[HASH_LABEL]
        if not labels:
            del t["metadata"]["labels"]
    if "metadata" in t and not t["metadata"]:
        del t["metadata"]
    return t


def equal_ignore_hash(a: Obj, b: Obj) -> bool:
    return strip_hash(a) == strip_hash(b)


def resolve(value: Any, total: int, round_up: bool) -> int:
    """An IntOrString (``3`` or ``"25%"``) against ``total``."""
    if value is None:
        value = "25%"
    if isinstance(value, int):
        return value
    s = str(value).strip()
    if s.endswith("%"):
        frac = float(s[:-1]) * total / 100
        return int(math.ceil(frac) if round_up else math.floor(frac))
    return int(s)


def replicas_of(obj: Obj | None) -> int:
    if obj is None:
        return 0
    r = (obj.get("spec") or {}).get("replicas")
    return 1 if r is None else int(r)


def revision_of(rs: Obj) -> int:
    try:
        return int((meta(rs).get("annotations") or {}).get(REVISION) or 0)
    except ValueError:
        return 0


def created_at(obj: Obj) -> tuple[float, str]:
    t = parse_time(meta(obj).get("creationTimestamp"))
    return (t.timestamp() if t else 0.0, name_of(obj))


def is_rolling(d: Obj) -> bool:
    return ((d.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate") != "Recreate"


def surge_and_unavailable(d: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) resolved as upstream's ResolveFenceposts (never both 0)."""
    if not is_rolling(d):
        return 0, 0
    ru = ((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
    n = replicas_of(d)
    surge = resolve(ru.get("maxSurge", "25%"), n, True)
    unavail = resolve(ru.get("maxUnavailable", "25%"), n, False)
    if surge == 0 and unavail == 0:
        unavail = 1
    return surge, unavail


def max_unavailable(d: Obj) -> int:
    n = replicas_of(d)
    if not is_rolling(d) or n == 0:
        return 0
    return min(surge_and_unavailable(d)[1], n)


def get_condition(status: Obj, ctype: str) -> Obj | None:
    for c in status.get("conditions") or ():
        if c.get("type") == ctype:
            return c
    return None


def new_condition(ctype: str, status: str, reason: str, message: str) -> Obj:
    now = rfc3339()
    return {
        "type": ctype,
        "status": status,
        "lastUpdateTime": now,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }


def set_condition(status: Obj, cond: Obj) -> None:
    conds = list(status.get("conditions") or [])
    cur = next((c for c in conds if c.get("type") == cond["type"]), None)
    if cur is not None and cur.get("status") == cond["status"] and cur.get("reason") == cond["reason"]:
        return  # same condition: keep its timestamps
    if cur is not None and cur.get("status") == cond["status"]:
        cond = dict(cond, lastTransitionTime=cur.get("lastTransitionTime"))
    status["conditions"] = [c for c in conds if c.get("type") != cond["type"]] + [cond]


class DeploymentController(QueueController):
    name = "deployment"
    component = "deployment-controller"

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        f = ctx.factory
        self.d_informer = f.informer(DEPLOYMENTS)
        self.rs_informer = f.informer(REPLICASETS, indexers=RS_INDEXERS)
        self.pod_informer = f.informer(PODS, indexers=POD_INDEXERS)
        self.informers = (self.d_informer, self.rs_informer, self.pod_informer)
        self.recorder = ctx.recorder(self.component)
        self.d_informer.add_event_handler(self.enqueue, lambda o, n: self.enqueue(n), self.enqueue)
        self.rs_informer.add_event_handler(
            self._rs_event, lambda o, n: self._rs_updated(o, n), self._rs_event
        )
        self.pod_informer.add_event_handler(None, self._pod_updated, self._pod_event)

    # -- handlers ---------------------------------------------------------------------------------

    def _owner_key(self, obj: Obj, ref: Obj | None, kind: str, informer: Any) -> str | None:
        if ref is None or ref.get("kind") != kind:
            return None
        owner = informer.get(ref.get("name", ""), ns_of(obj))
        if owner is None or uid_of(owner) != ref.get("uid"):
            return None
        return meta_namespace_key(owner)

    def _rs_event(self, rs: Obj) -> None:
        key = self._owner_key(rs, controller_ref(rs), "Deployment", self.d_informer)
        if key:
            self.queue.add(key)
        elif controller_ref(rs) is None:
            labels = meta(rs).get("labels") or {}
            for d in self.d_informer.list(ns_of(rs)):
                sel = selector_of(d)
                if not sel.empty and sel.matches(labels):
                    self.enqueue(d)

    def _rs_updated(self, old: Obj, new: Obj) -> None:
        if meta(old).get("resourceVersion") == meta(new).get("resourceVersion"):
            return
        if controller_ref(old) != controller_ref(new) and controller_ref(old) is not None:
            self._rs_event(old)
        self._rs_event(new)

    def _pod_deployment(self, pod: Obj) -> str | None:
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return None
        rs = self.rs_informer.get(ref.get("name", ""), ns_of(pod))
        if rs is None:
            return None
        return self._owner_key(rs, controller_ref(rs), "Deployment", self.d_informer)

    def _pod_event(self, pod: Obj) -> None:
        key = self._pod_deployment(pod)
        if key:
            self.queue.add(key)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if meta(old).get("resourceVersion") == meta(new).get("resourceVersion"):
            return
        self._pod_event(new)

    # -- reconcile --------------------------------------------------------------------------------

    async def reconcile(self, key: str) -> float | None:
        ns, _, name = key.partition("/")
        d = self.d_informer.get(name, ns)
        if d is None:
            return None
        d = copy.deepcopy(d)
        sel = selector_of(d)
        if sel.empty:
            if (d.get("status") or {}).get("observedGeneration") != meta(d).get("generation"):
                status = dict(d.get("status") or {}, observedGeneration=meta(d).get("generation"))
                await self._write_status(d, status)
            return None
        rs_list = await self.claim_replicasets(d, sel)
        if is_deleting(d):
            await self.sync_status_only(d, rs_list)
            return None
        paused = bool((d.get("spec") or {}).get("paused"))
        if paused or self.is_scaling_event(d, rs_list):
            return await self.sync_scale(d, rs_list)
        if is_rolling(d):
            return await self.rollout_rolling(d, rs_list)
        return await self.rollout_recreate(d, rs_list)

    async def claim_replicasets(self, d: Obj, sel: Any) -> list[Obj]:
        store = self.rs_informer.store
        uid = uid_of(d)
        out: list[Obj] = []
        for rs in store.by_index("controller-uid", uid):
            if sel.matches(meta(rs).get("labels")):
                out.append(rs)
            elif not is_deleting(rs):
                refs = [r for r in meta(rs).get("ownerReferences") or () if r.get("uid") != uid]
                await self._patch_owners(rs, refs)
        if not is_deleting(d):
            for rs in store.by_index("orphans", ns_of(d)):
                if not is_deleting(rs) and sel.matches(meta(rs).get("labels")):
                    refs = [*(meta(rs).get("ownerReferences") or ()), owner_reference(d)]
                    patched = await self._patch_owners(rs, refs)
                    if patched is not None:
                        out.append(patched)
        return out

    async def _patch_owners(self, rs: Obj, refs: list[Obj]) -> Obj | None:
        patch = {
            "metadata": {
                "ownerReferences": refs,
                "uid": uid_of(rs),
                "resourceVersion": meta(rs).get("resourceVersion"),
            }
        }
        try:
            out = await self.client.patch(REPLICASETS, name_of(rs), patch, ns_of(rs))
        except (NotFound, Conflict):
            return None
        observe_write(self.rs_informer, out)
        return out

    # -- pods per ReplicaSet ------------------------------------------------------------------------

    def _pods(self, rs: Obj) -> list[Obj]:
        return self.pod_informer.store.by_index("controller-uid", uid_of(rs))

    def _count(self, rs: Obj) -> int:
        """Towards the surge bound: what the ReplicaSet has or is about to have."""
        return max(replicas_of(rs), sum(1 for p in self._pods(rs) if is_pod_active(p)))

    def _available(self, rs: Obj, d: Obj) -> int:
        """Towards availability: available pods the ReplicaSet will keep."""
        mrs = float((d.get("spec") or {}).get("minReadySeconds") or 0)
        now = self.ctx.clock()
        n = sum(1 for p in self._pods(rs) if is_pod_active(p) and is_pod_available(p, mrs, now))
        return min(replicas_of(rs), n)

    # -- new / old ReplicaSets -------------------------------------------------------------------------

    def find_new(self, d: Obj, rs_list: list[Obj]) -> Obj | None:
        template = (d.get("spec") or {}).get("template") or {}
        for rs in sorted(rs_list, key=created_at):
            if equal_ignore_hash((rs.get("spec") or {}).get("template") or {}, template):
                return rs
        return None

    async def get_all_replicasets(
        self, d: Obj, rs_list: list[Obj], create: bool
    ) -> tuple[Obj | None, list[Obj]]:
        new = self.find_new(d, rs_list)
        old = [rs for rs in rs_list if rs is not new]
        new = await self.get_new_replicaset(d, rs_list, new, old, create)
        return new, old

    def _rs_annotations(self, d: Obj, rs: Obj, revision: int) -> tuple[Obj, bool]:
        anns = dict(meta(rs).get("annotations") or {})
        before = dict(anns)
        for k, v in (meta(d).get("annotations") or {}).items():
            if k not in SKIP_ANNOTATIONS:
                anns[k] = v
        cur = revision_of(rs)
        if cur < revision:
            if cur > 0:
                hist = [h for h in (anns.get(REVISION_HISTORY) or "").split(",") if h]
                hist.append(str(cur))
                anns[REVISION_HISTORY] = ",".join(hist)
            anns[REVISION] = str(revision)
        surge = surge_and_unavailable(d)[0]
        anns[DESIRED] = str(replicas_of(d))
        anns[MAX_REPLICAS] = str(replicas_of(d) + surge)
        return anns, anns != before

    async def get_new_replicaset(
        self, d: Obj, rs_list: list[Obj], existing: Obj | None, old: list[Obj], create: bool
    ) -> Obj | None:
        max_old = max((revision_of(rs) for rs in old), default=0)
        revision = max_old + 1
        spec = d.get("spec") or {}
        if existing is not None:
            rs = existing
            anns, changed = self._rs_annotations(d, rs, revision)
            if not changed and revision_of(rs) >= revision:
                anns = None
            mrs_changed = (rs.get("spec") or {}).get("minReadySeconds", 0) != spec.get("minReadySeconds", 0)
            if anns is not None or mrs_changed:
                body = copy.deepcopy(rs)
                if anns is not None:
                    body["metadata"]["annotations"] = anns
                body.setdefault("spec", {})["minReadySeconds"] = spec.get("minReadySeconds", 0)
                rs = await self.client.update(REPLICASETS, body, ns_of(d))
                observe_write(self.rs_informer, rs)
            await self._set_deployment_revision(d, revision_of(rs))
            return rs
        if not create:
            return None
        collision = int((d.get("status") or {}).get("collisionCount") or 0)
        template = copy.deepcopy(spec.get("template") or {})
        h = template_hash(template, collision)
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
        selector = copy.deepcopy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = h
        rs_name = f"{name_of(d)}-{h}"
        body: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": rs_name,
                "namespace": ns_of(d),
                "labels": dict(template["metadata"]["labels"]),
                "ownerReferences": [owner_reference(d)],
            },
            "spec": {
                "replicas": 0,
                "minReadySeconds": spec.get("minReadySeconds", 0),
                "selector": selector,
                "template": template,
            },
        }
        anns, _ = self._rs_annotations(d, body, revision)
        body["metadata"]["annotations"] = anns
        shell = copy.deepcopy(body)
        body["spec"]["replicas"] = self.new_rs_replicas(d, [*old, shell], shell)
        try:
            rs = await self.client.create(REPLICASETS, body, ns_of(d))
        except AlreadyExists:
            try:
                cur = await self.client.get(REPLICASETS, rs_name, ns_of(d))
            except NotFound:
                raise Conflict(f"replica set {rs_name} vanished; retrying") from None
            ref = controller_ref(cur)
            if (
                ref
                and ref.get("uid") == uid_of(d)
                and equal_ignore_hash(
                    (cur.get("spec") or {}).get("template") or {}, spec.get("template") or {}
                )
            ):
                observe_write(self.rs_informer, cur)
                return cur
            status = dict(d.get("status") or {})
            status["collisionCount"] = collision + 1
            await self._write_status(d, status)
            raise Conflict(
                f"hash collision for replica set {rs_name}; collisionCount is now {collision + 1}"
            ) from None
        observe_write(self.rs_informer, rs)
        n = replicas_of(rs)
        if n > 0:
            self.recorder.event(
                d, NORMAL, "ScalingReplicaSet", f"Scaled up replica set {rs_name} from 0 to {n}"
            )
        status = d.setdefault("status", {})
        set_condition(
            status,
            new_condition(
                "Progressing", "True", "NewReplicaSetCreated", f'Created new replica set "{rs_name}"'
            ),
        )
        await self._set_deployment_revision(d, revision)
        return rs

    async def _set_deployment_revision(self, d: Obj, revision: int) -> None:
        anns = meta(d).get("annotations") or {}
        if anns.get(REVISION) == str(revision):
            return
        try:
            out = await self.client.patch(
                DEPLOYMENTS, name_of(d), {"metadata": {"annotations": {REVISION: str(revision)}}}, ns_of(d)
            )
        except NotFound:
            return
        d["metadata"]["annotations"] = (out.get("metadata") or {}).get("annotations") or {}
        d["metadata"]["resourceVersion"] = meta(out).get("resourceVersion")
        observe_write(self.d_informer, out)

    def new_rs_replicas(self, d: Obj, all_rs: list[Obj], new: Obj) -> int:
        want = replicas_of(d)
        if not is_rolling(d):
            return want
        surge = surge_and_unavailable(d)[0]
        current = sum(self._count(rs) if uid_of(rs) else replicas_of(rs) for rs in all_rs)
        max_total = want + surge
        if current >= max_total:
            return replicas_of(new)
        up = min(max_total - current, want - replicas_of(new))
        return replicas_of(new) + max(up, 0)

    # -- scaling -------------------------------------------------------------------------------------

    async def scale_rs(self, rs: Obj, new_scale: int, d: Obj, op: str) -> tuple[bool, Obj]:
        size_changed = replicas_of(rs) != new_scale
        surge = surge_and_unavailable(d)[0]
        anns = meta(rs).get("annotations") or {}
        anns_changed = anns.get(DESIRED) != str(replicas_of(d)) or anns.get(MAX_REPLICAS) != str(
            replicas_of(d) + surge
        )
        if not size_changed and not anns_changed:
            return False, rs
        body = copy.deepcopy(rs)
        body["spec"]["replicas"] = new_scale
        body["metadata"].setdefault("annotations", {})
        body["metadata"]["annotations"][DESIRED] = str(replicas_of(d))
        body["metadata"]["annotations"][MAX_REPLICAS] = str(replicas_of(d) + surge)
        out = await self.client.update(REPLICASETS, body, ns_of(rs))
        observe_write(self.rs_informer, out)
        if size_changed:
            self.recorder.event(
                d,
                NORMAL,
                "ScalingReplicaSet",
                f"Scaled {op} replica set {name_of(rs)} from {replicas_of(rs)} to {new_scale}",
            )
        return size_changed, out

    def is_scaling_event(self, d: Obj, rs_list: list[Obj]) -> bool:
        for rs in rs_list:
            if replicas_of(rs) > 0:
                desired = (meta(rs).get("annotations") or {}).get(DESIRED)
                if desired is not None and desired != str(replicas_of(d)):
                    return True
        return False

    async def scale(self, d: Obj, new: Obj | None, old: list[Obj]) -> None:
        active = [rs for rs in ([new] if new else []) + old if replicas_of(rs) > 0]
        want = replicas_of(d)
        if len(active) <= 1:
            target = active[0] if active else (new or (max(old, key=created_at) if old else None))
            if target is not None and replicas_of(target) != want:
                op = "up" if want > replicas_of(target) else "down"
                await self.scale_rs(target, want, d, op)
            return
        if new is not None and replicas_of(new) == want and self._available(new, d) == want:
            for rs in old:
                if replicas_of(rs) > 0:
                    await self.scale_rs(rs, 0, d, "down")
            return
        if not is_rolling(d):
            return
        surge = surge_and_unavailable(d)[0]
        allowed = want + (surge if want > 0 else 0)
        total = sum(replicas_of(rs) for rs in active)
        to_add = allowed - total
        if to_add == 0:
            return
        # proportional: biggest (newest on ties when adding, oldest when removing) first
        if to_add > 0:
            ordered = sorted(active, key=lambda rs: (-replicas_of(rs), -created_at(rs)[0]))
        else:
            ordered = sorted(active, key=lambda rs: (-replicas_of(rs), created_at(rs)[0]))
        sizes = {uid_of(rs): replicas_of(rs) for rs in ordered}
        added = 0
        for rs in ordered:
            if total == 0:
                break
            part = (
                int(to_add * replicas_of(rs) / total)
                if to_add > 0
                else -int(-to_add * replicas_of(rs) / total)
            )
            if (to_add > 0 and added + part > to_add) or (to_add < 0 and added + part < to_add):
                part = to_add - added
            sizes[uid_of(rs)] += part
            added += part
        if added != to_add and ordered:
            sizes[uid_of(ordered[0])] += to_add - added
        for rs in ordered:
            n = max(sizes[uid_of(rs)], 0)
            await self.scale_rs(rs, n, d, "up" if n > replicas_of(rs) else "down")

    async def sync_scale(self, d: Obj, rs_list: list[Obj]) -> float | None:
        new, old = await self.get_all_replicasets(d, rs_list, create=False)
        await self.scale(d, new, old)
        if (d.get("spec") or {}).get("paused"):
            await self.cleanup(d, old)
        return await self.sync_status(d, new, old, scaling_only=True)

    # -- rolling update --------------------------------------------------------------------------------

    async def rollout_rolling(self, d: Obj, rs_list: list[Obj]) -> float | None:
        new, old = await self.get_all_replicasets(d, rs_list, create=True)
        assert new is not None
        all_rs = [*old, new]
        want = replicas_of(d)
        # scale up the new ReplicaSet
        if replicas_of(new) != want:
            if replicas_of(new) > want:
                changed, new = await self.scale_rs(new, want, d, "down")
            else:
                changed, new = await self.scale_rs(new, self.new_rs_replicas(d, all_rs, new), d, "up")
            if changed:
                return await self.sync_status(d, new, old)
        # scale down old ReplicaSets
        if await self.reconcile_old(d, new, old):
            old = [self.rs_informer.store.get(meta_namespace_key(rs)) or rs for rs in old]
            return await self.sync_status(d, new, old)
        if self.is_complete(d, new, old):
            await self.cleanup(d, old)
        return await self.sync_status(d, new, old)

    async def reconcile_old(self, d: Obj, new: Obj, old: list[Obj]) -> bool:
        old_count = sum(replicas_of(rs) for rs in old)
        if old_count == 0:
            return False
        want = replicas_of(d)
        all_count = sum(replicas_of(rs) for rs in old) + replicas_of(new)
        min_available = want - max_unavailable(d)
        new_unavailable = replicas_of(new) - self._available(new, d)
        max_scale_down = all_count - min_available - new_unavailable
        if max_scale_down <= 0:
            return False
        scaled = 0
        sizes: dict[str, int] = {}
        # 1. unhealthy replicas of old ReplicaSets go first (oldest ReplicaSet first)
        for rs in sorted(old, key=created_at):
            if scaled >= max_scale_down:
                break
            n = replicas_of(rs)
            avail = self._available(rs, d)
            if n == 0 or n == avail:
                continue
            down = min(max_scale_down - scaled, n - avail)
            changed, _ = await self.scale_rs(rs, n - down, d, "down")
            sizes[uid_of(rs)] = n - down
            scaled += down if changed else 0
        # 2. then healthy ones, keeping minAvailable
        available = sum(min(sizes.get(uid_of(rs), replicas_of(rs)), self._available(rs, d)) for rs in old)
        available += self._available(new, d)
        total_down = available - min_available
        done = 0
        if total_down > 0:
            for rs in sorted(old, key=created_at):
                if done >= total_down:
                    break
                n = sizes.get(uid_of(rs), replicas_of(rs))
                if n == 0:
                    continue
                down = min(n, total_down - done)
                cur = self.rs_informer.store.get(meta_namespace_key(rs)) or rs
                changed, _ = await self.scale_rs(cur, n - down, d, "down")
                done += down if changed else 0
        return scaled + done > 0

    # -- recreate ------------------------------------------------------------------------------------

    async def rollout_recreate(self, d: Obj, rs_list: list[Obj]) -> float | None:
        new, old = await self.get_all_replicasets(d, rs_list, create=False)
        scaled = False
        for rs in old:
            if replicas_of(rs) > 0:
                changed, _ = await self.scale_rs(rs, 0, d, "down")
                scaled = scaled or changed
        if scaled:
            return await self.sync_status(d, new, old)
        for rs in old:
            for p in self._pods(rs):
                if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                    return await self.sync_status(d, new, old)  # old pods still running
        if new is None:
            new, old = await self.get_all_replicasets(d, rs_list, create=True)
            assert new is not None
        if replicas_of(new) != replicas_of(d):
            _, new = await self.scale_rs(new, replicas_of(d), d, "up")
        elif self.is_complete(d, new, old):
            await self.cleanup(d, old)
        return await self.sync_status(d, new, old)

    # -- history ---------------------------------------------------------------------------------------

    async def cleanup(self, d: Obj, old: list[Obj]) -> None:
        limit = (d.get("spec") or {}).get("revisionHistoryLimit")
        limit = 10 if limit is None else int(limit)
        cleanable = [
            rs
            for rs in old
            if not is_deleting(rs)
            and replicas_of(rs) == 0
            and int((rs.get("status") or {}).get("replicas") or 0) == 0
            and int((rs.get("status") or {}).get("observedGeneration") or 0)
            >= int(meta(rs).get("generation") or 0)
        ]
        diff = len(cleanable) - limit
        if diff <= 0:
            return
        for rs in sorted(cleanable, key=lambda r: (revision_of(r), created_at(r)))[:diff]:
            try:
                await self.client.delete(
                    REPLICASETS, name_of(rs), ns_of(rs), preconditions={"uid": uid_of(rs)}
                )
            except NotFound:
                pass

    # -- status ----------------------------------------------------------------------------------------

    def is_complete(self, d: Obj, new: Obj | None, old: list[Obj]) -> bool:
        want = replicas_of(d)
        st = d.get("status") or {}
        nst = (new or {}).get("status") or {}
        return (
            new is not None
            and int(nst.get("replicas") or 0) == want
            and int(nst.get("availableReplicas") or 0) == want
            and replicas_of(new) == want
            and all(
                replicas_of(rs) == 0 and int((rs.get("status") or {}).get("replicas") or 0) == 0 for rs in old
            )
            and int(st.get("observedGeneration") or 0) >= int(meta(d).get("generation") or 0)
        )

    def calculate_status(self, d: Obj, new: Obj | None, old: list[Obj]) -> Obj:
        all_rs = ([new] if new else []) + old
        sts = [(rs.get("status") or {}) for rs in all_rs]
        replicas = sum(int(s.get("replicas") or 0) for s in sts)
        available = sum(int(s.get("availableReplicas") or 0) for s in sts)
        status = copy.deepcopy(d.get("status") or {})
        status.update(
            {
                "observedGeneration": meta(d).get("generation", 0),
                "replicas": replicas,
                "updatedReplicas": int(((new or {}).get("status") or {}).get("replicas") or 0),
                "readyReplicas": sum(int(s.get("readyReplicas") or 0) for s in sts),
                "availableReplicas": available,
                "unavailableReplicas": max(replicas_of(d) - available, 0),
            }
        )
        for k in ("updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas", "replicas"):
            if status[k] == 0:
                status.pop(k)  # upstream omits zero counts (omitempty)
        want = replicas_of(d)
        if available >= want - max_unavailable(d):
            set_condition(
                status,
                new_condition(
                    "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability."
                ),
            )
        else:
            set_condition(
                status,
                new_condition(
                    "Available",
                    "False",
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.",
                ),
            )
        return status

    async def sync_status_only(self, d: Obj, rs_list: list[Obj]) -> None:
        new = self.find_new(d, rs_list)
        old = [rs for rs in rs_list if rs is not new]
        await self._write_status(d, self.calculate_status(d, new, old))

    async def sync_status(
        self, d: Obj, new: Obj | None, old: list[Obj], scaling_only: bool = False
    ) -> float | None:
        status = self.calculate_status(d, new, old)
        spec = d.get("spec") or {}
        deadline = spec.get("progressDeadlineSeconds")
        deadline = 600 if deadline is None else int(deadline)
        requeue: float | None = None
        paused = bool(spec.get("paused"))
        prog = get_condition(d.get("status") or {}, "Progressing")
        if paused:
            if not prog or prog.get("reason") != "DeploymentPaused":
                set_condition(
                    status,
                    new_condition("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused"),
                )
        elif prog is not None and prog.get("reason") == "DeploymentPaused":
            set_condition(
                status, new_condition("Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed")
            )
        elif new is not None and not scaling_only:
            old_status = d.get("status") or {}
            dd = dict(d, status=status)
            complete = self.is_complete(dd, new, old) and int(status.get("observedGeneration") or 0) >= int(
                meta(d).get("generation") or 0
            )
            cur = get_condition(status, "Progressing")
            if complete:
                set_condition(
                    status,
                    new_condition(
                        "Progressing",
                        "True",
                        "NewReplicaSetAvailable",
                        f'ReplicaSet "{name_of(new)}" has successfully progressed.',
                    ),
                )
            elif self._progressed(old_status, status, new):
                c = new_condition(
                    "Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{name_of(new)}" is progressing.'
                )
                if cur is not None and cur.get("status") == "True":
                    c["lastTransitionTime"] = cur.get("lastTransitionTime")
                    status["conditions"] = [
                        x for x in status.get("conditions") or [] if x.get("type") != "Progressing"
                    ] + [c]
                else:
                    set_condition(status, c)
            elif cur is not None and cur.get("reason") != "ProgressDeadlineExceeded":
                last = parse_time(cur.get("lastUpdateTime"))
                elapsed = self.ctx.clock() - (last.timestamp() if last else self.ctx.clock())
                if elapsed >= deadline:
                    set_condition(
                        status,
                        new_condition(
                            "Progressing",
                            "False",
                            "ProgressDeadlineExceeded",
                            f'ReplicaSet "{name_of(new)}" has timed out progressing.',
                        ),
                    )
                else:
                    requeue = deadline - elapsed + 1
            elif cur is None:
                set_condition(
                    status,
                    new_condition(
                        "Progressing", "True", "FoundNewReplicaSet", f'Found new replica set "{name_of(new)}"'
                    ),
                )
                requeue = deadline + 1
        await self._write_status(d, status)
        return requeue

    @staticmethod
    def _progressed(old: Obj, new: Obj, rs: Obj) -> bool:
        for k in ("updatedReplicas", "readyReplicas", "availableReplicas"):
            if int(new.get(k) or 0) > int(old.get(k) or 0):
                return True
        if int(new.get("replicas") or 0) < int(old.get("replicas") or 0):
            return True  # old replicas went away
        return False

    async def _write_status(self, d: Obj, status: Obj) -> None:
        if status == (d.get("status") or {}):
            return
        try:
            out = await self.client.update(
                DEPLOYMENTS, dict(d, status=status), ns_of(d), subresource="status"
            )
        except NotFound:
            return
        observe_write(self.d_informer, out)
