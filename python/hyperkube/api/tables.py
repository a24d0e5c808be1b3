"""Server-side tables (``meta.k8s.io/v1 Table``) with upstream's columns, as
``pkg/printers/internalversion/printers.go`` defines them, so ``kubectl get`` prints what it
prints against a real cluster. Columns with priority 1 appear with ``-o wide``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hyperkube.api.meta import age, parse_time

Obj = dict[str, Any]
Col = tuple[str, str, int, str]  # name, type, priority, description

NAME: Col = ("Name", "string", 0, "Name must be unique within a namespace.")
AGE: Col = (
    "Age",
    "string",
    0,
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
)


def _none(v: Any) -> str:
    return str(v) if v not in (None, "", []) else "<none>"


def _meta(o: Obj) -> Obj:
    return o.get("metadata") or {}


def _name(o: Obj) -> str:
    return _meta(o).get("name", "")


def _age(o: Obj) -> str:
    return age(_meta(o).get("creationTimestamp"))


# --- pods -----------------------------------------------------------------------------------

POD_COLS: list[Col] = [
    NAME,
    ("Ready", "string", 0, "The aggregate readiness state of this pod for accepting traffic."),
    ("Status", "string", 0, "The aggregate status of the containers in this pod."),
    (
        "Restarts",
        "string",
        0,
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    (
        "IP",
        "string",
        1,
        "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
    ),
    ("Node", "string", 1, "NodeName is a request to schedule this pod onto a specific node."),
    (
        "Nominated Node",
        "string",
        1,
        "nominatedNodeName is set only when this pod preempts other pods on the node.",
    ),
    (
        "Readiness Gates",
        "string",
        1,
        "If specified, all readiness gates will be evaluated for pod readiness.",
    ),
]


def pod_status_reason(pod: Obj) -> tuple[str, int, int, int, str | None]:
    """(STATUS, ready, total, restarts, last restart time) as kubectl's printPod computes them."""
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    total = len(spec.get("containers") or [])
    ready = restarts = 0
    last_restart: str | None = None
    reason = status.get("reason") or status.get("phase") or "Pending"
    init_statuses = status.get("initContainerStatuses") or []
    initializing = False
    for i, c in enumerate(init_statuses):
        restarts += c.get("restartCount", 0)
        st = c.get("state") or {}
        term = st.get("terminated")
        if term and term.get("exitCode", 0) == 0:
            continue
        if term:
            reason = "Init:" + (term.get("reason") or f"ExitCode:{term.get('exitCode')}")
            if not term.get("reason") and term.get("signal"):
                reason = f"Init:Signal:{term['signal']}"
        elif (st.get("waiting") or {}).get("reason") and st["waiting"]["reason"] != "PodInitializing":
            reason = "Init:" + st["waiting"]["reason"]
        else:
            reason = f"Init:{i}/{len(spec.get('initContainers') or [])}"
        initializing = True
        break
    if not initializing:
        restarts = 0
        has_running = False
        for c in reversed(status.get("containerStatuses") or []):
            restarts += c.get("restartCount", 0)
            term_last = (c.get("lastState") or {}).get("terminated")
            if term_last and term_last.get("finishedAt"):
                if last_restart is None or term_last["finishedAt"] > last_restart:
                    last_restart = term_last["finishedAt"]
            st = c.get("state") or {}
            if (st.get("waiting") or {}).get("reason"):
                reason = st["waiting"]["reason"]
            elif (st.get("terminated") or {}).get("reason"):
                reason = st["terminated"]["reason"]
            elif st.get("terminated") is not None:
                t = st["terminated"]
                reason = f"Signal:{t['signal']}" if t.get("signal") else f"ExitCode:{t.get('exitCode', 0)}"
            elif st.get("running") is not None and c.get("ready"):
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
            reason = "Running" if conds.get("Ready") == "True" else "NotReady"
    md = _meta(pod)
    if md.get("deletionTimestamp") and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif md.get("deletionTimestamp"):
        reason = "Terminating"
    return reason, ready, total, restarts, last_restart


