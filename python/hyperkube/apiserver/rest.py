"""Object semantics over the store: what create, update, patch and delete *mean* for each resource.

This is upstream's generic registry (``k8s.io/apiserver/pkg/registry/generic/registry/store.go``)
plus the per-resource strategies, over our :class:`~hyperkube.storage.interface.Store`:

- create: generateName, uid, creationTimestamp, generation, status reset, defaulting, validation,
  namespace lifecycle (no creates in a missing or terminating namespace), Service ClusterIP and
  NodePort allocation; AlreadyExists → 409.
- update/patch: optimistic concurrency on resourceVersion (stale → 409 Conflict); the main
  resource cannot change status and the ``status`` subresource cannot change anything else;
  ``generation`` bumps when the spec changes; removing the last finalizer of an object being
  deleted deletes it.
- delete: preconditions, finalizers and ``deletionTimestamp``, propagationPolicy finalizers,
  graceful pod deletion (a pod bound to a node is only marked; its kubelet deletes it with
  grace 0; an unscheduled pod goes at once); a namespace turns ``Terminating`` and its content is
  removed before it goes.

Every write goes through one compare-and-swap; a rejected request writes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime as _dt
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hyperkube import _native
from hyperkube.api import defaults, errors, fields, validation
from hyperkube.api.errors import ApiError
from hyperkube.api.meta import new_uid, now, random_suffix
from hyperkube.api.patch import PatchError, apply_patch
from hyperkube.api.registry import RESOURCES, Resource, resource
from hyperkube.api.serialization import decode, encode
from hyperkube.apiserver.allocator import InvalidAddress, IPAllocator, PortAllocator, RangeFull
from hyperkube.apiserver.watchcache import WatchCache
from hyperkube.storage import interface as st

log = logging.getLogger("hyperkube.apiserver")

Obj = dict[str, Any]
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# resources whose status is a subresource: the main resource cannot write it
STATUS_SPLIT = {
    "pods",
    "services",
    "nodes",
    "deployments",
    "replicasets",
    "namespaces",
    "resourcequotas",
    "certificatesigningrequests",
}
# resources whose create resets the status (PrepareForCreate)
STATUS_RESET = {"pods", "services", "deployments", "replicasets", "namespaces"}
GENERATION = {"deployments", "replicasets", "priorityclasses"}
CREATE_ON_UPDATE = {"endpoints", "leases", "events", "endpointslices"}
RETURN_DELETED = {
    "pods",
    "services",
    "namespaces",
    "nodes",
    "deployments",
    "replicasets",
    "secrets",
    "configmaps",
}
MAX_RETRIES = 16


def too_large_rv(requested: int, current: int) -> ApiError:
    """Upstream's answer to a resourceVersion newer than the store (504, retry in a second)."""
    return ApiError(
        504, "Timeout", f"Too large resource version: {requested}, current: {current}", retry_after=1
    )


@dataclass
class DeleteOptions:
    grace_period: int | None = None
    propagation: str | None = None
    precondition_uid: str | None = None
    precondition_rv: str | None = None
    dry_run: bool = False


@dataclass
class ListOptions:
    label_selector: str = ""
    field_selector: str = ""
    limit: int = 0
    continue_token: str = ""
    resource_version: str = ""
    resource_version_match: str = ""
    field_reqs: list[tuple[str, bool, str]] = field(default_factory=list)
    selector: Any = None


