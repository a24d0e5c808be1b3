"""Endpoints controller: for each Service with a selector, the addresses of its pods.

A pod change enqueues every Service of its namespace whose selector matches the pod's old or new
labels (matched in bulk by the native selector); a Service change enqueues itself. ``reconcile``
builds the Endpoints object as upstream does:

- pods with an IP, not terminal; a terminating pod is left out unless the Service has
  ``publishNotReadyAddresses``;
- ready pods go to ``addresses``, the others to ``notReadyAddresses`` (all are "ready" with
  ``publishNotReadyAddresses``), each with ``nodeName`` and a ``targetRef`` to the pod, and
  ``hostname`` when the pod's ``subdomain`` is the Service's name;
- a named ``targetPort`` is resolved per pod against its containers' ports (a pod without that
  port is left out of that port's subsets), so pods of two versions can serve one name on
  different numbers;
- addresses with the same resolved ports share a subset; everything is sorted so an unchanged
  set of pods never rewrites the object.

The object is written only when subsets or labels changed, immediately (no batching), so clients
see a pod change within one watch round trip. Deleting the Service deletes its Endpoints.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hyperkube import _native
from hyperkube.client import ENDPOINTS, PODS, SERVICES, AlreadyExists, Conflict, NotFound, meta_namespace_key
from hyperkube.controllers.base import (
    ControllerContext,
    Obj,
    QueueController,
    is_deleting,
    is_pod_ready,
    meta,
    name_of,
    ns_of,
    observe_write,
    uid_of,
)

HEADLESS_LABEL = "service.kubernetes.io/headless"


def service_selector(svc: Obj) -> Any | None:
    sel = (svc.get("spec") or {}).get("selector")
    if not sel:
        return None
    return _native.Selector.from_label_selector({"matchLabels": sel})


def resolve_port(pod: Obj, svc_port: Obj) -> int | None:
    """The pod's port for a Service port (``targetPort`` number or container port name)."""
    tp = svc_port.get("targetPort")
    if tp is None or tp == "" or tp == 0:
        return int(svc_port.get("port") or 0) or None
    if isinstance(tp, int) or (isinstance(tp, str) and tp.isdigit()):
        return int(tp)
    proto = svc_port.get("protocol") or "TCP"
    for c in (pod.get("spec") or {}).get("containers") or ():
        for p in c.get("ports") or ():
            if p.get("name") == tp and (p.get("protocol") or "TCP") == proto:
                return int(p["containerPort"])
    return None


def pod_ips(pod: Obj) -> list[str]:
    st = pod.get("status") or {}
    ips = [x.get("ip") for x in st.get("podIPs") or () if x.get("ip")]
    if not ips and st.get("podIP"):
        ips = [st["podIP"]]
    return ips


def target_ref(pod: Obj) -> Obj:
    return {"kind": "Pod", "namespace": ns_of(pod), "name": name_of(pod), "uid": uid_of(pod)}


def services_for_pod(svc_informer: Any, pods: Iterable[Obj]) -> set[str]:
    keys: set[str] = set()
    for pod in pods:
        labels = meta(pod).get("labels") or {}
        for svc in svc_informer.list(ns_of(pod)):
            sel = service_selector(svc)
            if sel is not None and sel.matches(labels):
                keys.add(meta_namespace_key(svc))
    return keys


def selected_pods(pod_informer: Any, svc: Obj) -> list[Obj]:
    sel = service_selector(svc)
    if sel is None:
        return []
    pods = pod_informer.list(ns_of(svc))
    if not pods:
        return []
    hits = sel.match_many([meta(p).get("labels") for p in pods])
    return [p for p, ok in zip(pods, hits, strict=True) if ok]


class _ServicePodsController(QueueController):
    """Shared wiring: Services and pods → service keys."""

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.svc_informer = ctx.factory.informer(SERVICES)
        self.pod_informer = ctx.factory.informer(PODS)
        self.svc_informer.add_event_handler(self.enqueue, lambda o, n: self.enqueue(n), self.enqueue)
        self.pod_informer.add_event_handler(self._pod, self._pod_updated, self._pod)

    def _pod(self, pod: Obj) -> None:
        for k in services_for_pod(self.svc_informer, [pod]):
            self.queue.add(k)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if meta(old).get("resourceVersion") == meta(new).get("resourceVersion"):
            return
        if meta(old).get("labels") == meta(new).get("labels"):
            pods = [new]
        else:
            pods = [old, new]
        for k in services_for_pod(self.svc_informer, pods):
            self.queue.add(k)