def pod_row(pod: Obj) -> list[Any]:
    reason, ready, total, restarts, last = pod_status_reason(pod)
    r = str(restarts)
    if last and parse_time(last):
        r = f"{restarts} ({age(last)} ago)"
    status = pod.get("status") or {}
    spec = pod.get("spec") or {}
    gates = spec.get("readinessGates") or []
    if gates:
        conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        ok = sum(1 for g in gates if conds.get(g.get("conditionType")) == "True")
        gate = f"{ok}/{len(gates)}"
    else:
        gate = "<none>"
    return [
        _name(pod),
        f"{ready}/{total}",
        reason,
        r,
        _age(pod),
        _none(status.get("podIP")),
        _none(spec.get("nodeName")),
        _none(status.get("nominatedNodeName")),
        gate,
    ]


# --- nodes ----------------------------------------------------------------------------------

NODE_COLS: list[Col] = [
    NAME,
    ("Status", "string", 0, "The status of the node"),
    ("Roles", "string", 0, "The roles of the node"),
    AGE,
    ("Version", "string", 0, "Kubelet Version reported by the node."),
    (
        "Internal-IP",
        "string",
        1,
        "List of addresses reachable to the node. Queried from cloud provider, if available.",
    ),
    (
        "External-IP",
        "string",
        1,
        "List of addresses reachable to the node. Queried from cloud provider, if available.",
    ),
    (
        "OS-Image",
        "string",
        1,
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
    ),
    (
        "Kernel-Version",
        "string",
        1,
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
    ),
    (
        "Container-Runtime",
        "string",
        1,
        "Container runtime version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
    ),
]


def node_row(node: Obj) -> list[Any]:
    status = node.get("status") or {}
    conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    ready = conds.get("Ready")
    st = "Ready" if ready == "True" else ("NotReady" if ready == "False" else "Unknown")
    if (node.get("spec") or {}).get("unschedulable"):
        st += ",SchedulingDisabled"
    roles = sorted(
        {
            k[len("node-role.kubernetes.io/") :]
            for k in (_meta(node).get("labels") or {})
            if k.startswith("node-role.kubernetes.io/")
        }
        | (
            {(_meta(node).get("labels") or {})["kubernetes.io/role"]}
            if "kubernetes.io/role" in (_meta(node).get("labels") or {})
            else set()
        )
    )
    addrs = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    info = status.get("nodeInfo") or {}
    return [
        _name(node),
        st,
        ",".join(r for r in roles if r) or "<none>",
        _age(node),
        info.get("kubeletVersion", ""),
        _none(addrs.get("InternalIP")),
        _none(addrs.get("ExternalIP")),
        _none(info.get("osImage")) if info.get("osImage") else "<unknown>",
        _none(info.get("kernelVersion")) if info.get("kernelVersion") else "<unknown>",
        _none(info.get("containerRuntimeVersion")) if info.get("containerRuntimeVersion") else "<unknown>",
    ]


# --- services -------------------------------------------------------------------------------

SVC_COLS: list[Col] = [
    NAME,
    ("Type", "string", 0, "type determines how the Service is exposed."),
    (
        "Cluster-IP",
        "string",
        0,
        "clusterIP is the IP address of the service and is usually assigned randomly.",
    ),
    (
        "External-IP",
        "string",
        0,
        "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
    ),
    ("Port(s)", "string", 0, "The list of ports that are exposed by this service."),
    AGE,
    (
        "Selector",
        "string",
        1,
        "Route service traffic to pods with label keys and values matching this selector.",
    ),
]


def _svc_external(svc: Obj) -> str:
    spec = svc.get("spec") or {}
    t = spec.get("type", "ClusterIP")
    ext = list(spec.get("externalIPs") or [])
    if t in ("ClusterIP", "NodePort"):
        return ",".join(ext) if ext else "<none>"
    if t == "ExternalName":
        return spec.get("externalName", "<none>")
    ing = [
        i.get("ip") or i.get("hostname")
        for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    ]
    all_ = [x for x in ing + ext if x]
    return ",".join(all_) if all_ else "<pending>"


