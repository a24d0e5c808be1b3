"""EndpointSlice controller: discovery.k8s.io/v1 slices for each Service with a selector.

Same triggers as the Endpoints controller. For a Service, every selected pod with an IP (not
terminal) becomes an endpoint with ``conditions`` ready / serving / terminating (terminating pods
stay, with ready=false, as upstream does since 1.26), ``nodeName``, ``zone`` (from the Node's
``topology.kubernetes.io/zone`` label when known) and a ``targetRef``. Endpoints are grouped by
their resolved port list and address family and cut into slices of at most
``--max-endpoints-per-slice`` (100), sorted by address so an unchanged set never rewrites a slice.

Slices carry ``kubernetes.io/service-name`` and ``endpointslice.kubernetes.io/managed-by:
endpointslice-controller.k8s.io`` labels and a controller reference to the Service (the garbage
collector removes them with it). Reconcile reuses the existing slices of a port group in order,
updating only those whose content differs, recycles slices of port groups no longer wanted (their
ports rewritten) before creating any (``generateName: {service}-``), and deletes what is left.
"""

from __future__ import annotations

from typing import Any

from hyperkube.client import NODES, AlreadyExists, NotFound, index_by_label
from hyperkube.client.resources import ENDPOINTSLICES
from hyperkube.controllers.base import (
    ControllerContext,
    Obj,
    is_deleting,
    is_pod_ready,
    meta,
    name_of,
    ns_of,
    observe_write,
    owner_reference,
)
from hyperkube.controllers.endpoints import (
    _ServicePodsController,
    pod_ips,
    resolve_port,
    selected_pods,
    service_selector,
    target_ref,
)

SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
CONTROLLER = "endpointslice-controller.k8s.io"
ZONE = "topology.kubernetes.io/zone"


def desired_slices(svc: Obj, pods: list[Obj], nodes: Any, max_per_slice: int) -> dict[tuple, list[list[Obj]]]:
    spec = svc.get("spec") or {}
    publish = bool(spec.get("publishNotReadyAddresses"))
    groups: dict[tuple, list[Obj]] = {}
    for pod in pods:
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        ips = pod_ips(pod)
        if not ips:
            continue
        ports = []
        for sp in spec.get("ports") or ():
            num = resolve_port(pod, sp)
            if num is None:
                continue
            ports.append(
                (sp.get("name") or "", num, sp.get("protocol") or "TCP", sp.get("appProtocol") or "")
            )
        if spec.get("ports") and not ports:
            continue
        ip = ips[0]
        family = "IPv6" if ":" in ip else "IPv4"
        terminating = is_deleting(pod)
        ready = is_pod_ready(pod)
        ep: Obj = {
            "addresses": [ip],
            "conditions": {
                "ready": (ready or publish) and not terminating,
                "serving": ready or publish,
                "terminating": terminating,
            },
            "targetRef": target_ref(pod),
        }
        pspec = pod.get("spec") or {}
        if pspec.get("nodeName"):
            ep["nodeName"] = pspec["nodeName"]
            node = nodes.get(pspec["nodeName"]) if nodes is not None else None
            zone = ((node or {}).get("metadata") or {}).get("labels", {}).get(ZONE) if node else None
            if zone:
                ep["zone"] = zone
        if pspec.get("hostname") and pspec.get("subdomain") == name_of(svc):
            ep["hostname"] = pspec["hostname"]
        groups.setdefault((family, tuple(sorted(ports))), []).append(ep)
    out: dict[tuple, list[list[Obj]]] = {}
    for key, eps in groups.items():
        eps.sort(key=lambda e: e["addresses"][0])
        out[key] = [eps[i : i + max_per_slice] for i in range(0, len(eps), max_per_slice)]
    return out


def slice_ports(key: tuple) -> list[Obj]:
    out = []
    for name, port, proto, app in key[1]:
        p: Obj = {"name": name, "port": port, "protocol": proto}
        if app:
            p["appProtocol"] = app
        out.append(p)
    return out


def slice_key(sl: Obj) -> tuple:
    ports = tuple(
        sorted(
            (
                p.get("name") or "",
                int(p.get("port") or 0),
                p.get("protocol") or "TCP",
                p.get("appProtocol") or "",
            )
            for p in sl.get("ports") or ()
        )
    )
    return (sl.get("addressType") or "IPv4", ports)


