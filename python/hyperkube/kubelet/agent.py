"""The kubelet: registers its Node, heartbeats, and runs the pods bound to it.

Structure (a small version of upstream's ``pkg/kubelet``):

- **Node**: created at start (``node.py`` builds it: capacity from the host or flags, labels, conditions,
  addresses, nodeInfo); its Lease in ``kube-node-lease`` is renewed every ``lease_interval`` (10 s) and its
  status patched when something changed or every ``status_report_interval`` (5 min), as upstream's
  NodeLease + node-status-report-frequency.
- **Pod source**: an informer on pods with ``spec.nodeName=<node>`` (hollow nodes share one informer).
- **Pod workers**: one task per pod uid, woken by pod events, by the PLEG and by timers; a worker never
  runs two syncs of the same pod at once. ``sync_pod`` is upstream's SyncPod in miniature: network
  sandbox (a netns + CNI when the runtime isolates), volumes, init containers in order, then the
  containers, each restarted per restartPolicy with crash-loop back-off (10 s doubling to 5 min, reset
  after 10 min of running), liveness/readiness/startup probes (``probes.py``), and the pod status written
  back (``pods.py``) when it changed.
- **Termination**: a pod with a deletionTimestamp (or gone from the API) gets its preStop hooks, SIGTERM,
  SIGKILL after the grace period; then its containers, network and volumes are removed and, when the
  object still exists, it is deleted with grace period 0 (the final delete, as upstream's status manager).
- **PLEG**: every ``relist_interval`` (1 s) the runtime's containers are listed and pods whose containers
  changed state are woken (runtimes with real processes only; the fake runtime changes only when told).
- **Restart**: containers carry the pod uid and container name as labels, so a new kubelet adopts the
  containers it finds (``runtime.list()``) instead of starting duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from hyperkube.client import LEASES, NAMESPACES, NODES, PODS, AlreadyExists, ApiError, Conflict, NotFound
from hyperkube.kubelet import node as nodeinfo
from hyperkube.kubelet.cni import PodNetwork, PodNetworks
from hyperkube.kubelet.pods import (
    ConfigError,
    container_status,
    parse_quantity,
    pod_conditions,
    pod_phase,
    qos_class,
    resolve_env,
    rfc3339,
)
from hyperkube.kubelet.probes import ProbeWorker, run_probe
from hyperkube.kubelet.runtime.base import (
    LABEL_CONTAINER_NAME,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
    LABEL_RESTART_COUNT,
    ContainerSpec,
    ContainerStatus,
    Mount,
    Runtime,
    RuntimeError_,
    State,
)
from hyperkube.kubelet.volumes import PodVolumes

log = logging.getLogger("hyperkube.kubelet")

BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 300.0


class PodWorker:
    """The serialised sync loop of one pod."""

    def __init__(self, kubelet: Kubelet, uid: str, pod: dict[str, Any]) -> None:
        self.kl, self.uid, self.pod = kubelet, uid, pod
        self.removed = False  # the API object is gone
        self.event = asyncio.Event()
        self.containers: dict[str, list[str]] = {}  # container name -> runtime ids, oldest first
        self.network: PodNetwork | None = None
        self.volume_paths: dict[str, str] | None = None
        self.probes: dict[tuple[str, str], ProbeWorker] = {}  # (cid, kind) -> worker
        self.probe_results: dict[tuple[str, str], bool] = {}
        self.probed: set[str] = set()  # container ids whose probes were started (adopted ones too)
        self.waiting: dict[str, tuple[str, str]] = {}  # container name -> (reason, message)
        self.last_status: dict[str, Any] | None = None
        self.start_time = ""
        self.timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None
        self.signature: tuple[Any, ...] = ()

    def kick(self) -> None:
        self.event.set()

    def kick_after(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        if self.timer is not None:
            self.timer.cancel()
        self.timer = loop.call_later(delay, self.kick)

    async def run(self) -> None:
        while True:
            await self.event.wait()
            self.event.clear()
            try:
                if await self.kl.sync_pod(self):
                    return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sync of pod %s failed", self.name)
                self.kick_after(2.0)

    @property
    def name(self) -> str:
        m = self.pod.get("metadata") or {}
        return f"{m.get('namespace')}/{m.get('name')}"


class Kubelet:
    def __init__(
        self,
        client: Any,
        node_name: str,
        runtime: Runtime,
        *,
        root_dir: str,
        pod_networks: PodNetworks | Callable[[str], PodNetworks | None] | None = None,
        node_ip: str = "",
        pod_cidr: str = "",
        capacity: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        hollow: bool = False,
        lease_interval: float = 10.0,
        status_update_interval: float = 10.0,
        status_report_interval: float = 300.0,
        relist_interval: float = 1.0,
        kubelet_port: int = 10250,
        own_informer: bool = True,
        fake_pod_cidr: str = "",
    ) -> None:
        self.client = client
        self.node_name = node_name
        self.runtime = runtime
        self.root = os.path.abspath(root_dir)
        self._pod_networks = pod_networks
        self.node_ip = node_ip or nodeinfo.default_node_ip()
        self.pod_cidr = pod_cidr
        self.capacity = dict(capacity or {})
        self.labels = dict(labels or {})
        self.hollow = hollow
        self.lease_interval = lease_interval
        self.status_update_interval = status_update_interval
        self.status_report_interval = status_report_interval
        self.relist_interval = relist_interval
        self.kubelet_port = kubelet_port
        self.own_informer = own_informer
        self.fake_pod_cidr = fake_pod_cidr
        self.workers: dict[str, PodWorker] = {}
        self.backoff: dict[tuple[str, str], tuple[float, float]] = {}  # (uid, name) -> (delay, until)
        self.volumes = PodVolumes(self.root, self._fetch, self._token)
        self.node: dict[str, Any] = {}
        self.node_uid = ""
        self._tasks: list[asyncio.Task[Any]] = []
        self._informer: Any = None
        self._last_node_status: dict[str, Any] = {}
        self._last_report = 0.0
        self._fake_ip = 0
        self._adopted: dict[str, list[ContainerStatus]] = {}
        self._lease: dict[str, Any] | None = None
        self.lease_renewals = 0  # successful renewals (benchmarks check heartbeats keep up)
        self.started = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.register_node()
        for c in await self.runtime.list():
            uid = c.labels.get(LABEL_POD_UID)
            if uid:
                self._adopted.setdefault(uid, []).append(c)
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._lease_loop()))
        self._tasks.append(loop.create_task(self._status_loop()))
        if not self.hollow:
            self._tasks.append(loop.create_task(self._pleg_loop()))
        if self.own_informer:
            from hyperkube.client import SharedInformer

            self._informer = SharedInformer(
                self.client, PODS, field_selector=f"spec.nodeName={self.node_name}"
            )
            self._informer.add_event_handler(
                self.on_pod, lambda old, new: self.on_pod(new), self.on_pod_deleted
            )
            self._informer.start()
            await self._informer.wait_for_sync()
        self.started.set()

    async def stop(self, cleanup: bool = False, grace_cap: float = 10.0) -> None:
        """Stop the agent. By default containers keep running (a restarted kubelet adopts them); with
        ``cleanup`` every pod of the node is stopped and everything it holds released - containers
        (grace period capped at ``grace_cap``), rootfs mounts, CNI (veths, IPAM leases), pod network
        namespaces, volumes - without touching the pod objects in the API (``--cleanup-on-exit``)."""
        if self._informer is not None:
            await self._informer.stop()
        if cleanup:
            await self.cleanup_all(grace_cap)
        for t in self._tasks:
            t.cancel()
        for w in list(self.workers.values()):
            if w.task:
                w.task.cancel()
            for p in w.probes.values():
                p.stop()
            if w.timer:
                w.timer.cancel()
        await asyncio.gather(
            *self._tasks, *(w.task for w in self.workers.values() if w.task), return_exceptions=True
        )
        self._tasks.clear()

    async def cleanup_all(self, grace_cap: float = 10.0) -> None:
        for w in list(self.workers.values()):
            if w.task:
                w.task.cancel()
                await asyncio.gather(w.task, return_exceptions=True)
                w.task = None
        await asyncio.gather(
            *(
                self.terminate_pod(w, final_delete=False, grace_cap=grace_cap)
                for w in list(self.workers.values())
            ),
            return_exceptions=True,
        )
        # containers of pods this kubelet never saw (adopted, pod gone meanwhile)
        for c in await self.runtime.list():
            with contextlib.suppress(Exception):
                await self.runtime.stop(c.id, min(grace_cap, 2.0))
                await self.runtime.remove(c.id)
        pn = self.pod_networks()
        if pn is not None:
            from hyperkube.kubelet.cni import NETNS_DIR

            for name in os.listdir(NETNS_DIR) if os.path.isdir(NETNS_DIR) else []:
                if name.startswith(pn.prefix):
                    with contextlib.suppress(Exception):
                        await pn.teardown(name[len(pn.prefix) :])

    # -- pod events ----------------------------------------------------------------------------------------

    def on_pod(self, pod: dict[str, Any]) -> None:
        if (pod.get("spec") or {}).get("nodeName") != self.node_name:
            return
        uid = pod["metadata"]["uid"]
        w = self.workers.get(uid)
        if w is None:
            w = PodWorker(self, uid, pod)
            for c in self._adopted.pop(uid, []):
                w.containers.setdefault(c.labels.get(LABEL_CONTAINER_NAME, c.name), []).append(c.id)
            for ids in w.containers.values():
                ids.sort(key=lambda i: int(self._restart_label(i)))
            self.workers[uid] = w
            w.task = asyncio.get_running_loop().create_task(w.run())
        else:
            w.pod = pod
        w.kick()

    def on_pod_deleted(self, pod: dict[str, Any]) -> None:
        w = self.workers.get(pod["metadata"]["uid"])
        if w is not None:
            w.removed = True
            w.kick()

    def _restart_label(self, cid: str) -> str:
        st = getattr(self.runtime, "status_sync", None)
        with contextlib.suppress(Exception):
            if st is not None:
                return str(st(cid).labels.get(LABEL_RESTART_COUNT, "0"))
            c = getattr(self.runtime, "containers", {}).get(cid)
            if c is not None:
                return str(c.labels.get(LABEL_RESTART_COUNT, "0"))
        return "0"

    # -- API lookups -------------------------------------------------------------------------------------

    async def _fetch_ns(self, namespace: str, kind: str, name: str) -> Mapping[str, Any] | None:
        from hyperkube.client import CONFIGMAPS, SECRETS

        res = CONFIGMAPS if kind == "configmaps" else SECRETS
        try:
            return await self.client.get(res, name, namespace)  # type: ignore[no-any-return]
        except NotFound:
            return None

    async def _fetch(self, kind: str, name: str) -> Mapping[str, Any] | None:
        raise NotImplementedError  # replaced per pod in sync (needs the namespace)

    async def _token(self, pod: Mapping[str, Any], src: Mapping[str, Any]) -> str:
        meta = pod["metadata"]
        sa = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [src["audience"]] if src.get("audience") else [],
                "expirationSeconds": int(src.get("expirationSeconds", 3607)),
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        from hyperkube.client import SERVICEACCOUNTS

        r = await self.client.create(SERVICEACCOUNTS, body, meta["namespace"], name=sa, subresource="token")
        return str((r.get("status") or {}).get("token", ""))

    # -- node --------------------------------------------------------------------------------------------

    def node_object(self) -> dict[str, Any]:
        return nodeinfo.build_node(
            self.node_name,
            node_ip=self.node_ip,
            capacity=self.capacity,
            labels=self.labels,
            pod_cidr=self.pod_cidr,
            runtime_version=self._runtime_version,
            kubelet_port=self.kubelet_port,
            hollow=self.hollow,
            data_dir=self.root,
        )

    async def register_node(self) -> None:
        self._runtime_version = await self.runtime.version()
        obj = self.node_object()
        while True:
            try:
                self.node = await self.client.create(NODES, obj)
                break
            except AlreadyExists:
                cur = await self.client.get(NODES, self.node_name)
                patch = {"metadata": {"labels": obj["metadata"]["labels"]}}
                if self.pod_cidr and not (cur.get("spec") or {}).get("podCIDR"):
                    patch["spec"] = obj["spec"]
                self.node = await self.client.patch(NODES, self.node_name, patch)
                break
            except (ApiError, OSError) as e:
                log.warning("registering node %s failed: %s; retrying", self.node_name, e)
                await asyncio.sleep(1.0)
        self.node_uid = self.node["metadata"].get("uid", "")
        if not self.pod_cidr:
            self.pod_cidr = (self.node.get("spec") or {}).get("podCIDR", "")
        await self.update_node_status(force=True)

    def _node_status(self) -> dict[str, Any]:
        st = nodeinfo.node_status(
            self.node_object()["status"], self._last_node_status, hollow=self.hollow, data_dir=self.root
        )
        return st

    async def update_node_status(self, force: bool = False) -> None:
        status = self._node_status()
        now = time.monotonic()
        changed = nodeinfo.status_changed(self._last_node_status, status)
        if not (force or changed or now - self._last_report >= self.status_report_interval):
            return
        nodeinfo.stamp_heartbeats(status)
        try:
            self.node = await self.client.patch(
                NODES, self.node_name, {"status": status}, subresource="status"
            )
        except NotFound:
            await self.register_node()
            return
        self._last_node_status = status
        self._last_report = now
        if not self.pod_cidr:
            self.pod_cidr = (self.node.get("spec") or {}).get("podCIDR", "")

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self.status_update_interval * (0.9 + 0.2 * random.random()))
            with contextlib.suppress(Exception):
                await self.update_node_status()

    async def renew_lease(self) -> None:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.node_name,
                "namespace": "kube-node-lease",
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": self.node_name, "uid": self.node_uid}
                ],
            },
            "spec": {
                "holderIdentity": self.node_name,
                "leaseDurationSeconds": 40,
                "renewTime": nodeinfo.micro_time(),
            },
        }
        cur = self._lease
        if cur is not None:
            # Upstream's kubelet updates the lease it got back last time: one request per renewal.
            cur = dict(cur)
            cur["spec"] = {**(cur.get("spec") or {}), **body["spec"]}
            try:
                self._lease = await self.client.update(LEASES, cur, "kube-node-lease")
                return
            except (Conflict, NotFound):
                self._lease = None
        try:
            cur = await self.client.get(LEASES, self.node_name, "kube-node-lease")
        except NotFound:
            try:
                self._lease = await self.client.create(LEASES, body, "kube-node-lease")
            except NotFound:  # the namespace does not exist yet
                with contextlib.suppress(AlreadyExists):
                    await self.client.create(NAMESPACES, {"metadata": {"name": "kube-node-lease"}})
                self._lease = await self.client.create(LEASES, body, "kube-node-lease")
            return
        cur.setdefault("spec", {}).update(body["spec"])
        with contextlib.suppress(Conflict):
            self._lease = await self.client.update(LEASES, cur, "kube-node-lease")

    async def _lease_loop(self) -> None:
        await asyncio.sleep(random.random() * min(self.lease_interval, 1.0))
        while True:
            try:
                await self.renew_lease()
                self.lease_renewals += 1
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("renewing lease of %s failed: %s", self.node_name, e)
            await asyncio.sleep(self.lease_interval)

    # -- PLEG ---------------------------------------------------------------------------------------------

    async def _pleg_loop(self) -> None:
        while True:
            await asyncio.sleep(self.relist_interval)
            try:
                await self.relist()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("relist failed")

    async def relist(self) -> None:
        by_pod: dict[str, list[tuple[str, str, int | None]]] = {}
        for c in await self.runtime.list():
            uid = c.labels.get(LABEL_POD_UID, "")
            by_pod.setdefault(uid, []).append((c.id, c.state.value, c.exit_code))
        for uid, w in self.workers.items():
            sig = tuple(sorted(by_pod.get(uid, [])))
            if sig != w.signature:
                w.signature = sig
                w.kick()

    # -- pod sync ----------------------------------------------------------------------------------------

    def pod_networks(self) -> PodNetworks | None:
        pn = self._pod_networks
        if callable(pn) and not isinstance(pn, PodNetworks):
            pn = pn(self.pod_cidr)
            if pn is not None:
                self._pod_networks = pn
        return pn if isinstance(pn, PodNetworks) else None

    async def _statuses(self, w: PodWorker) -> dict[str, list[ContainerStatus]]:
        out: dict[str, list[ContainerStatus]] = {}
        for name, ids in w.containers.items():
            lst = []
            for cid in ids:
                with contextlib.suppress(RuntimeError_):
                    lst.append(await self.runtime.status(cid))
            out[name] = lst
        return out

    async def sync_pod(self, w: PodWorker) -> bool:
        """One pass over a pod; True when the pod is finished with (worker ends)."""
        pod = w.pod
        meta = pod["metadata"]
        spec = pod.get("spec") or {}
        if w.removed or meta.get("deletionTimestamp"):
            await self.terminate_pod(w)
            return True
        statuses = await self._statuses(w)
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed") and w.last_status is not None:
            return False  # finished: nothing runs any more; wait for deletion
        if not w.start_time:
            w.start_time = (pod.get("status") or {}).get("startTime") or rfc3339()
        # sandbox
        if w.network is None:
            try:
                w.network = await self.setup_network(pod)
            except Exception as e:
                log.warning("pod %s: network setup failed: %s", w.name, e)
                for c in list(spec.get("initContainers") or []) + list(spec.get("containers") or []):
                    w.waiting[c["name"]] = ("ContainerCreating", f"failed to set up pod network: {e}")
                await self.write_status(w, statuses, sandbox_ready=False)
                w.kick_after(5.0)
                return False
        # volumes
        ns = meta.get("namespace", "default")
        cache: dict[tuple[str, str], Mapping[str, Any] | None] = {}

        async def fetch(kind: str, name: str) -> Mapping[str, Any] | None:
            if (kind, name) not in cache:
                cache[(kind, name)] = await self._fetch_ns(ns, kind, name)
            return cache[(kind, name)]

        self.volumes.fetch = fetch
        try:
            if (spec.get("volumes") or []) and not self.hollow:
                w.volume_paths = await self.volumes.setup(pod, self._allocatable())
            else:
                w.volume_paths = w.volume_paths or {}
        except (ConfigError, OSError, ApiError) as e:
            log.warning("pod %s: volume setup failed: %s", w.name, e)
            for c in list(spec.get("initContainers") or []) + list(spec.get("containers") or []):
                w.waiting[c["name"]] = ("ContainerCreating", f"MountVolume.SetUp failed: {e}")
            await self.write_status(w, statuses, sandbox_ready=True)
            w.kick_after(5.0)
            return False
        policy = spec.get("restartPolicy", "Always")
        # init containers, in order
        initialized = True
        for c in spec.get("initContainers") or []:
            hist = statuses.get(c["name"], [])
            cur = hist[-1] if hist else None
            if cur is not None and cur.state == State.EXITED and cur.exit_code == 0:
                continue
            initialized = False
            if cur is not None and cur.state in (State.RUNNING, State.CREATED):
                break
            if cur is not None and cur.state == State.EXITED and policy == "Never":
                break  # the pod failed
            await self.start_container(w, pod, c, hist, fetch, init=True)
            break
        if initialized:
            for c in spec.get("containers") or []:
                hist = statuses.get(c["name"], [])
                cur = hist[-1] if hist else None
                if cur is None:
                    await self.start_container(w, pod, c, hist, fetch)
                elif cur.state == State.RUNNING:
                    if cur.id not in w.probed:  # adopted from a previous kubelet: probe it again
                        self._start_probes(w, pod, c, cur.id)
                    if (
                        w.probe_results.get((cur.id, "liveness")) is False
                        or w.probe_results.get((cur.id, "startup")) is False
                    ):
                        kind = "liveness" if w.probe_results.get((cur.id, "liveness")) is False else "startup"
                        log.info(
                            "pod %s container %s failed its %s probe; restarting", w.name, c["name"], kind
                        )
                        await self.kill_container(w, pod, c, cur, self._grace(pod))
                        w.kick()
                elif cur.state == State.EXITED:
                    restart = policy == "Always" or (policy == "OnFailure" and cur.exit_code != 0)
                    if restart:
                        await self.start_container(w, pod, c, hist, fetch, exited=cur)
        statuses = await self._statuses(w)
        await self.write_status(w, statuses, sandbox_ready=True)
        await self._gc_containers(w, statuses)
        return False

    def _grace(self, pod: Mapping[str, Any]) -> float:
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        g = meta.get("deletionGracePeriodSeconds")
        if g is None:
            g = spec.get("terminationGracePeriodSeconds", 30)
        return float(g)

    def _allocatable(self) -> dict[str, str]:
        return dict(((self.node.get("status") or {}).get("allocatable")) or {})

    async def setup_network(self, pod: Mapping[str, Any]) -> PodNetwork:
        spec = pod.get("spec") or {}
        if spec.get("hostNetwork"):
            return PodNetwork("", self.node_ip, [self.node_ip])
        pn = self.pod_networks()
        if pn is None:
            if self.runtime.name == "runc" and self._pod_networks is not None:
                raise RuntimeError_(
                    "the node has no podCIDR yet (give --pod-cidr or let the controller manager allocate one)"
                )
            if self.hollow or self.runtime.name == "fake":
                return PodNetwork("", self._next_fake_ip(), [])
            return PodNetwork("", self.node_ip, [self.node_ip])  # process runtime: the host's network
        ports = []
        for c in spec.get("containers") or []:
            for p in c.get("ports") or []:
                if p.get("hostPort"):
                    ports.append(
                        {
                            "hostPort": p["hostPort"],
                            "containerPort": p["containerPort"],
                            "protocol": p.get("protocol", "TCP").lower(),
                        }
                    )
        meta = pod["metadata"]
        return await pn.setup(meta["uid"], meta.get("namespace", ""), meta["name"], ports or None)

    def _next_fake_ip(self) -> str:
        import ipaddress

        self._fake_ip += 1
        cidr = self.pod_cidr or self.fake_pod_cidr
        if cidr:
            net = ipaddress.ip_network(cidr, strict=False)
            return str(net.network_address + 1 + (self._fake_ip % max(1, net.num_addresses - 2)))
        return f"10.{(self._fake_ip >> 16) & 255}.{(self._fake_ip >> 8) & 255}.{self._fake_ip & 255}"

    def _in_backoff(self, w: PodWorker, name: str, exited: ContainerStatus | None) -> float:
        """Seconds left in the crash-loop back-off of this container (0 = may start now)."""
        if exited is None:
            return 0.0
        key = (w.uid, name)
        now = time.time()
        delay, until = self.backoff.get(key, (0.0, 0.0))
        if (
            exited.finished_at
            and exited.started_at
            and exited.finished_at - exited.started_at > 2 * BACKOFF_MAX
        ):
            self.backoff.pop(key, None)  # ran long enough: forget the crash loop
            delay, until = 0.0, 0.0
        if now < until:
            return until - now
        nxt = min(BACKOFF_MAX, delay * 2) if delay else BACKOFF_INITIAL
        self.backoff[key] = (nxt, now + nxt)
        return 0.0

    async def start_container(
        self,
        w: PodWorker,
        pod: dict[str, Any],
        c: Mapping[str, Any],
        hist: list[ContainerStatus],
        fetch: Callable[[str, str], Any],
        init: bool = False,
        exited: ContainerStatus | None = None,
    ) -> None:
        name = c["name"]
        if exited is None and hist and hist[-1].state == State.EXITED:
            exited = hist[-1]
        left = self._in_backoff(w, name, exited)
        if left > 0:
            meta = pod["metadata"]
            w.waiting[name] = (
                "CrashLoopBackOff",
                f"back-off {int(self.backoff[(w.uid, name)][0])}s restarting failed container={name} "
                f"pod={meta['name']}_{meta.get('namespace')}({w.uid})",
            )
            w.kick_after(left + 0.05)
            return
        image = c.get("image", "")
        if not self.runtime.has_image(image):
            # Images are never pulled. Policy Never: upstream's ErrImageNeverPull; otherwise the pull
            # "fails" (ErrImagePull, then ImagePullBackOff) with a message that says what to do.
            policy = c.get("imagePullPolicy") or (
                "Always" if image.endswith(":latest") or ":" not in image.split("/")[-1] else "IfNotPresent"
            )
            if policy == "Never":
                w.waiting[name] = (
                    "ErrImageNeverPull",
                    f'Container image "{image}" is not present with pull policy of Never',
                )
            else:
                reason = (
                    "ImagePullBackOff"
                    if w.waiting.get(name, ("",))[0] in ("ErrImagePull", "ImagePullBackOff")
                    else "ErrImagePull"
                )
                msg = (
                    f'Back-off pulling image "{image}"'
                    if reason == "ImagePullBackOff"
                    else f'image "{image}" not found'
                ) + (": this node never pulls images; import it with `hyperkube image import FILE`")
                w.waiting[name] = (reason, msg)
            w.kick_after(10.0)  # an import may bring it
            return
        try:
            cspec = await self.container_spec(w, pod, c, len(hist), fetch)
            cid = await self.runtime.create(cspec)
        except ConfigError as e:
            w.waiting[name] = ("CreateContainerConfigError", str(e))
            w.kick_after(5.0)
            return
        except RuntimeError_ as e:
            w.waiting[name] = (e.reason, str(e))
            w.kick_after(5.0)
            return
        w.containers.setdefault(name, []).append(cid)
        w.waiting.pop(name, None)
        try:
            await self.runtime.start(cid)
        except RuntimeError_ as e:
            w.waiting[name] = ("RunContainerError", str(e))
            return
        st = await self.runtime.status(cid)
        if st.state == State.RUNNING and not init:
            await self._post_start(w, pod, c, cid)
            self._start_probes(w, pod, c, cid)

    async def _post_start(self, w: PodWorker, pod: Mapping[str, Any], c: Mapping[str, Any], cid: str) -> None:
        hook = ((c.get("lifecycle") or {}).get("postStart")) or None
        if not hook:
            return
        ok, msg = await self._run_hook(w, c, cid, hook, 30.0)
        if not ok:
            log.info("pod %s container %s: PostStartHook failed: %s", w.name, c["name"], msg)
            await self.runtime.stop(cid, self._grace(pod))

    async def _run_hook(
        self, w: PodWorker, c: Mapping[str, Any], cid: str, hook: Mapping[str, Any], timeout: float
    ) -> tuple[bool, str]:
        if "sleep" in hook:
            await asyncio.sleep(min(timeout, float(hook["sleep"].get("seconds", 0))))
            return True, ""
        probe = dict(hook)
        probe["timeoutSeconds"] = max(1, int(timeout))
        ip = w.network.ip if w.network else ""
        netns = w.network.netns if w.network else ""
        return await run_probe(probe, dict(c), self.runtime, cid, ip, netns)

    def _start_probes(self, w: PodWorker, pod: Mapping[str, Any], c: Mapping[str, Any], cid: str) -> None:
        w.probed.add(cid)
        ip = w.network.ip if w.network else ""
        netns = w.network.netns if w.network else ""

        def on_result(pcid: str, kind: str, ok: bool, msg: str) -> None:
            w.probe_results[(pcid, kind)] = ok
            if not ok:
                log.info("pod %s: %s probe of %s failed: %s", w.name, kind, c["name"], msg.strip())
            if kind == "startup" and ok:
                self._start_probes_after_startup(w, c, pcid, ip, netns, on_result)
            w.kick()

        if c.get("startupProbe") and not self.hollow:
            pw = ProbeWorker("startup", c["startupProbe"], dict(c), self.runtime, cid, ip, netns, on_result)
            w.probes[(cid, "startup")] = pw
            pw.start()
            return
        self._start_probes_after_startup(w, c, cid, ip, netns, on_result)

    def _start_probes_after_startup(
        self, w: PodWorker, c: Mapping[str, Any], cid: str, ip: str, netns: str, on_result: Any
    ) -> None:
        if self.hollow:
            return
        for kind in ("liveness", "readiness"):
            probe = c.get(f"{kind}Probe")
            if probe:
                pw = ProbeWorker(kind, probe, dict(c), self.runtime, cid, ip, netns, on_result)
                w.probes[(cid, kind)] = pw
                pw.start()

    def _stop_probes(self, w: PodWorker, cid: str) -> None:
        for key in [k for k in w.probes if k[0] == cid]:
            w.probes.pop(key).stop()

    async def container_spec(
        self,
        w: PodWorker,
        pod: dict[str, Any],
        c: Mapping[str, Any],
        restart: int,
        fetch: Callable[[str, str], Any],
    ) -> ContainerSpec:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        # prefetch what env references, so resolve_env stays synchronous
        refs: dict[tuple[str, str], Mapping[str, Any] | None] = {}
        for src in c.get("envFrom") or []:
            for kind, key in (("configmaps", "configMapRef"), ("secrets", "secretRef")):
                if src.get(key):
                    refs[(kind, src[key]["name"])] = await fetch(kind, src[key]["name"])
        for e in c.get("env") or []:
            vf = e.get("valueFrom") or {}
            for kind, key in (("configmaps", "configMapKeyRef"), ("secrets", "secretKeyRef")):
                if vf.get(key):
                    refs[(kind, vf[key]["name"])] = await fetch(kind, vf[key]["name"])
        pod_for_env = dict(pod)
        status = dict(pod.get("status") or {})
        status["hostIP"] = self.node_ip
        status["hostIPs"] = [{"ip": self.node_ip}]
        if w.network and w.network.ip:
            status["podIP"] = w.network.ip
            status["podIPs"] = [{"ip": ip} for ip in (w.network.ips or [w.network.ip])]
        pod_for_env["status"] = status
        env = resolve_env(pod_for_env, c, lambda k, n: refs.get((k, n)), self._allocatable())
        env += self._service_env(meta.get("namespace", ""))
        # hollow nodes set up no volumes, so their containers get no mounts either
        mounts = (
            self.volumes.mounts(c, w.volume_paths or {})
            if w.volume_paths is not None and not self.hollow
            else []
        )
        hostname = spec.get("hostname") or meta["name"]
        if self.runtime.name == "runc":
            mounts.append(Mount(self._etc_hosts(w, pod, hostname), "/etc/hosts"))
        sc = dict(spec.get("securityContext") or {})
        sc.update(c.get("securityContext") or {})
        res = c.get("resources") or {}
        lim, req = res.get("limits") or {}, res.get("requests") or {}
        mem = int(parse_quantity(lim["memory"])) if "memory" in lim else 0
        cpu = int(parse_quantity(lim["cpu"]) * 1000) if "cpu" in lim else 0
        cpu_req = int(parse_quantity(req.get("cpu", lim.get("cpu", "0"))) * 1000)
        log_dir = os.path.join(
            self.root, "logs", f"{meta.get('namespace')}_{meta['name']}_{w.uid}", c["name"]
        )
        return ContainerSpec(
            name=c["name"],
            image=c.get("image", ""),
            command=list(c.get("command") or []),
            args=list(c.get("args") or []),
            env=env,
            working_dir=c.get("workingDir", ""),
            mounts=mounts,
            hostname=hostname,
            netns=w.network.netns if w.network else "",
            memory_limit=mem,
            cpu_limit_millis=cpu,
            cpu_request_millis=cpu_req,
            run_as_user=sc.get("runAsUser"),
            run_as_group=sc.get("runAsGroup"),
            privileged=bool(sc.get("privileged")),
            read_only_rootfs=bool(sc.get("readOnlyRootFilesystem")),
            labels={
                LABEL_POD_UID: w.uid,
                LABEL_POD_NAME: meta["name"],
                LABEL_POD_NAMESPACE: meta.get("namespace", ""),
                LABEL_CONTAINER_NAME: c["name"],
                LABEL_RESTART_COUNT: str(restart),
            },
            log_path=os.path.join(log_dir, f"{restart}.log"),
        )

    def _service_env(self, namespace: str) -> list[tuple[str, str]]:
        return []  # service links (FOO_SERVICE_HOST ...) are left to a later version

    def _etc_hosts(self, w: PodWorker, pod: Mapping[str, Any], hostname: str) -> str:
        d = os.path.join(self.volumes.pod_dir(w.uid))
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, "etc-hosts")
        ip = w.network.ip if w.network else ""
        lines = [
            "# Kubernetes-managed hosts file.",
            "127.0.0.1\tlocalhost",
            "::1\tlocalhost ip6-localhost ip6-loopback",
        ]
        if ip:
            lines.append(f"{ip}\t{hostname}")
        for ha in (pod.get("spec") or {}).get("hostAliases") or []:
            lines.append(f"{ha['ip']}\t" + "\t".join(ha.get("hostnames") or []))
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    async def kill_container(
        self,
        w: PodWorker,
        pod: Mapping[str, Any],
        c: Mapping[str, Any] | None,
        st: ContainerStatus,
        grace: float,
    ) -> None:
        self._stop_probes(w, st.id)
        if st.state != State.RUNNING:
            return
        deadline = time.monotonic() + grace
        hook = ((c or {}).get("lifecycle") or {}).get("preStop")
        if hook and grace > 0:
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(self._run_hook(w, c or {}, st.id, hook, grace), grace)
        await self.runtime.stop(st.id, max(0.0, deadline - time.monotonic()))

    async def terminate_pod(
        self, w: PodWorker, final_delete: bool = True, grace_cap: float | None = None
    ) -> None:
        pod = w.pod
        spec = pod.get("spec") or {}
        grace = self._grace(pod) if grace_cap is None else min(grace_cap, self._grace(pod))
        by_name = {
            c["name"]: c for c in list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
        }
        statuses = await self._statuses(w)
        await asyncio.gather(
            *(
                self.kill_container(w, pod, by_name.get(name), st, grace)
                for name, hist in statuses.items()
                for st in hist
                if st.state == State.RUNNING
            ),
            return_exceptions=True,
        )
        for p in list(w.probes.values()):
            p.stop()
        w.probes.clear()
        if not w.removed and final_delete:
            statuses = await self._statuses(w)
            with contextlib.suppress(Exception):
                await self.write_status(w, statuses, sandbox_ready=False, terminating=True)
        for ids in w.containers.values():
            for cid in ids:
                with contextlib.suppress(Exception):
                    await self.runtime.remove(cid)
        w.containers.clear()
        pn = self.pod_networks()
        if pn is not None and w.network is not None and w.network.netns:
            try:
                await pn.teardown(w.uid)
            except Exception as e:
                log.warning("pod %s: network teardown failed: %s", w.name, e)
        self.volumes.cleanup(w.uid)
        import shutil

        meta = pod["metadata"]
        shutil.rmtree(
            os.path.join(self.root, "logs", f"{meta.get('namespace')}_{meta['name']}_{w.uid}"),
            ignore_errors=True,
        )
        for key in [k for k in self.backoff if k[0] == w.uid]:
            self.backoff.pop(key, None)
        if not w.removed and final_delete:
            with contextlib.suppress(NotFound, Conflict):
                await self.client.delete(
                    PODS,
                    meta["name"],
                    meta.get("namespace"),
                    grace_period_seconds=0,
                    preconditions={"uid": w.uid},
                )
        if w.timer:
            w.timer.cancel()
        self.workers.pop(w.uid, None)

    async def _gc_containers(self, w: PodWorker, statuses: dict[str, list[ContainerStatus]]) -> None:
        """Keep the current and the previous container of each name (for `logs --previous`)."""
        for name, hist in statuses.items():
            for old in hist[:-2]:
                if old.state == State.EXITED:
                    with contextlib.suppress(Exception):
                        await self.runtime.remove(old.id)
                    with contextlib.suppress(ValueError):
                        w.containers[name].remove(old.id)

    def build_status(
        self,
        w: PodWorker,
        statuses: dict[str, list[ContainerStatus]],
        sandbox_ready: bool,
        terminating: bool = False,
    ) -> dict[str, Any]:
        pod = w.pod
        spec = pod.get("spec") or {}
        rt = self.runtime.name

        def one(c: Mapping[str, Any], init: bool) -> dict[str, Any]:
            hist = statuses.get(c["name"], [])
            cur = hist[-1] if hist else None
            prev = hist[-2] if len(hist) > 1 else None
            waiting = None if terminating else w.waiting.get(c["name"])
            if waiting is not None and cur is not None and cur.state == State.RUNNING:
                waiting = None
                w.waiting.pop(c["name"], None)
            ready = False
            started = None
            if cur is not None and cur.state == State.RUNNING:
                if c.get("startupProbe") and not self.hollow:
                    started = w.probe_results.get((cur.id, "startup")) is True
                ready = (started is not False) and (
                    not c.get("readinessProbe")
                    or self.hollow
                    or w.probe_results.get((cur.id, "readiness")) is True
                )
            restart = int(cur.labels.get(LABEL_RESTART_COUNT, "0")) if cur else 0
            cs = container_status(
                c, cur, prev, restart, rt, waiting=waiting, ready=ready and not init, started=started
            )
            if init and cur is not None and cur.state == State.EXITED and cur.exit_code == 0:
                cs["ready"] = True
            return cs

        init_statuses = [one(c, True) for c in spec.get("initContainers") or []]
        cstatuses = [one(c, False) for c in spec.get("containers") or []]
        phase = pod_phase(pod, init_statuses, cstatuses)
        initialized = all(
            (ics.get("state") or {}).get("terminated", {}).get("exitCode") == 0 for ics in init_statuses
        )
        containers_ready = bool(cstatuses) and all(cs["ready"] for cs in cstatuses)
        old = pod.get("status") or {}
        status: dict[str, Any] = {
            "phase": phase,
            "conditions": pod_conditions(
                old.get("conditions"), sandbox_ready and not terminating, initialized, containers_ready, phase
            ),
            "hostIP": self.node_ip,
            "hostIPs": [{"ip": self.node_ip}],
            "startTime": w.start_time,
            "containerStatuses": cstatuses,
            "qosClass": qos_class(pod),
        }
        if init_statuses:
            status["initContainerStatuses"] = init_statuses
        if w.network is not None and w.network.ip:
            status["podIP"] = w.network.ip
            status["podIPs"] = [{"ip": ip} for ip in (w.network.ips or [w.network.ip])]
        return status

    async def write_status(
        self,
        w: PodWorker,
        statuses: dict[str, list[ContainerStatus]],
        sandbox_ready: bool,
        terminating: bool = False,
    ) -> None:
        status = self.build_status(w, statuses, sandbox_ready, terminating)
        if status == w.last_status:
            return
        meta = w.pod["metadata"]
        try:
            new = await self.client.patch(
                PODS, meta["name"], {"status": status}, meta.get("namespace"), subresource="status"
            )
        except NotFound:
            return
        w.last_status = status
        if new and new.get("metadata", {}).get("uid") == w.uid:
            w.pod = new

    # -- logs (for the HTTP server) ------------------------------------------------------------------------

    def find_container(self, namespace: str, pod: str, container: str, previous: bool = False) -> str | None:
        for w in self.workers.values():
            m = w.pod.get("metadata") or {}
            if m.get("namespace") == namespace and m.get("name") == pod:
                if not container:
                    cs = (w.pod.get("spec") or {}).get("containers") or []
                    container = cs[0]["name"] if len(cs) == 1 else ""
                ids = w.containers.get(container) or []
                idx = -2 if previous else -1
                return ids[idx] if len(ids) >= abs(idx) else None
        return None

    def pods(self) -> list[dict[str, Any]]:
        return [w.pod for w in self.workers.values()]
