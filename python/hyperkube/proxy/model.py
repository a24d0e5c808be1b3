"""Services and EndpointSlices (API dicts) -> the columnar service model the native generators take.

Upstream's kube-proxy keeps a ``ServicePortMap`` and an ``EndpointsMap`` (pkg/proxy/servicechangetracker.go,
endpointslicecache.go). We build the same information as columns, one row per service port, sorted
by service port name, with each row's endpoints as a run in flat endpoint columns (CSR offsets).
The whole model crosses into Rust once per sync (``hyperkube._native.proxy_render_*``).

What follows upstream:

- a service is skipped when its type is ExternalName or it has no IPv4 cluster IP (headless);
- ``ns/name:port`` (``ns/name`` for an unnamed port) is the service port name chains are hashed from;
- LoadBalancer ingress IPs and source ranges count only for type LoadBalancer; ``externalTrafficPolicy:
  Local`` only for externally reachable services; ``healthCheckNodePort`` only for LoadBalancer + Local;
- EndpointSlices are joined to service ports by (namespace, ``kubernetes.io/service-name`` label,
  port name, protocol); only IPv4 slices and the first address of each endpoint are used; ``ready``
  defaults to true, ``serving`` to true and ``terminating`` to false; endpoints are de-duplicated by
  ``ip:port`` (slices in name order, a later slice wins) and sorted by ``ip:port``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

EP_READY = 1
EP_SERVING = 2
EP_TERMINATING = 4
EP_LOCAL = 8

SVC_AFFINITY = 1
SVC_INTERNAL_LOCAL = 2
SVC_EXTERNAL_LOCAL = 4

PROTOCOLS = ("tcp", "udp", "sctp")
PROTOCOL_CODES = {"TCP": 0, "UDP": 1, "SCTP": 2}

DEFAULT_AFFINITY_TIMEOUT = 10800
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

COLUMNS = (
    "names",
    "protocols",
    "cluster_ips",
    "ports",
    "node_ports",
    "health_check_node_ports",
    "flags",
    "affinity_timeouts",
    "external_ip_offsets",
    "external_ips",
    "lb_ip_offsets",
    "lb_ips",
    "source_range_offsets",
    "source_ranges",
    "ep_offsets",
    "ep_ips",
    "ep_ports",
    "ep_flags",
)

Model = dict[str, list[Any]]


class ModelError(ValueError):
    """A Service or EndpointSlice the proxy cannot use (the message names it and the field)."""


def _is_ipv4(s: object) -> bool:
    if not isinstance(s, str):
        return False
    try:
        ipaddress.IPv4Address(s)
    except ValueError:
        return False
    return True


def _cidr4(s: str) -> str | None:
    try:
        return str(ipaddress.IPv4Network(s.strip(), strict=False))
    except ValueError:
        return None


def empty_model() -> Model:
    m: Model = {c: [] for c in COLUMNS}
    for c in ("external_ip_offsets", "lb_ip_offsets", "source_range_offsets", "ep_offsets"):
        m[c].append(0)
    return m


def _cluster_ipv4(spec: Mapping[str, Any]) -> str | None:
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    for ip in ips:
        if ip and ip != "None" and _is_ipv4(ip):
            return str(ip)
    return None


def endpoints_by_port(
    slices: Iterable[Mapping[str, Any]], node_name: str | None
) -> dict[tuple[str, str, str, str], dict[str, tuple[str, int, int]]]:
    """(namespace, service, port name, protocol) -> {"ip:port": (ip, port, flags)}."""
    out: dict[tuple[str, str, str, str], dict[str, tuple[str, int, int]]] = {}

    def key(s: Mapping[str, Any]) -> tuple[str, str]:
        md = s.get("metadata") or {}
        return (md.get("namespace") or "", md.get("name") or "")

    for sl in sorted(slices, key=key):
        md = sl.get("metadata") or {}
        svc = (md.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if not svc or sl.get("addressType", "IPv4") != "IPv4":
            continue
        ns = md.get("namespace") or "default"
        for p in sl.get("ports") or []:
            port = p.get("port")
            if port is None:
                continue
            if not isinstance(port, int) or not 0 < port < 65536:
                raise ModelError(
                    f"EndpointSlice {ns}/{md.get('name')}: ports[].port: Invalid value: {port!r}: "
                    "must be between 1 and 65535, inclusive"
                )
            proto = p.get("protocol") or "TCP"
            eps = out.setdefault((ns, svc, p.get("name") or "", proto), {})
            for ep in sl.get("endpoints") or []:
                addrs = ep.get("addresses") or []
                if not addrs or not _is_ipv4(addrs[0]):
                    continue
                cond = ep.get("conditions") or {}
                ready = cond.get("ready") is not False
                serving = cond.get("serving") is not False
                terminating = cond.get("terminating") is True
                flags = (
                    (EP_READY if ready else 0)
                    | (EP_SERVING if serving else 0)
                    | (EP_TERMINATING if terminating else 0)
                )
                if node_name is not None and ep.get("nodeName") == node_name:
                    flags |= EP_LOCAL
                ip = str(addrs[0])
                eps[f"{ip}:{port}"] = (ip, port, flags)
    return out


def build_model(
    services: Iterable[Mapping[str, Any]],
    slices: Iterable[Mapping[str, Any]],
    node_name: str | None = None,
) -> Model:
    """The columnar model for these Services and EndpointSlices (rows sorted by name)."""
    eps = endpoints_by_port(slices, node_name)
    rows: list[tuple[str, int, dict[str, Any]]] = []
    for svc in services:
        md = svc.get("metadata") or {}
        spec = svc.get("spec") or {}
        ns, name = md.get("namespace") or "default", md.get("name") or ""
        typ = spec.get("type") or "ClusterIP"
        if typ == "ExternalName":
            continue
        cip = _cluster_ipv4(spec)
        if cip is None:
            continue
        lb = typ == "LoadBalancer"
        external_ips = [ip for ip in spec.get("externalIPs") or [] if _is_ipv4(ip)]
        lb_ips: list[str] = []
        ranges: list[str] = []
        if lb:
            for ing in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
                if _is_ipv4(ing.get("ip")) and ing.get("ipMode", "VIP") == "VIP":
                    lb_ips.append(ing["ip"])
            for r in spec.get("loadBalancerSourceRanges") or []:
                c = _cidr4(str(r))
                if c is not None:
                    ranges.append(c)
        accessible_by_type = typ in ("NodePort", "LoadBalancer") or bool(external_ips)
        ext_local = accessible_by_type and spec.get("externalTrafficPolicy") == "Local"
        flags = 0
        if ext_local:
            flags |= SVC_EXTERNAL_LOCAL
        if spec.get("internalTrafficPolicy") == "Local":
            flags |= SVC_INTERNAL_LOCAL
        timeout = DEFAULT_AFFINITY_TIMEOUT
        if spec.get("sessionAffinity") == "ClientIP":
            flags |= SVC_AFFINITY
            cfg = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
            timeout = int(cfg.get("timeoutSeconds") or DEFAULT_AFFINITY_TIMEOUT)
        hc = int(spec.get("healthCheckNodePort") or 0) if lb and ext_local else 0
        for p in spec.get("ports") or []:
            proto = p.get("protocol") or "TCP"
            if proto not in PROTOCOL_CODES:
                raise ModelError(
                    f"Service {ns}/{name}: spec.ports[].protocol: Unsupported value: {proto!r}: "
                    'supported values: "SCTP", "TCP", "UDP"'
                )
            port = p.get("port")
            if not isinstance(port, int) or not 0 < port < 65536:
                raise ModelError(
                    f"Service {ns}/{name}: spec.ports[].port: Invalid value: {port!r}: "
                    "must be between 1 and 65535, inclusive"
                )
            pname = p.get("name") or ""
            spn = f"{ns}/{name}:{pname}" if pname else f"{ns}/{name}"
            row = {
                "protocol": PROTOCOL_CODES[proto],
                "cluster_ip": cip,
                "port": port,
                "node_port": int(p.get("nodePort") or 0),
                "hc": hc,
                "flags": flags,
                "timeout": timeout,
                "external_ips": external_ips,
                "lb_ips": lb_ips,
                "ranges": ranges,
                "eps": eps.get((ns, name, pname, proto), {}),
            }
            rows.append((spn, PROTOCOL_CODES[proto], row))
    rows.sort(key=lambda r: (r[0], r[1]))
    m = empty_model()
    for spn, _, r in rows:
        m["names"].append(spn)
        m["protocols"].append(r["protocol"])
        m["cluster_ips"].append(r["cluster_ip"])
        m["ports"].append(r["port"])
        m["node_ports"].append(r["node_port"])
        m["health_check_node_ports"].append(r["hc"])
        m["flags"].append(r["flags"])
        m["affinity_timeouts"].append(r["timeout"])
        for col, items in (("external_ip", r["external_ips"]), ("lb_ip", r["lb_ips"])):
            m[col + "s"].extend(items)
            m[col + "_offsets"].append(len(m[col + "s"]))
        m["source_ranges"].extend(r["ranges"])
        m["source_range_offsets"].append(len(m["source_ranges"]))
        for k in sorted(r["eps"]):
            ip, port, f = r["eps"][k]
            m["ep_ips"].append(ip)
            m["ep_ports"].append(port)
            m["ep_flags"].append(f)
        m["ep_offsets"].append(len(m["ep_ips"]))
    return m


def service_of(row_name: str) -> tuple[str, str]:
    """(namespace, service name) of a service port name ``ns/name[:port]``."""
    ns, rest = row_name.split("/", 1)
    return ns, rest.split(":", 1)[0]


class ModelBuilder:
    """Services and EndpointSlices as they change -> row updates for a ``ProxyTable``.

    The informer handlers call ``set_*``/``delete_*``; ``changes()`` returns the rows of the
    services touched since the last call (as a model) and the keys of their rows that are gone,
    so a sync costs O(changed services), not O(services).
    """

    def __init__(self, node_name: str | None = None) -> None:
        self.node_name = node_name
        self.services: dict[tuple[str, str], Mapping[str, Any]] = {}
        self.slices: dict[tuple[str, str], Mapping[str, Any]] = {}
        self.slices_of: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self.service_of_slice: dict[tuple[str, str], tuple[str, str]] = {}
        self.rows: dict[tuple[str, str], list[tuple[str, int]]] = {}
        self.dirty: set[tuple[str, str]] = set()

    @staticmethod
    def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
        md = obj.get("metadata") or {}
        return md.get("namespace") or "default", md.get("name") or ""

    def set_service(self, svc: Mapping[str, Any]) -> None:
        k = self._key(svc)
        self.services[k] = svc
        self.dirty.add(k)

    def delete_service(self, namespace: str, name: str) -> None:
        self.services.pop((namespace, name), None)
        self.dirty.add((namespace, name))

    def set_slice(self, sl: Mapping[str, Any]) -> None:
        k = self._key(sl)
        self.delete_slice(*k)
        svc = ((sl.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL)
        if not svc:
            return
        sk = (k[0], svc)
        self.slices[k] = sl
        self.service_of_slice[k] = sk
        self.slices_of.setdefault(sk, set()).add(k)
        self.dirty.add(sk)

    def delete_slice(self, namespace: str, name: str) -> None:
        k = (namespace, name)
        self.slices.pop(k, None)
        sk = self.service_of_slice.pop(k, None)
        if sk is not None:
            self.slices_of.get(sk, set()).discard(k)
            self.dirty.add(sk)

    def changes(self) -> tuple[Model, list[tuple[str, int]]]:
        dirty, self.dirty = self.dirty, set()
        svcs = [self.services[k] for k in sorted(dirty) if k in self.services]
        sls = [self.slices[s] for k in sorted(dirty) for s in sorted(self.slices_of.get(k, ()))]
        m = build_model(svcs, sls, self.node_name)
        new_rows: dict[tuple[str, str], list[tuple[str, int]]] = {}
        for name, proto in zip(m["names"], m["protocols"], strict=True):
            new_rows.setdefault(service_of(name), []).append((name, proto))
        removed: list[tuple[str, int]] = []
        for k in dirty:
            old = set(self.rows.pop(k, []))
            new = new_rows.get(k, [])
            removed += sorted(old - set(new))
            if new:
                self.rows[k] = new
        return m, removed
