"""Liveness, readiness and startup probes: exec, httpGet and tcpSocket, with upstream's thresholds.

One :class:`ProbeWorker` task per (container, probe kind). It waits ``initialDelaySeconds``, then probes
every ``periodSeconds`` with ``timeoutSeconds``; the result flips to failure after ``failureThreshold``
consecutive failures and back to success after ``successThreshold`` successes (upstream's defaults: 10 s,
1 s, 3, 1). Results are published through a callback; the pod worker restarts a container whose liveness
(or startup) probe failed and reports readiness from the readiness probe.

httpGet and tcpSocket connect to the pod IP. When the pod has its own network namespace (runc), the
connection is made from *inside* that namespace: the probing thread enters it with ``setns`` (which
affects only the calling thread) and returns to its own namespace afterwards - so probes work even when
the kubelet's namespace has no route to the pod network.
"""

from __future__ import annotations

import asyncio
import ctypes
import http.client
import os
import socket
from collections.abc import Callable
from typing import Any

from hyperkube.kubelet.runtime.base import Runtime, RuntimeError_

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    # os.setns only exists from Python 3.12
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"setns: {os.strerror(e)}")


def _in_netns(netns: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in this thread with the network namespace ``netns`` (a path), then switch back."""
    if not netns:
        return fn()
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(netns, os.O_RDONLY)
    try:
        _setns(target)
        try:
            return fn()
        finally:
            _setns(own)
    finally:
        os.close(own)
        os.close(target)


def _port(p: Any, container: dict[str, Any]) -> int:
    if isinstance(p, int) or (isinstance(p, str) and p.isdigit()):
        return int(p)
    for cp in container.get("ports") or []:
        if cp.get("name") == p:
            return int(cp["containerPort"])
    raise ValueError(f"port {p!r} not found in the container's ports")


def _http(
    host: str, port: int, path: str, scheme: str, headers: dict[str, str], timeout: float
) -> tuple[bool, str]:
    conn: http.client.HTTPConnection
    if scheme.upper() == "HTTPS":
        import ssl

        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # upstream does not verify probe certificates either
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path or "/", headers={"User-Agent": "kube-probe/1.32", **headers})
        resp = conn.getresponse()
        resp.read(10240)
        ok = 200 <= resp.status < 400
        return ok, "" if ok else f"HTTP probe failed with statuscode: {resp.status}"
    finally:
        conn.close()


def _tcp(host: str, port: int, timeout: float) -> tuple[bool, str]:
    with socket.create_connection((host, port), timeout=timeout):
        return True, ""


async def run_probe(
    probe: dict[str, Any],
    container: dict[str, Any],
    runtime: Runtime,
    cid: str,
    pod_ip: str,
    netns: str = "",
) -> tuple[bool, str]:
    """One probe attempt: (success, message)."""
    timeout = float(probe.get("timeoutSeconds") or 1)
    try:
        if "exec" in probe:
            r = await runtime.exec(cid, list(probe["exec"].get("command") or []), timeout=timeout)
            if r.timed_out:
                return False, f"command timed out after {timeout:g}s"
            return r.exit_code == 0, (r.stdout + r.stderr).decode(errors="replace")[:1024]
        if "httpGet" in probe:
            g = probe["httpGet"]
            host = g.get("host") or pod_ip or "127.0.0.1"
            port = _port(g.get("port"), container)
            headers = {h["name"]: h["value"] for h in g.get("httpHeaders") or []}
            fn = lambda: _http(host, port, g.get("path", "/"), g.get("scheme", "HTTP"), headers, timeout)  # noqa: E731
            return await asyncio.to_thread(_in_netns, netns if not g.get("host") else "", fn)  # type: ignore[no-any-return]
        if "tcpSocket" in probe:
            t = probe["tcpSocket"]
            host = t.get("host") or pod_ip or "127.0.0.1"
            port = _port(t.get("port"), container)
            return await asyncio.to_thread(_in_netns, netns, lambda: _tcp(host, port, timeout))  # type: ignore[no-any-return]
        if "grpc" in probe:
            return False, "grpc probes are not supported by this kubelet"
    except (OSError, http.client.HTTPException, ValueError, RuntimeError_) as e:
        return False, f"{type(e).__name__}: {e}"
    except Exception as e:  # a probe must never kill its worker
        return False, f"probe error: {type(e).__name__}: {e}"
    return False, "probe has no handler"


class ProbeWorker:
    """Runs one probe of one container until cancelled; reports flips through ``on_result``."""

    def __init__(
        self,
        kind: str,
        probe: dict[str, Any],
        container: dict[str, Any],
        runtime: Runtime,
        cid: str,
        pod_ip: str,
        netns: str,
        on_result: Callable[[str, str, bool, str], None],
    ) -> None:
        self.kind, self.probe, self.container, self.runtime, self.cid = kind, probe, container, runtime, cid
        self.pod_ip, self.netns, self.on_result = pod_ip, netns, on_result
        # Liveness starts "ok" until proven otherwise; readiness and startup start "not yet".
        self.result = kind == "liveness"
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run())

    def stop(self) -> None:
        if self.task:
            self.task.cancel()

    async def run(self) -> None:
        p = self.probe
        period = float(p.get("periodSeconds") or 10)
        fail_thr = int(p.get("failureThreshold") or 3)
        succ_thr = int(p.get("successThreshold") or 1)
        await asyncio.sleep(float(p.get("initialDelaySeconds") or 0))
        fails = succs = 0
        while True:
            ok, msg = await run_probe(p, self.container, self.runtime, self.cid, self.pod_ip, self.netns)
            if ok:
                succs, fails = succs + 1, 0
                if not self.result and succs >= succ_thr:
                    self.result = True
                    self.on_result(self.cid, self.kind, True, msg)
            else:
                fails, succs = fails + 1, 0
                if (self.result or self.kind == "startup") and fails >= fail_thr:
                    self.result = False
                    self.on_result(self.cid, self.kind, False, msg)
                    if self.kind in ("liveness", "startup"):
                        return  # the container is restarted; a new worker probes the new one
            if self.kind == "startup" and self.result and succs >= 1:
                self.on_result(self.cid, self.kind, True, msg)
                return  # startup probes stop once they succeed
            await asyncio.sleep(period)