def _svc_ports(svc: Obj) -> str:
    out = []
    for p in (svc.get("spec") or {}).get("ports") or []:
        s = str(p.get("port"))
        if p.get("nodePort"):
            s += f":{p['nodePort']}"
        out.append(f"{s}/{p.get('protocol', 'TCP')}")
    return ",".join(out) if out else "<none>"


def _selector_str(sel: Any) -> str:
    if not sel:
        return "<none>"
    if "matchLabels" in sel or "matchExpressions" in sel:
        parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
        for e in sel.get("matchExpressions") or []:
            op = e.get("operator", "")
            vals = ",".join(e.get("values") or [])
            if op == "In":
                parts.append(f"{e['key']} in ({vals})")
            elif op == "NotIn":
                parts.append(f"{e['key']} notin ({vals})")
            elif op == "Exists":
                parts.append(e["key"])
            else:
                parts.append(f"!{e['key']}")
        return ",".join(parts) if parts else "<none>"
    return ",".join(f"{k}={v}" for k, v in sorted(sel.items()))


def svc_row(svc: Obj) -> list[Any]:
    spec = svc.get("spec") or {}
    return [
        _name(svc),
        spec.get("type", "ClusterIP"),
        _none(spec.get("clusterIP")),
        _svc_external(svc),
        _svc_ports(svc),
        _age(svc),
        _selector_str(spec.get("selector")),
    ]


# --- workloads ------------------------------------------------------------------------------

CONTAINERS: Col = ("Containers", "string", 1, "Names of each container in the template.")
IMAGES: Col = ("Images", "string", 1, "Images referenced by each container in the template.")
SELECTOR: Col = (
    "Selector",
    "string",
    1,
    "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
)