def build_subsets(svc: Obj, pods: list[Obj]) -> list[Obj]:
    spec = svc.get("spec") or {}
    publish = bool(spec.get("publishNotReadyAddresses"))
    groups: dict[tuple, tuple[list[Obj], list[Obj]]] = {}
    for pod in pods:
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            continue
        if is_deleting(pod) and not publish:
            continue
        ips = pod_ips(pod)
        if not ips:
            continue
        ports = []
        for sp in spec.get("ports") or ():
            num = resolve_port(pod, sp)
            if num is None:
                continue
            ep: Obj = {"port": num, "protocol": sp.get("protocol") or "TCP"}
            if sp.get("name"):
                ep["name"] = sp["name"]
            if sp.get("appProtocol"):
                ep["appProtocol"] = sp["appProtocol"]
            ports.append(ep)
        if spec.get("ports") and not ports:
            continue
        pspec = pod.get("spec") or {}
        addr: Obj = {"ip": ips[0], "targetRef": target_ref(pod)}
        if pspec.get("nodeName"):
            addr["nodeName"] = pspec["nodeName"]
        if pspec.get("hostname") and pspec.get("subdomain") == name_of(svc):
            addr["hostname"] = pspec["hostname"]
        key = tuple(sorted((p.get("name", ""), p["port"], p["protocol"]) for p in ports))
        ready, not_ready = groups.setdefault(key, ([], []))
        (ready if publish or is_pod_ready(pod) else not_ready).append(addr)
    subsets = []
    for key in sorted(groups):
        ready, not_ready = groups[key]
        s: Obj = {}
        if ready:
            s["addresses"] = sorted(ready, key=lambda a: a["ip"])
        if not_ready:
            s["notReadyAddresses"] = sorted(not_ready, key=lambda a: a["ip"])
        ports = [
            {"name": n, "port": p, "protocol": pr} if n else {"port": p, "protocol": pr} for n, p, pr in key
        ]
        if ports:
            s["ports"] = ports
        subsets.append(s)
    return subsets


class EndpointsController(_ServicePodsController):
    name = "endpoint"

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.ep_informer = ctx.factory.informer(ENDPOINTS)
        self.informers = (self.svc_informer, self.pod_informer, self.ep_informer)
        self.ep_informer.add_event_handler(None, None, self._ep_deleted)

    def _ep_deleted(self, ep: Obj) -> None:
        if self.svc_informer.get(name_of(ep), ns_of(ep)) is not None:
            self.enqueue(ep)

    async def reconcile(self, key: str) -> None:
        ns, _, name = key.partition("/")
        svc = self.svc_informer.get(name, ns)
        if svc is None:
            if self.ep_informer.get(name, ns) is not None:
                try:
                    await self.client.delete(ENDPOINTS, name, ns)
                except NotFound:
                    pass
            return
        if service_selector(svc) is None:
            return  # endpoints of a Service without selector are managed by the user
        subsets = build_subsets(svc, selected_pods(self.pod_informer, svc))
        labels = dict(meta(svc).get("labels") or {})
        if (svc.get("spec") or {}).get("clusterIP") == "None":
            labels[HEADLESS_LABEL] = ""
        cur = self.ep_informer.get(name, ns)
        if cur is not None:
            if (cur.get("subsets") or []) == subsets and (meta(cur).get("labels") or {}) == labels:
                return
            body = dict(cur, subsets=subsets)
            body["metadata"] = dict(meta(cur), labels=labels)
            try:
                observe_write(self.ep_informer, await self.client.update(ENDPOINTS, body, ns))
            except NotFound:
                self.queue.add(key)
            return
        body = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "subsets": subsets,
        }
        try:
            observe_write(self.ep_informer, await self.client.create(ENDPOINTS, body, ns))
        except AlreadyExists:
            raise Conflict(f"endpoints {key} appeared; retrying with the cached copy") from None