def _utc_in(seconds: int) -> str:
    return (_dt.datetime.now(_dt.UTC) + _dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def encode_continue(rev: int, key: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rev, "start": key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        d = json.loads(raw)
        return int(d["rv"]), str(d["start"])
    except Exception:
        raise errors.bad_request(
            "continue key is not valid: the continue token could not be decoded"
        ) from None


def parse_list_options(q: Any, plural: str) -> ListOptions:
    o = ListOptions(
        label_selector=q.get("labelSelector", ""),
        field_selector=q.get("fieldSelector", ""),
        continue_token=q.get("continue", ""),
        resource_version=q.get("resourceVersion", ""),
        resource_version_match=q.get("resourceVersionMatch", ""),
    )
    lim = q.get("limit", "")
    if lim:
        try:
            o.limit = max(0, int(lim))
        except ValueError:
            raise errors.bad_request(f"invalid limit {lim!r}: must be an integer") from None
    if o.label_selector:
        try:
            o.selector = _native.Selector(o.label_selector)
        except ValueError as e:
            raise errors.bad_request(f"unable to parse requirement: {e}") from None
    if o.field_selector:
        try:
            o.field_reqs = _native.parse_field_selector(o.field_selector)
        except ValueError as e:
            raise errors.bad_request(f"invalid field selector {o.field_selector!r}: {e}") from None
        bad = fields.check_fields(plural, o.field_reqs)
        if bad:
            raise errors.bad_request(f"field label not supported: {bad}")
    if o.resource_version_match not in ("", "Exact", "NotOlderThan"):
        raise errors.bad_request(f"resourceVersionMatch: Unsupported value: {o.resource_version_match!r}")
    if o.resource_version_match and not o.resource_version:
        raise errors.bad_request("resourceVersionMatch is forbidden unless resourceVersion is provided")
    if o.continue_token and o.resource_version and o.resource_version != "0":
        raise errors.bad_request("specifying resource version is not allowed when using continue")
    if o.resource_version and o.resource_version != "0":
        try:
            int(o.resource_version)
        except ValueError:
            raise errors.bad_request(f"invalid resource version {o.resource_version!r}") from None
    return o


def _spec_part(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


class Registry:
    def __init__(
        self,
        store: st.Store,
        *,
        service_cidr: str = "10.96.0.0/12",
        node_port_range: tuple[int, int] = (30000, 32767),
        kubernetes_service_port: int = 443,
        kubernetes_endpoint: tuple[str, int] | None = None,
        observe_store: Callable[[str, float], None] | None = None,
    ) -> None:
        self.store = store
        self.ips = IPAllocator(service_cidr)
        self.ports = PortAllocator(*node_port_range)
        self.caches: dict[str, WatchCache] = {}
        self.kubernetes_service_port = kubernetes_service_port
        self.kubernetes_endpoint = kubernetes_endpoint
        self.observe_store = observe_store or (lambda op, dt: None)
        self._ns_tasks: set[asyncio.Task[None]] = set()
        self.ready = False
        # the admission chain (hyperkube.apiserver.admission.Chain.admit), set by the security layer:
        # (operation, res, namespace, obj, old, dry_run, subresource) -> obj, or raises ApiError
        self.admission: Callable[..., Any] | None = None
        # (res, obj) after a create is stored (the security layer fills new namespaces)
        self.after_create: Callable[..., Any] | None = None

    # --- store access with latency observation ------------------------------------------------

    async def _timed(self, op: str, coro: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await coro
        finally:
            self.observe_store(op, time.perf_counter() - t0)

    # --- start --------------------------------------------------------------------------------

    async def start(self) -> None:
        svc = resource("services")
        res = await self.store.list(svc.prefix())
        for kv in res.items:
            o = decode(kv.value, kv.mod_revision)
            self._mark_allocations(o)
        nsres = resource("namespaces")
        for name in SYSTEM_NAMESPACES:
            try:
                await self.create(
                    nsres, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
                )
            except ApiError as e:
                if e.code != 409:
                    raise
        await self._ensure_kubernetes_service()
        # resume namespace finalization interrupted by a restart
        for kv in (await self.store.list(nsres.prefix())).items:
            o = decode(kv.value, kv.mod_revision)
            if (o.get("metadata") or {}).get("deletionTimestamp"):
                self._finalize_namespace_later(o["metadata"]["name"])
        self.ready = True

    async def _ensure_kubernetes_service(self) -> None:
        svc = resource("services")
        obj = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"component": "apiserver", "provider": "kubernetes"},
            },
            "spec": {
                "type": "ClusterIP",
                "sessionAffinity": "None",
                "ports": [
                    {
                        "name": "https",
                        "port": self.kubernetes_service_port,
                        "protocol": "TCP",
                        "targetPort": self.kubernetes_endpoint[1] if self.kubernetes_endpoint else 6443,
                    }
                ],
            },
        }
        try:
            await self.create(svc, "default", obj)
        except ApiError as e:
            if e.code != 409:
                raise
        if self.kubernetes_endpoint:
            ip, port = self.kubernetes_endpoint
            ep = {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {
                    "name": "kubernetes",
                    "namespace": "default",
                    "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
                },
                "subsets": [
                    {"addresses": [{"ip": ip}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}
                ],
            }
            try:
                await self.update(resource("endpoints"), "default", "kubernetes", ep)
            except ApiError as e:
                log.warning("could not write the kubernetes endpoints: %s", e.message)

    async def stop(self) -> None:
        for c in self.caches.values():
            await c.stop()
        for t in list(self._ns_tasks):
            t.cancel()

    def cache(self, res: Resource) -> WatchCache:
        c = self.caches.get(res.plural)
        if c is None:
            c = self.caches[res.plural] = WatchCache(self.store, res, decode)
        return c

    # --- read ---------------------------------------------------------------------------------

    async def get(self, res: Resource, ns: str | None, name: str) -> Obj:
        try:
            kv = await self._timed("get", self.store.get(res.key(ns, name)))
        except st.NotFound:
            raise errors.not_found(res.plural, res.group, name) from None
        return decode(kv.value, kv.mod_revision)

    async def list_kvs(self, res: Resource, ns: str | None, o: ListOptions) -> st.ListResult:
        """The raw stored values of an unpaginated list (decoded and filtered by the caller in
        chunks, so a large list is never held as objects all at once)."""
        revision = await self._list_revision(o)
        try:
            return await self._timed("list", self.store.list(res.prefix(ns), revision=revision))
        except st.Compacted as e:
            raise errors.gone(f"too old resource version: {e.requested} ({e.compacted + 1})") from None
        except st.FutureRevision as e:
            raise too_large_rv(e.requested, e.current) from None

    async def _list_revision(self, o: ListOptions) -> int | None:
        """The revision a list is served at: the exact resourceVersion with
        resourceVersionMatch=Exact, else the latest (checked not to be behind a newer asked one)."""
        if not o.resource_version or o.resource_version == "0":
            return None
        want = int(o.resource_version)
        if o.resource_version_match == "Exact":
            return want
        cur = await self.store.current_revision()
        if want > cur:
            raise too_large_rv(want, cur)
        return None

    def matches(self, res: Resource, o: ListOptions, obj: Obj) -> bool:
        return self._matches(res, o, obj)

    async def list(self, res: Resource, ns: str | None, o: ListOptions) -> tuple[list[Obj], Obj]:
        prefix = res.prefix(ns)
        revision: int | None = None
        start: str | None = None
        if o.continue_token:
            revision, start = decode_continue(o.continue_token)
            if not start.startswith(prefix):
                raise errors.bad_request("continue key is not valid: it does not belong to this list")
        else:
            revision = await self._list_revision(o)
        filtering = o.selector is not None or bool(o.field_reqs)
        items: list[Obj] = []
        next_key: str | None = None
        remaining: int | None = None
        while True:
            page = o.limit if not filtering else (max(o.limit * 2, 256) if o.limit else 0)
            try:
                r = await self._timed(
                    "list", self.store.list(prefix, limit=page, continue_key=start, revision=revision)
                )
            except st.Compacted as e:
                if o.continue_token:
                    raise errors.gone(
                        "The provided continue parameter is too old to display a consistent list result. "
                        "You can start a new list without the continue parameter, or use the continue token "
                        "in this response to retrieve the remainder of the results. Continuing with the provided "
                        "token results in an inconsistent list - objects that were created, modified, or deleted "
                        "between the time the first chunk was returned and now may show up in the list."
                    ) from None
                raise errors.gone(f"too old resource version: {e.requested} ({e.compacted + 1})") from None
            except st.FutureRevision as e:
                raise too_large_rv(e.requested, e.current) from None
            revision = r.revision
            stopped = False
            for i, kv in enumerate(r.items):
                obj = decode(kv.value, kv.mod_revision)
                if filtering and not self._matches(res, o, obj):
                    continue
                items.append(obj)
                if o.limit and len(items) >= o.limit:
                    more = i < len(r.items) - 1 or r.continue_key is not None
                    if more:
                        next_key = kv.key
                        if not filtering and r.remaining is not None:
                            remaining = r.remaining + (len(r.items) - 1 - i)
                    stopped = True
                    break
            if stopped or r.continue_key is None:
                break
            start = r.continue_key
        meta: Obj = {"resourceVersion": str(revision)}
        if next_key is not None:
            meta["continue"] = encode_continue(revision or 0, next_key)
            if remaining:
                meta["remainingItemCount"] = remaining
        return items, meta

    def _matches(self, res: Resource, o: ListOptions, obj: Obj) -> bool:
        if o.selector is not None and not o.selector.matches((obj.get("metadata") or {}).get("labels") or {}):
            return False
        if o.field_reqs and not fields.matches(o.field_reqs, fields.field_set(res.plural, obj)):
            return False
        return True

    # --- create -------------------------------------------------------------------------------

    async def check_namespace(self, res: Resource, ns: str | None, name: str) -> None:
        if not res.namespaced or ns is None:
            return
        try:
            kv = await self.store.get(resource("namespaces").key(None, ns))
        except st.NotFound:
            raise errors.not_found("namespaces", "", ns) from None
        nso = decode(kv.value, kv.mod_revision)
        if (nso.get("metadata") or {}).get("deletionTimestamp") or (nso.get("status") or {}).get(
            "phase"
        ) == "Terminating":
            raise errors.forbidden(
                res.plural,
                res.group,
                name,
                f"unable to create new content in namespace {ns} because it is being terminated",
            )

    async def create(self, res: Resource, ns: str | None, obj: Obj, *, dry_run: bool = False) -> Obj:
        md = obj.get("metadata")
        if not isinstance(md, dict):
            md = obj["metadata"] = {}
        if res.namespaced:
            md["namespace"] = ns
        else:
            md.pop("namespace", None)
        if not md.get("name") and md.get("generateName"):
            gn = md["generateName"]
            if isinstance(gn, str):
                md["name"] = gn[: max(0, 63 - 5)] + random_suffix()
        name = md.get("name") or ""
        md.pop("resourceVersion", None)
        md.pop("deletionTimestamp", None)
        md.pop("deletionGracePeriodSeconds", None)
        md.pop("managedFields", None)
        md.pop("selfLink", None)
        md["uid"] = new_uid()
        md["creationTimestamp"] = now()
        if res.plural in GENERATION:
            md["generation"] = 1
        else:
            md.pop("generation", None)
        if res.plural in STATUS_RESET:
            obj["status"] = {}
        if res.plural == "secrets" and isinstance(obj.get("stringData"), dict):
            data = obj.setdefault("data", {}) or {}
            for k, v in obj.pop("stringData").items():
                data[k] = base64.b64encode(str(v).encode()).decode()
            obj["data"] = data
        obj["apiVersion"], obj["kind"] = res.api_version, res.kind
        defaults.apply(res.group, res.kind, obj)
        if self.admission is not None:
            await self.check_namespace(res, ns, name)
            obj = await self.admission("CREATE", res, ns, obj, None, dry_run)
        causes = validation.validate(res.group, res.kind, res.namespaced, obj)
        if causes:
            raise errors.invalid(res.kind, res.group, name, causes)
        if self.admission is None:  # (else checked before admission, as upstream's NamespaceLifecycle)
            await self.check_namespace(res, ns, name)
        allocated: tuple[list[str], list[int]] = ([], [])
        if res.plural == "services":
            allocated = self._allocate_service(obj, None)
        if dry_run:
            self._release(allocated)
            return obj
        try:
            kv = await self._timed("create", self.store.create(res.key(ns, name), encode(obj)))
        except st.AlreadyExists:
            self._release(allocated)
            raise errors.already_exists(res.plural, res.group, name) from None
        except BaseException:
            self._release(allocated)
            raise
        md["resourceVersion"] = str(kv.mod_revision)
        if self.after_create is not None:
            await self.after_create(res, obj)
        return obj

    # --- services: ClusterIP and NodePort -----------------------------------------------------

    def _mark_allocations(self, svc: Obj) -> None:
        spec = svc.get("spec") or {}
        for ip in spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else []):
            if ip and ip != "None":
                self.ips.mark(ip)
        for p in spec.get("ports") or []:
            if p.get("nodePort"):
                self.ports.mark(p["nodePort"])

    def _release(self, allocated: tuple[list[str], list[int]]) -> None:
        for ip in allocated[0]:
            self.ips.release(ip)
        for p in allocated[1]:
            self.ports.release(p)

    def _service_allocations(self, svc: Obj | None) -> tuple[set[str], set[int]]:
        if not svc:
            return set(), set()
        spec = svc.get("spec") or {}
        ips = {
            ip
            for ip in (spec.get("clusterIPs") or ([spec.get("clusterIP")] if spec.get("clusterIP") else []))
            if ip and ip != "None"
        }
        ports = {p["nodePort"] for p in spec.get("ports") or [] if p.get("nodePort")}
        return ips, ports

    def _allocate_service(self, svc: Obj, old: Obj | None) -> tuple[list[str], list[int]]:
        """Allocate what `svc` needs beyond `old`; returns what was newly allocated."""
        spec = svc["spec"]
        new_ips: list[str] = []
        new_ports: list[int] = []
        old_ips, old_ports = self._service_allocations(old)
        try:
            t = spec.get("type", "ClusterIP")
            if t == "ExternalName":
                spec.pop("clusterIP", None)
                spec.pop("clusterIPs", None)
            else:
                want = spec.get("clusterIP") or ((spec.get("clusterIPs") or [None])[0])
                if old is not None and not want:
                    want = (old.get("spec") or {}).get("clusterIP")
                if want == "None":
                    spec["clusterIP"] = "None"
                    spec["clusterIPs"] = ["None"]
                elif want and want in old_ips:
                    spec["clusterIP"] = want
                    spec["clusterIPs"] = [want]
                else:
                    ip = self.ips.allocate(want or None)
                    new_ips.append(ip)
                    spec["clusterIP"] = ip
                    spec["clusterIPs"] = [ip]
            needs_np = (
                t in ("NodePort", "LoadBalancer")
                and spec.get("allocateLoadBalancerNodePorts", True) is not False
            )
            old_by_port = {}
            if old is not None:
                for p in (old.get("spec") or {}).get("ports") or []:
                    if p.get("nodePort"):
                        old_by_port[(p.get("port"), p.get("protocol", "TCP"))] = p["nodePort"]
            for i, p in enumerate(spec.get("ports") or []):
                if not needs_np:
                    if p.get("nodePort") and t not in ("NodePort", "LoadBalancer"):
                        p.pop("nodePort", None)
                    continue
                want_p = p.get("nodePort")
                if not want_p:
                    want_p = old_by_port.get((p.get("port"), p.get("protocol", "TCP")))
                if want_p and want_p in old_ports:
                    p["nodePort"] = want_p
                    continue
                try:
                    got = self.ports.allocate(want_p or None)
                except InvalidAddress as e:
                    raise errors.invalid(
                        "Service",
                        "",
                        (svc.get("metadata") or {}).get("name", ""),
                        [validation.invalid(f"spec.ports[{i}].nodePort", want_p, str(e))],
                    ) from None
                new_ports.append(got)
                p["nodePort"] = got
        except InvalidAddress as e:
            self._release((new_ips, new_ports))
            raise errors.invalid(
                "Service",
                "",
                (svc.get("metadata") or {}).get("name", ""),
                [validation.invalid("spec.clusterIPs", spec.get("clusterIP"), str(e))],
            ) from None
        except RangeFull as e:
            self._release((new_ips, new_ports))
            raise errors.internal(str(e)) from None
        except ApiError:
            self._release((new_ips, new_ports))
            raise
        return new_ips, new_ports

    def _release_dropped(self, old: Obj, new: Obj | None) -> None:
        oi, op = self._service_allocations(old)
        ni, np_ = self._service_allocations(new)
        for ip in oi - ni:
            self.ips.release(ip)
        for p in op - np_:
            self.ports.release(p)

    # --- update -------------------------------------------------------------------------------

    def _prepare_update(self, res: Resource, old: Obj, new: Obj, subresource: str | None) -> Obj:
        om = old.get("metadata") or {}
        if subresource == "status":
            out = copy.deepcopy(old)
            out["status"] = new.get("status") if new.get("status") is not None else {}
            nm = new.get("metadata") or {}
            # upstream lets status writers keep labels/annotations they send? no: metadata is the old one
            if nm.get("resourceVersion"):
                out["metadata"]["resourceVersion"] = nm["resourceVersion"]
            return out
        if not isinstance(new.get("metadata"), dict):
            new["metadata"] = {}
        nm = new["metadata"]
        for k in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "namespace",
            "name",
        ):
            if k in om:
                nm[k] = om[k]
            else:
                nm.pop(k, None)
        nm.pop("managedFields", None)
        nm.pop("selfLink", None)
        new["apiVersion"], new["kind"] = res.api_version, res.kind
        if res.plural in STATUS_SPLIT and subresource is None:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        if res.plural == "secrets" and isinstance(new.get("stringData"), dict):
            data = new.get("data") or {}
            for k, v in new.pop("stringData").items():
                data[k] = base64.b64encode(str(v).encode()).decode()
            new["data"] = data
        if om.get("deletionTimestamp"):
            added = set(nm.get("finalizers") or []) - set(om.get("finalizers") or [])
            if added:
                raise errors.invalid(
                    res.kind,
                    res.group,
                    om.get("name", ""),
                    [
                        validation.forbidden(
                            "metadata.finalizers",
                            f"no new finalizers can be added if the object is being deleted, found new finalizers {json.dumps(sorted(added))}",
                        )
                    ],
                )
        return new

    async def _write_update(
        self,
        res: Resource,
        ns: str | None,
        name: str,
        mutate: Callable[[Obj], Obj],
        *,
        subresource: str | None = None,
        precondition_rv: str | None = None,
        dry_run: bool = False,
        skip_validation: bool = False,
        create_if_missing: Obj | None = None,
    ) -> tuple[Obj, bool]:
        """Read-mutate-CAS loop. Returns (object, created)."""
        key = res.key(ns, name)
        for _ in range(MAX_RETRIES):
            try:
                kv = await self._timed("get", self.store.get(key))
            except st.NotFound:
                if create_if_missing is not None:
                    return await self.create(res, ns, create_if_missing, dry_run=dry_run), True
                raise errors.not_found(res.plural, res.group, name) from None
            old = decode(kv.value, kv.mod_revision)
            if precondition_rv and precondition_rv != str(kv.mod_revision):
                raise errors.stale(res.plural, res.group, name)
            new = mutate(decode(kv.value, kv.mod_revision))
            if not skip_validation:
                new = self._prepare_update(res, old, new, subresource)
                if res.plural in GENERATION and _spec_part(new) != _spec_part(old):
                    new["metadata"]["generation"] = int((old.get("metadata") or {}).get("generation", 1)) + 1
                defaults.apply(res.group, res.kind, new)
                if self.admission is not None:
                    new = await self.admission("UPDATE", res, ns, new, old, dry_run, subresource)
                causes = validation.validate(res.group, res.kind, res.namespaced, new, old)
                if causes:
                    raise errors.invalid(res.kind, res.group, name, causes)
            allocated: tuple[list[str], list[int]] = ([], [])
            if res.plural == "services" and subresource is None:
                allocated = self._allocate_service(new, old)
            nm = new.get("metadata") or {}
            if dry_run:
                self._release(allocated)
                return new, False
            if (
                nm.get("deletionTimestamp")
                and not nm.get("finalizers")
                and not nm.get("deletionGracePeriodSeconds")
            ):
                # the last finalizer is gone: the object goes now
                try:
                    d = await self._timed(
                        "delete", self.store.delete(key, expected_mod_revision=kv.mod_revision)
                    )
                except st.Conflict:
                    self._release(allocated)
                    continue
                except st.NotFound:
                    self._release(allocated)
                    raise errors.not_found(res.plural, res.group, name) from None
                if res.plural == "services":
                    self._release_dropped(old, None)
                    self._release(allocated)
                nm["resourceVersion"] = str(d.mod_revision)
                return new, False
            nm["resourceVersion"] = (old.get("metadata") or {}).get("resourceVersion")
            if new == old:
                return old, False
            try:
                nkv = await self._timed(
                    "update", self.store.update(key, encode(new), expected_mod_revision=kv.mod_revision)
                )
            except st.Conflict:
                self._release(allocated)
                if precondition_rv:
                    raise errors.stale(res.plural, res.group, name) from None
                continue
            except st.NotFound:
                self._release(allocated)
                raise errors.not_found(res.plural, res.group, name) from None
            if res.plural == "services":
                self._release_dropped(old, new)
            nm["resourceVersion"] = str(nkv.mod_revision)
            return new, False
        raise errors.conflict(res.plural, res.group, name, "too many concurrent updates; please retry")

    async def update(
        self,
        res: Resource,
        ns: str | None,
        name: str,
        obj: Obj,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> tuple[Obj, bool]:
        md = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        rv = md.get("resourceVersion") or None
        create = None
        if subresource is None and res.plural in CREATE_ON_UPDATE and not rv:
            create = copy.deepcopy(obj)
        return await self._write_update(
            res,
            ns,
            name,
            lambda _old: copy.deepcopy(obj),
            subresource=subresource,
            precondition_rv=rv,
            dry_run=dry_run,
            create_if_missing=create,
        )

    async def patch(
        self,
        res: Resource,
        ns: str | None,
        name: str,
        patch_type: str,
        body: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        check: Callable[[Obj], None] | None = None,
    ) -> Obj:
        precondition: str | None = None
        if isinstance(body, dict):
            precondition = (
                (body.get("metadata") or {}) if isinstance(body.get("metadata"), dict) else {}
            ).get("resourceVersion")

        def mutate(cur: Obj) -> Obj:
            try:
                out = apply_patch(cur, patch_type, body, res.kind)
            except PatchError as e:
                raise ApiError(
                    422 if patch_type == "json" else 400,
                    "Invalid" if patch_type == "json" else "BadRequest",
                    str(e),
                ) from None
            if check is not None:
                check(out)
            md = out.get("metadata")
            if isinstance(md, dict) and md.get("resourceVersion") == cur["metadata"].get("resourceVersion"):
                md.pop("resourceVersion", None)
            return out

        obj, _ = await self._write_update(
            res, ns, name, mutate, subresource=subresource, precondition_rv=precondition, dry_run=dry_run
        )
        return obj

    # --- delete -------------------------------------------------------------------------------

    async def delete(self, res: Resource, ns: str | None, name: str, opts: DeleteOptions) -> tuple[Obj, bool]:
        """Returns (object, deleted_now)."""
        key = res.key(ns, name)
        for _ in range(MAX_RETRIES):
            try:
                kv = await self._timed("get", self.store.get(key))
            except st.NotFound:
                raise errors.not_found(res.plural, res.group, name) from None
            obj = decode(kv.value, kv.mod_revision)
            md = obj.setdefault("metadata", {})
            if opts.precondition_uid and opts.precondition_uid != md.get("uid"):
                raise errors.conflict(
                    res.plural,
                    res.group,
                    name,
                    f"Precondition failed: UID in precondition: {opts.precondition_uid}, UID in object meta: {md.get('uid')}",
                )
            if opts.precondition_rv and opts.precondition_rv != md.get("resourceVersion"):
                raise errors.conflict(
                    res.plural,
                    res.group,
                    name,
                    f"Precondition failed: ResourceVersion in precondition: {opts.precondition_rv}, ResourceVersion in object meta: {md.get('resourceVersion')}",
                )
            if res.plural == "namespaces":
                if name in SYSTEM_NAMESPACES:
                    raise errors.forbidden("namespaces", "", name, "this namespace may not be deleted")
                if md.get("deletionTimestamp"):
                    return obj, False
                md["deletionTimestamp"] = now()
                md["deletionGracePeriodSeconds"] = 0
                obj.setdefault("status", {})["phase"] = "Terminating"
                if opts.dry_run:
                    return obj, False
                try:
                    nkv = await self.store.update(key, encode(obj), expected_mod_revision=kv.mod_revision)
                except st.Conflict:
                    continue
                md["resourceVersion"] = str(nkv.mod_revision)
                self._finalize_namespace_later(name)
                return obj, False
            grace = 0
            if res.plural == "pods":
                spec = obj.get("spec") or {}
                grace = (
                    opts.grace_period
                    if opts.grace_period is not None
                    else int(spec.get("terminationGracePeriodSeconds", 30) or 0)
                )
                if grace < 0:
                    grace = 1 if opts.grace_period is not None else 0
                phase = (obj.get("status") or {}).get("phase")
                if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
                    grace = 0
                cur_grace = md.get("deletionGracePeriodSeconds")
                if md.get("deletionTimestamp") and cur_grace is not None and grace >= cur_grace and grace > 0:
                    return obj, False  # already terminating with a shorter or equal grace period
            finalizers = list(md.get("finalizers") or [])
            first = not md.get("deletionTimestamp")
            if first and opts.propagation == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
            if first and opts.propagation == "Orphan" and "orphan" not in finalizers:
                finalizers.append("orphan")
            if opts.propagation in ("Background",) and "orphan" in finalizers and first:
                finalizers.remove("orphan")
            if grace > 0 or finalizers:
                if grace > 0:
                    md["deletionTimestamp"] = _utc_in(grace)
                elif not md.get("deletionTimestamp"):
                    md["deletionTimestamp"] = now()
                md["deletionGracePeriodSeconds"] = grace
                if finalizers:
                    md["finalizers"] = finalizers
                if opts.dry_run:
                    return obj, False
                try:
                    nkv = await self._timed(
                        "update", self.store.update(key, encode(obj), expected_mod_revision=kv.mod_revision)
                    )
                except st.Conflict:
                    continue
                md["resourceVersion"] = str(nkv.mod_revision)
                return obj, False
            if opts.dry_run:
                return obj, True
            try:
                d = await self._timed("delete", self.store.delete(key, expected_mod_revision=kv.mod_revision))
            except st.Conflict:
                continue
            except st.NotFound:
                raise errors.not_found(res.plural, res.group, name) from None
            if res.plural == "services":
                self._release_dropped(obj, None)
            md["resourceVersion"] = str(d.mod_revision)
            return obj, True
        raise errors.conflict(res.plural, res.group, name, "too many concurrent updates; please retry")

    async def delete_collection(
        self, res: Resource, ns: str | None, lo: ListOptions, opts: DeleteOptions
    ) -> list[Obj]:
        items, _ = await self.list(res, ns, lo)
        out = []
        for obj in items:
            md = obj.get("metadata") or {}
            try:
                o, _ = await self.delete(res, md.get("namespace"), md.get("name", ""), opts)
                out.append(o)
            except ApiError as e:
                if e.code != 404:
                    raise
        return out

    # --- namespaces -----------------------------------------------------------------------------

    def _finalize_namespace_later(self, name: str) -> None:
        t = asyncio.create_task(self._finalize_namespace(name))
        self._ns_tasks.add(t)
        t.add_done_callback(self._ns_tasks.discard)

    async def _finalize_namespace(self, name: str) -> None:
        """Remove everything in a terminating namespace, then the namespace itself (the namespace
        controller's job upstream; done here until the controller-manager takes it over)."""
        try:
            for res in RESOURCES:
                if not res.namespaced or not res.stored:
                    continue
                while True:
                    r = await self.store.list(res.prefix(name), limit=500)
                    for kv in r.items:
                        try:
                            await self.store.delete(kv.key)
                        except st.NotFound:
                            continue
                        if res.plural == "services":
                            self._release_dropped(decode(kv.value, kv.mod_revision), None)
                    if not r.items:
                        break
            key = resource("namespaces").key(None, name)
            for _ in range(MAX_RETRIES):
                try:
                    kv = await self.store.get(key)
                except st.NotFound:
                    return
                try:
                    await self.store.delete(key, expected_mod_revision=kv.mod_revision)
                    return
                except st.Conflict:
                    continue
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("finalizing namespace %s", name)

    # --- subresources ------------------------------------------------------------------------

    async def bind(self, ns: str, name: str, binding: Obj, dry_run: bool = False) -> None:
        target = binding.get("target") or {}
        node = target.get("name")
        if not node:
            raise errors.invalid("Binding", "", name, [validation.required("target.name")])
        pods = resource("pods")

        def mutate(pod: Obj) -> Obj:
            md = pod.get("metadata") or {}
            if md.get("deletionTimestamp"):
                raise errors.conflict(
                    "pods", "", name, f"pod {name} is being deleted, cannot be assigned to a host"
                )
            spec = pod.setdefault("spec", {})
            if spec.get("nodeName"):
                raise errors.conflict(
                    "pods", "", name, f'pod {name} is already assigned to node "{spec["nodeName"]}"'
                )
            uid = (binding.get("metadata") or {}).get("uid")
            if uid and uid != md.get("uid"):
                raise errors.conflict(
                    "pods",
                    "",
                    name,
                    f"Precondition failed: UID in precondition: {uid}, UID in object meta: {md.get('uid')}",
                )
            spec["nodeName"] = node
            status = pod.setdefault("status", {})
            conds = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
            conds.append(
                {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": now()}
            )
            status["conditions"] = conds
            return pod

        await self._write_update(pods, ns, name, mutate, skip_validation=True, dry_run=dry_run)

    @staticmethod
    def to_scale(obj: Obj) -> Obj:
        md = obj.get("metadata") or {}
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        sel = spec.get("selector") or {}
        from hyperkube.api.tables import _selector_str

        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: md[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in md
            },
            "spec": {"replicas": spec.get("replicas", 0)},
            "status": {"replicas": status.get("replicas", 0), "selector": _selector_str(sel) if sel else ""},
        }

    async def update_scale(
        self, res: Resource, ns: str, name: str, scale_fn: Callable[[Obj], Obj], dry_run: bool = False
    ) -> Obj:
        def mutate(obj: Obj) -> Obj:
            cur = self.to_scale(obj)
            new_scale = scale_fn(cur)
            if not isinstance(new_scale, dict):
                raise errors.bad_request("the body of the request must be a Scale object")
            nmd = new_scale.get("metadata") or {}
            if nmd.get("resourceVersion") and nmd["resourceVersion"] != obj["metadata"].get(
                "resourceVersion"
            ):
                raise errors.stale(res.plural, res.group, name)
            replicas = (new_scale.get("spec") or {}).get("replicas")
            if replicas is None:
                replicas = 0
            if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
                raise errors.invalid(
                    "Scale",
                    "autoscaling",
                    name,
                    [validation.invalid("spec.replicas", replicas, "must be greater than or equal to 0")],
                )
            obj.setdefault("spec", {})["replicas"] = replicas
            obj["metadata"].pop("resourceVersion", None)
            return obj

        obj, _ = await self._write_update(res, ns, name, mutate, dry_run=dry_run)
        return self.to_scale(obj)
