"""The Node object a kubelet registers and the status it reports.

Capacity comes from the host (cpu count, MemTotal, the data dir's filesystem for ephemeral-storage, 110
pods) unless given by flags; allocatable = capacity (no system reservations). Conditions are upstream's
four with their reasons and messages: MemoryPressure (MemAvailable < 100Mi), DiskPressure (< 10 % free on
the data dir's filesystem), PIDPressure (< 5 % of pid_max free) and Ready. Hollow nodes report fixed
figures and never pressure. ``status_changed`` ignores heartbeat times, so the kubelet patches the status
only when something changed (or every 5 minutes).
"""

from __future__ import annotations

import os
import platform
import socket
import time
from typing import Any

from hyperkube.kubelet.images import go_arch

KUBELET_VERSION = "v1.32.0"


def micro_time(t: float | None = None) -> str:
    t = time.time() if t is None else t
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e6):06d}Z"


def now3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def default_node_ip() -> str:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # no packet is sent: this only picks the source address
            return str(s.getsockname()[0])
    except OSError:
        return "127.0.0.1"


def _meminfo() -> dict[str, int]:
    out = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out


def host_capacity(data_dir: str) -> dict[str, str]:
    mem = _meminfo().get("MemTotal", 0)
    try:
        st = os.statvfs(data_dir if os.path.exists(data_dir) else "/")
        disk = st.f_blocks * st.f_frsize
    except OSError:
        disk = 0
    return {
        "cpu": str(os.cpu_count() or 1),
        "memory": f"{mem // 1024}Ki",
        "ephemeral-storage": f"{disk // 1024}Ki",
        "pods": "110",
    }


HOLLOW_CAPACITY = {"cpu": "4", "memory": "16Gi", "ephemeral-storage": "100Gi", "pods": "110"}


def _read(path: str, default: str = "") -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def build_node(
    name: str,
    *,
    node_ip: str,
    capacity: dict[str, str],
    labels: dict[str, str],
    pod_cidr: str,
    runtime_version: str,
    kubelet_port: int,
    hollow: bool,
    data_dir: str,
) -> dict[str, Any]:
    cap = dict(HOLLOW_CAPACITY if hollow else host_capacity(data_dir))
    cap.update(capacity)
    lbl = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": go_arch(),
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": go_arch(),
    }
    lbl.update(labels)
    node: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": lbl, "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
        "spec": {},
        "status": {
            "capacity": cap,
            "allocatable": dict(cap),
            "addresses": [{"type": "InternalIP", "address": node_ip}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
            "nodeInfo": {
                "machineID": "" if hollow else _read("/etc/machine-id"),
                "systemUUID": "",
                "bootID": "" if hollow else _read("/proc/sys/kernel/random/boot_id"),
                "kernelVersion": platform.release(),
                "osImage": "hollow" if hollow else _os_image(),
                "containerRuntimeVersion": runtime_version,
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": KUBELET_VERSION,
                "operatingSystem": "linux",
                "architecture": go_arch(),
            },
        },
    }
    if pod_cidr:
        node["spec"] = {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]}
    return node


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "Linux"


CONDITIONS = {
    # type: (status when ok, reason ok, message ok, reason bad, message bad)
    "MemoryPressure": ("False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available",
                       "KubeletHasInsufficientMemory", "kubelet has insufficient memory available"),
    "DiskPressure": ("False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure",
                     "KubeletHasDiskPressure", "kubelet has disk pressure"),
    "PIDPressure": ("False", "KubeletHasSufficientPID", "kubelet has sufficient PID available",
                    "KubeletHasInsufficientPID", "kubelet has insufficient PID available"),
    "Ready": ("True", "KubeletReady", "kubelet is posting ready status",
              "KubeletNotReady", "kubelet is not ready"),
}  # fmt: skip


def pressures(data_dir: str) -> dict[str, bool]:
    mem = _meminfo()
    mem_bad = 0 < mem.get("MemAvailable", 1 << 40) < 100 * 1024 * 1024
    try:
        st = os.statvfs(data_dir if os.path.exists(data_dir) else "/")
        disk_bad = st.f_blocks > 0 and st.f_bavail / st.f_blocks < 0.10
    except OSError:
        disk_bad = False
    try:
        pid_max = int(_read("/proc/sys/kernel/pid_max", "32768"))
        nprocs = sum(1 for d in os.listdir("/proc") if d.isdigit())
        pid_bad = nprocs > 0.95 * pid_max
    except (OSError, ValueError):
        pid_bad = False
    return {"MemoryPressure": mem_bad, "DiskPressure": disk_bad, "PIDPressure": pid_bad, "Ready": False}


def node_status(base: dict[str, Any], last: dict[str, Any], hollow: bool, data_dir: str) -> dict[str, Any]:
    bad = {"MemoryPressure": False, "DiskPressure": False, "PIDPressure": False, "Ready": False}
    if not hollow:
        bad = pressures(data_dir)
    prev = {c["type"]: c for c in (last.get("conditions") or [])}
    conds = []
    now = now3339()
    for typ, (ok_status, ok_reason, ok_msg, bad_reason, bad_msg) in CONDITIONS.items():
        is_bad = bad[typ]
        status = ok_status if not is_bad else ("True" if ok_status == "False" else "False")
        p = prev.get(typ)
        conds.append(
            {
                "type": typ,
                "status": status,
                "reason": bad_reason if is_bad else ok_reason,
                "message": bad_msg if is_bad else ok_msg,
                "lastHeartbeatTime": now,
                "lastTransitionTime": p["lastTransitionTime"] if p and p["status"] == status else now,
            }
        )
    st = dict(base)
    st["conditions"] = conds
    return st


def _strip(status: dict[str, Any]) -> dict[str, Any]:
    s = dict(status)
    s["conditions"] = [
        {k: v for k, v in c.items() if k not in ("lastHeartbeatTime", "lastTransitionTime")}
        for c in status.get("conditions") or []
    ]
    return s


def status_changed(last: dict[str, Any], new: dict[str, Any]) -> bool:
    return not last or _strip(last) != _strip(new)


def stamp_heartbeats(status: dict[str, Any]) -> None:
    now = now3339()
    for c in status.get("conditions") or []:
        c["lastHeartbeatTime"] = now