def _tpl_containers(o: Obj) -> tuple[str, str]:
    cs = ((((o.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers")) or []
    return ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)


DEPLOY_COLS: list[Col] = [
    NAME,
    ("Ready", "string", 0, "Number of the pod with ready state"),
    (
        "Up-to-date",
        "string",
        0,
        "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
    ),
    (
        "Available",
        "string",
        0,
        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
]


def deploy_row(d: Obj) -> list[Any]:
    spec, st = d.get("spec") or {}, d.get("status") or {}
    names, images = _tpl_containers(d)
    return [
        _name(d),
        f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        st.get("updatedReplicas", 0),
        st.get("availableReplicas", 0),
        _age(d),
        names,
        images,
        _selector_str(spec.get("selector")),
    ]


RS_COLS: list[Col] = [
    NAME,
    ("Desired", "integer", 0, "Replicas is the number of desired replicas."),
    ("Current", "integer", 0, "Replicas is the most recently observed number of replicas."),
    ("Ready", "integer", 0, "The number of ready replicas for this replica set."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
]


def rs_row(r: Obj) -> list[Any]:
    spec, st = r.get("spec") or {}, r.get("status") or {}
    names, images = _tpl_containers(r)
    return [
        _name(r),
        spec.get("replicas", 0),
        st.get("replicas", 0),
        st.get("readyReplicas", 0),
        _age(r),
        names,
        images,
        _selector_str(spec.get("selector")),
    ]


# --- the rest -------------------------------------------------------------------------------


def _endpoints_str(ep: Obj) -> str:
    out = []
    for s in ep.get("subsets") or []:
        ports = s.get("ports") or [{}]
        for a in s.get("addresses") or []:
            for p in ports:
                out.append(f"{a.get('ip')}:{p['port']}" if p.get("port") else a.get("ip", ""))
    if not out:
        return "<none>"
    if len(out) > 3:
        return ",".join(out[:3]) + f" + {len(out) - 3} more..."
    return ",".join(out)


def _slice_ports(s: Obj) -> str:
    ps = [str(p.get("port")) for p in s.get("ports") or [] if p.get("port") is not None]
    return ",".join(ps) if ps else "<unset>"


def _slice_endpoints(s: Obj) -> str:
    addrs = [a for e in s.get("endpoints") or [] for a in e.get("addresses") or []]
    if not addrs:
        return "<unset>"
    if len(addrs) > 3:
        return ",".join(addrs[:3]) + f" + {len(addrs) - 3} more..."
    return ",".join(addrs)


def _event_object(e: Obj) -> str:
    io = e.get("involvedObject") or {}
    return f"{(io.get('kind') or '').lower()}/{io.get('name', '')}"


def _event_last_seen(e: Obj) -> str:
    t = e.get("lastTimestamp") or e.get("eventTime") or _meta(e).get("creationTimestamp")
    return age(t)


def _binding_subjects(b: Obj, kind: str) -> str:
    out = []
    for s in b.get("subjects") or []:
        if s.get("kind") == kind:
            out.append(
                f"{s.get('namespace')}/{s.get('name')}" if kind == "ServiceAccount" else s.get("name", "")
            )
    return ",".join(out)


def _binding_row(o: Obj) -> list[Any]:
    ref = o.get("roleRef") or {}
    return [
        _name(o),
        f"{ref.get('kind')}/{ref.get('name')}",
        _age(o),
        _binding_subjects(o, "User"),
        _binding_subjects(o, "Group"),
        _binding_subjects(o, "ServiceAccount"),
    ]


CREATED_AT: Col = (
    "Created At",
    "date",
    0,
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
)

GENERIC: dict[str, tuple[list[Col], Callable[[Obj], list[Any]]]] = {
    "pods": (POD_COLS, pod_row),
    "nodes": (NODE_COLS, node_row),
    "services": (SVC_COLS, svc_row),
    "deployments": (DEPLOY_COLS, deploy_row),
    "replicasets": (RS_COLS, rs_row),
    "namespaces": (
        [NAME, ("Status", "string", 0, "The status of the namespace"), AGE],
        lambda o: [_name(o), (o.get("status") or {}).get("phase", "Active"), _age(o)],
    ),
    "configmaps": (
        [NAME, ("Data", "string", 0, "Data contains the configuration data."), AGE],
        lambda o: [_name(o), len(o.get("data") or {}) + len(o.get("binaryData") or {}), _age(o)],
    ),
    "secrets": (
        [
            NAME,
            ("Type", "string", 0, "The type of secret"),
            ("Data", "string", 0, "Data contains the secret data."),
            AGE,
        ],
        lambda o: [
            _name(o),
            o.get("type", "Opaque"),
            len(o.get("data") or {}) + len(o.get("stringData") or {}),
            _age(o),
        ],
    ),
    "serviceaccounts": (
        [
            NAME,
            (
                "Secrets",
                "string",
                0,
                "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
            ),
            AGE,
        ],
        lambda o: [_name(o), len(o.get("secrets") or []), _age(o)],
    ),
    "endpoints": (
        [NAME, ("Endpoints", "string", 0, "Endpoints is the list of endpoints in this service."), AGE],
        lambda o: [_name(o), _endpoints_str(o), _age(o)],
    ),
    "endpointslices": (
        [
            NAME,
            ("AddressType", "string", 0, "The IP protocol family of the endpoints."),
            ("Ports", "string", 0, "Ports of the endpoints."),
            ("Endpoints", "string", 0, "Addresses of the endpoints."),
            AGE,
        ],
        lambda o: [_name(o), o.get("addressType", ""), _slice_ports(o), _slice_endpoints(o), _age(o)],
    ),
    "events": (
        [
            ("Last Seen", "string", 0, "Time when last event occurred"),
            (
                "Type",
                "string",
                0,
                "Type of this event (Normal, Warning), new types could be added in the future.",
            ),
            ("Reason", "string", 0, "Reason is why the action was taken."),
            ("Object", "string", 0, "The object that this event is about."),
            ("Message", "string", 0, "A human-readable description of the status of this operation."),
            ("Subobject", "string", 1, "The field of the object this event is about."),
            ("Source", "string", 1, "The component reporting this event."),
            ("First Seen", "string", 1, "Time when first event occurred"),
            ("Count", "string", 1, "The number of times this event has occurred."),
            ("Name", "string", 1, "Name must be unique within a namespace."),
        ],
        lambda o: [
            _event_last_seen(o),
            o.get("type", ""),
            o.get("reason", ""),
            _event_object(o),
            (o.get("message") or "").strip(),
            (o.get("involvedObject") or {}).get("fieldPath", ""),
            ", ".join(
                x
                for x in [
                    (o.get("source") or {}).get("component", "") or o.get("reportingComponent", ""),
                    (o.get("source") or {}).get("host", ""),
                ]
                if x
            ),
            age(o.get("firstTimestamp") or o.get("eventTime") or _meta(o).get("creationTimestamp")),
            o.get("count", 1),
            _name(o),
        ],
    ),
    "leases": (
        [NAME, ("Holder", "string", 0, "The holder of the lease."), AGE],
        lambda o: [_name(o), (o.get("spec") or {}).get("holderIdentity", ""), _age(o)],
    ),
    "roles": ([NAME, CREATED_AT], lambda o: [_name(o), _meta(o).get("creationTimestamp")]),
    "clusterroles": ([NAME, CREATED_AT], lambda o: [_name(o), _meta(o).get("creationTimestamp")]),
    "rolebindings": (
        [
            NAME,
            ("Role", "string", 0, "Role"),
            AGE,
            ("Users", "string", 1, "Users in the roleBinding"),
            ("Groups", "string", 1, "Groups in the roleBinding"),
            ("ServiceAccounts", "string", 1, "ServiceAccounts in the roleBinding"),
        ],
        _binding_row,
    ),
    "clusterrolebindings": (
        [
            NAME,
            ("Role", "string", 0, "Role"),
            AGE,
            ("Users", "string", 1, "Users in the clusterRoleBinding"),
            ("Groups", "string", 1, "Groups in the clusterRoleBinding"),
            ("ServiceAccounts", "string", 1, "ServiceAccounts in the clusterRoleBinding"),
        ],
        _binding_row,
    ),
    "priorityclasses": (
        [
            NAME,
            ("Value", "integer", 0, "The value of this priority class."),
            ("Global-Default", "boolean", 0, "Whether this priority class is the default."),
            AGE,
            ("PreemptionPolicy", "string", 0, "The preemption policy."),
        ],
        lambda o: [
            _name(o),
            o.get("value", 0),
            bool(o.get("globalDefault", False)),
            _age(o),
            o.get("preemptionPolicy", "PreemptLowerPriority"),
        ],
    ),
    "componentstatuses": (
        [
            NAME,
            ("Status", "string", 0, "Status of the component conditions"),
            ("Message", "string", 0, "Message of the component conditions"),
            ("Error", "string", 0, "Error of the component conditions"),
        ],
        lambda o: _cs_row(o),
    ),
}


def _cs_row(o: Obj) -> list[Any]:
    status, message, error = "Unknown", "", ""
    for c in o.get("conditions") or []:
        if c.get("type") == "Healthy":
            status = "Healthy" if c.get("status") == "True" else "Unhealthy"
            message, error = c.get("message", ""), c.get("error", "")
    return [_name(o), status, message, error]


DEFAULT = ([NAME, CREATED_AT], lambda o: [_name(o), _meta(o).get("creationTimestamp")])


def columns(plural: str) -> list[dict[str, Any]]:
    cols, _ = GENERIC.get(plural, DEFAULT)
    return [
        {"name": n, "type": t, "format": "name" if n == "Name" else "", "description": d, "priority": p}
        for n, t, p, d in cols
    ]


def partial_metadata(obj: Obj, api_version: str, kind: str) -> Obj:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata") or {},
    }


def row(plural: str, obj: Obj, include_object: str = "Metadata") -> Obj:
    _, fn = GENERIC.get(plural, DEFAULT)
    r: Obj = {"cells": fn(obj)}
    if include_object == "Object":
        r["object"] = obj
    elif include_object != "None":
        r["object"] = {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata") or {},
        }
    return r


def table(
    plural: str, items: list[Obj], list_meta: Obj, include_object: str = "Metadata", with_columns: bool = True
) -> Obj:
    t: Obj = {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "rows": [row(plural, o, include_object) for o in items],
    }
    t["columnDefinitions"] = columns(plural) if with_columns else []
    return t