class EndpointSliceController(_ServicePodsController):
    name = "endpointslice"

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.slice_informer = ctx.factory.informer(
            ENDPOINTSLICES, indexers={"service-name": index_by_label(SERVICE_NAME)}
        )
        self.node_informer = ctx.factory.informer(NODES)
        self.informers = (self.svc_informer, self.pod_informer, self.slice_informer, self.node_informer)
        self.slice_informer.add_event_handler(None, self._slice_changed, self._slice_changed)
        self.max_per_slice = ctx.options.max_endpoints_per_slice

    def _slice_changed(self, *objs: Obj) -> None:
        sl = objs[-1]
        labels = meta(sl).get("labels") or {}
        if labels.get(MANAGED_BY) == CONTROLLER and labels.get(SERVICE_NAME):
            self.queue.add(f"{ns_of(sl)}/{labels[SERVICE_NAME]}")

    def _owned(self, ns: str, name: str) -> list[Obj]:
        return [
            s
            for s in self.slice_informer.by_index("service-name", name)
            if ns_of(s) == ns and (meta(s).get("labels") or {}).get(MANAGED_BY) == CONTROLLER
        ]

    async def reconcile(self, key: str) -> None:
        ns, _, name = key.partition("/")
        svc = self.svc_informer.get(name, ns)
        existing = sorted(self._owned(ns, name), key=lambda s: name_of(s))
        if svc is None or service_selector(svc) is None or is_deleting(svc):
            if svc is None:
                return  # the garbage collector removes the slices with their owner
            if service_selector(svc) is None:
                for sl in existing:
                    await self._delete(sl)
            return
        want = desired_slices(
            svc, selected_pods(self.pod_informer, svc), self.node_informer, self.max_per_slice
        )
        if not want and not existing:
            want = {("IPv4", ()): [[]]}  # an empty slice, as upstream keeps one placeholder
        elif not want:
            want = {slice_key(existing[0]): [[]]}
        by_key: dict[tuple, list[Obj]] = {}
        for sl in existing:
            by_key.setdefault(slice_key(sl), []).append(sl)
        labels = {**(meta(svc).get("labels") or {}), SERVICE_NAME: name, MANAGED_BY: CONTROLLER}
        # slices of port groups no longer wanted are recycled (ports rewritten) before any create
        spare = [sl for k, sls in by_key.items() if k not in want for sl in sls]
        for k, chunks in want.items():
            have = by_key.get(k, [])
            for i, eps in enumerate(chunks):
                cur = (
                    have[i]
                    if i < len(have)
                    else next((x for x in spare if x.get("addressType") == k[0]), None)
                )
                if cur is not None and i >= len(have):
                    spare.remove(cur)
                if cur is not None:
                    if (
                        (cur.get("endpoints") or []) == eps
                        and (meta(cur).get("labels") or {}) == labels
                        and slice_key(cur) == k
                    ):
                        continue
                    body = dict(cur, endpoints=eps, ports=slice_ports(k))
                    body["metadata"] = dict(meta(cur), labels=labels)
                    try:
                        observe_write(self.slice_informer, await self.client.update(ENDPOINTSLICES, body, ns))
                    except NotFound:
                        self.queue.add(key)
                    continue
                body = {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {
                        "generateName": f"{name}-",
                        "namespace": ns,
                        "labels": labels,
                        "ownerReferences": [owner_reference(svc)],
                    },
                    "addressType": k[0],
                    "ports": slice_ports(k),
                    "endpoints": eps,
                }
                try:
                    observe_write(self.slice_informer, await self.client.create(ENDPOINTSLICES, body, ns))
                except AlreadyExists:
                    self.queue.add(key)
            for extra in have[len(chunks) :]:
                await self._delete(extra)
        for sl in spare:
            await self._delete(sl)

    async def _delete(self, sl: Obj) -> None:
        try:
            await self.client.delete(ENDPOINTSLICES, name_of(sl), ns_of(sl))
        except NotFound:
            pass
        self.slice_informer.store.delete(sl)


__all__ = ["EndpointSliceController"]
