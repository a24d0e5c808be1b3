"""The ``hyperkube scheduler`` daemon: kube-scheduler over the compiled engine.

Pieces, as upstream's:

* **informers** on Nodes and Pods keep the engine's :class:`~hyperkube.scheduler.Cluster` in
  step: nodes are upserted/removed, bound pods are recorded on their nodes (or forgotten when
  deleted or finished), pending pods with our ``schedulerName`` enter the queue;
* the **queue** (:mod:`hyperkube.scheduler.queue`): PrioritySort, backoff 1 s → 10 s, an
  unschedulable pool that a cluster change (node added or changed, pod deleted) re-queues;
* the **scheduling loop** pops a batch of pods in priority order and places the whole batch in
  one engine call (each pod sees the ones before it: they are *assumed*), then
* **binding** runs asynchronously (``pods/binding``, many in flight) so API round trips do not
  cap throughput; a failed binding forgets the assumed pod and re-queues it with backoff. A
  ``Scheduled`` event is recorded per bound pod;
* a pod that fits nowhere gets the ``PodScheduled=False`` condition (reason ``Unschedulable``,
  the FitError message) and a ``FailedScheduling`` Warning event, as upstream;
* **DefaultPreemption** (:mod:`hyperkube.scheduler.preemption`) then looks for a node where
  deleting lower-priority pods makes it fit: the victims are deleted gracefully (with a
  ``Preempted`` event each), the pod's ``status.nominatedNodeName`` is set, and the pod comes
  back from the unschedulable pool when the victims' deletion reaches the informer;
* **leader election** on the ``kube-system/kube-scheduler`` Lease (``--leader-elect``), so two
  schedulers can run and one schedules;
* ``/healthz`` (``/livez``, ``/readyz``) and ``/metrics`` (Prometheus text:
  ``scheduler_schedule_attempts_total{result}``, ``scheduler_scheduling_attempt_duration_seconds``,
  ``scheduler_pending_pods{queue}``, ``scheduler_bindings_total{result}``) over plain HTTP.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from hyperkube.client import NODES, PODS, Client, EventRecorder, LeaderElector, SharedInformerFactory
from hyperkube.client.errors import ApiError, Conflict, NotFound
from hyperkube.scheduler import Cluster, SpecError
from hyperkube.scheduler.preemption import preempt
from hyperkube.scheduler.queue import SchedulingQueue, pod_key

log = logging.getLogger("hyperkube.scheduler")

Obj = dict[str, Any]
BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)


def _node_relevant(n: Obj) -> tuple[Any, ...]:
    """The parts of a Node the scheduler reads (heartbeats do not re-queue pods)."""
    md, spec, st = n.get("metadata") or {}, n.get("spec") or {}, n.get("status") or {}
    return (
        md.get("labels"),
        spec.get("taints"),
        spec.get("unschedulable"),
        st.get("allocatable") or st.get("capacity"),
        [tuple(i.get("names") or ()) for i in st.get("images") or []],
    )


def _finished(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


class Scheduler:
    def __init__(
        self,
        client: Client,
        *,
        config: Mapping[str, Any] | None = None,
        leader_elect: bool = True,
        lease_name: str = "kube-scheduler",
        lease_namespace: str = "kube-system",
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        bind_address: str = "127.0.0.1",
        port: int = 10259,
        batch_size: int = 256,
        binds_in_flight: int = 128,
        seed: int | None = None,
    ) -> None:
        self.client = client
        cfg = dict(config or {})
        profiles = cfg.get("profiles") or [{}]
        self.scheduler_name = (profiles[0] or {}).get("schedulerName") or "default-scheduler"
        self.cluster = Cluster(config=cfg, seed=seed)
        self.queue = SchedulingQueue()
        self.recorder = EventRecorder(client, self.scheduler_name)
        self.factory = SharedInformerFactory(client)
        self.nodes_inf = self.factory.informer(NODES)
        self.pods_inf = self.factory.informer(PODS)
        self.pods_inf.add_indexers(
            {"nodeName": lambda p: [n] if (n := (p.get("spec") or {}).get("nodeName")) else []}
        )
        self.leader_elect = leader_elect
        self.elector = LeaderElector(
            client,
            lease_name,
            lease_namespace,
            lease_duration=lease_duration,
            renew_deadline=renew_deadline,
            retry_period=retry_period,
            on_started_leading=self._schedule_loop,
        )
        self.bind_address = bind_address
        self.port = port
        self.batch_size = batch_size
        self._bind_sem = asyncio.Semaphore(binds_in_flight)
        self._bind_tasks: set[asyncio.Task[None]] = set()
        self._node_state: dict[str, tuple[Any, ...]] = {}
        self._orphans: dict[str, dict[str, Obj]] = defaultdict(dict)
        self.runner: web.AppRunner | None = None
        self.attempts: dict[str, int] = defaultdict(int)
        self.bindings: dict[str, int] = defaultdict(int)
        self.preemptions: dict[str, int] = defaultdict(int)
        self._hist_counts = [0] * (len(BUCKETS) + 1)
        self._hist_sum = 0.0
        self._hist_n = 0
        self.ready = False
        self.scheduled = 0

    # ---- informer handlers -------------------------------------------------------------------

    def _on_node(self, node: Obj, old: Obj | None = None) -> None:
        name = (node.get("metadata") or {}).get("name") or ""
        state = _node_relevant(node)
        if self._node_state.get(name) == state:
            return
        self._node_state[name] = state
        try:
            self.cluster.add_nodes([node])
        except (SpecError, ValueError) as e:
            log.warning("node %s: %s", name, e)
            return
        orphans = self._orphans.pop(name, None)
        if orphans:
            self._record_bound(list(orphans.values()))
        self.queue.move_all_to_active()

    def _on_node_delete(self, node: Obj) -> None:
        name = (node.get("metadata") or {}).get("name") or ""
        self._node_state.pop(name, None)
        self.cluster.remove_node(name)

    def _record_bound(self, pods: list[Obj]) -> None:
        for pod in pods:
            key = pod_key(pod)
            node = pod["spec"]["nodeName"]
            current = self.cluster.pod_node(key)
            if current == node:
                continue
            if current is not None:
                self.cluster.remove_pod(key)
            if node not in self._node_state:
                self._orphans[node][key] = pod
                continue
            try:
                self.cluster.add_pods([pod])
            except (SpecError, ValueError, KeyError) as e:
                log.warning("pod %s: %s", key, e)

    def _on_pod(self, pod: Obj, old: Obj | None = None) -> None:
        key = pod_key(pod)
        spec = pod.get("spec") or {}
        if spec.get("nodeName"):
            self.queue.delete(key)
            if _finished(pod) or (pod.get("metadata") or {}).get("deletionTimestamp"):
                if self.cluster.remove_pod(key):
                    self.queue.move_all_to_active()
                return
            if old is not None and (old.get("spec") or {}).get("nodeName") == spec["nodeName"]:
                if (old.get("metadata") or {}).get("labels") == (pod.get("metadata") or {}).get("labels"):
                    return
                self.cluster.remove_pod(key)
            self._record_bound([pod])
            return
        if (spec.get("schedulerName") or "default-scheduler") != self.scheduler_name:
            return
        if (pod.get("metadata") or {}).get("deletionTimestamp") or _finished(pod):
            self.queue.delete(key)
            return
        if spec.get("schedulingGates"):
            return
        self.queue.add(pod)

    def _on_pod_delete(self, pod: Obj) -> None:
        key = pod_key(pod)
        self.queue.delete(key)
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            self._orphans.get(node, {}).pop(key, None)
        if self.cluster.remove_pod(key):
            self.queue.move_all_to_active()

    # ---- scheduling ------------------------------------------------------------------------

    def _observe(self, seconds: float, n: int) -> None:
        per = seconds / max(n, 1)
        i = bisect.bisect_left(BUCKETS, per)
        self._hist_counts[i] += n
        self._hist_sum += seconds
        self._hist_n += n

    def schedule_batch(self, pods: list[Obj]) -> list[tuple[Obj, str | None, str | None]]:
        """Place a batch (assumed in the engine); returns (pod, node, message) per pod."""
        specs: list[dict[str, Any]] = []
        valid: list[Obj] = []
        out: list[tuple[Obj, str | None, str | None]] = []
        for pod in pods:
            try:
                specs.append(self.cluster.pod_spec(pod))
                valid.append(pod)
            except SpecError as e:
                out.append((pod, None, f"invalid pod: {e}"))
        t0 = time.perf_counter()
        results = self.cluster.place_specs(specs)
        self._observe(time.perf_counter() - t0, len(specs))
        for pod, r in zip(valid, results, strict=True):
            out.append((pod, r.node, r.message))
        return out

    async def _schedule_loop(self) -> None:
        log.info("%s: scheduling", self.scheduler_name)
        try:
            while True:
                await self._schedule_once()
        finally:
            self.queue.abandon_in_flight()

    async def _schedule_once(self) -> None:
        pods = await self.queue.pop_batch(self.batch_size)
        results = self.schedule_batch(pods)
        for i, (pod, node, message) in enumerate(results):
            key = pod_key(pod)
            if node is None:
                self.attempts["unschedulable"] += 1
                self.queue.done_unschedulable(key)
                message, nominated = self._preempt(pod, message or "")
                self._unschedulable(pod, message, nominated)
                continue
            try:
                await self._bind_sem.acquire()
            except asyncio.CancelledError:
                # stopped mid-batch: placements not yet handed to binding are undone
                for p, n, _ in results[i:]:
                    if n is not None:
                        self.cluster.remove_pod(pod_key(p))
                raise
            self.attempts["scheduled"] += 1
            self.queue.done_scheduled(key)
            t = asyncio.get_running_loop().create_task(self._bind(pod, node))
            self._bind_tasks.add(t)
            t.add_done_callback(self._bind_tasks.discard)
        await asyncio.sleep(0)

    async def _bind(self, pod: Obj, node: str) -> None:
        md = pod.get("metadata") or {}
        ns, name = md.get("namespace") or "default", md.get("name") or ""
        try:
            await self.client.bind(ns, name, node, uid=md.get("uid"))
            self.bindings["ok"] += 1
            self.scheduled += 1
            self.recorder.event(pod, "Normal", "Scheduled", f"Successfully assigned {ns}/{name} to {node}")
        except (NotFound, Conflict) as e:
            # deleted, or bound by someone else meanwhile: the informer tells us the rest (and may
            # already have recorded the pod where it really is)
            self.bindings["error"] += 1
            cached = self.pods_inf.get(name, ns)
            if not (cached and (cached.get("spec") or {}).get("nodeName")):
                self.cluster.remove_pod(f"{ns}/{name}")
            log.info("binding %s/%s: %s", ns, name, e)
        except (TimeoutError, ApiError, OSError) as e:
            self.bindings["error"] += 1
            self.cluster.remove_pod(f"{ns}/{name}")
            self.attempts["error"] += 1
            log.warning("binding %s/%s to %s failed: %s", ns, name, node, e)
            self.queue.requeue(pod)
        finally:
            self._bind_sem.release()

    def _preempt(self, pod: Obj, message: str) -> tuple[str, str | None]:
        """Run DefaultPreemption for a pod that fits nowhere: returns the FitError message (with
        upstream's ``preemption: ...`` suffix when it found nothing) and the nominated node."""
        if message.startswith("invalid pod:"):
            return message, None
        try:
            result = preempt(
                self.cluster, pod, lambda n: self.pods_inf.by_index("nodeName", n), fit_message=message
            )
        except (SpecError, ValueError, KeyError) as e:
            log.warning("preemption for %s: %s", pod_key(pod), e)
            return message, None
        if result.node is None:
            self.preemptions["none"] += 1
            return f"{message} preemption: {result.message}.", None
        self.preemptions["ok"] += 1
        md = pod.get("metadata") or {}
        for v in result.victims:
            # the victim leaves the engine's cluster when its deletion reaches the informer
            # (deletionTimestamp set), which re-queues the preemptor as well
            self.recorder.event(
                v,
                "Normal",
                "Preempted",
                f"Preempted by pod {md.get('uid') or pod_key(pod)} on node {result.node}",
            )
            t = asyncio.get_running_loop().create_task(self._delete_victim(v))
            self._bind_tasks.add(t)
            t.add_done_callback(self._bind_tasks.discard)
        log.info(
            "preempting %d pod(s) on %s for %s: %s",
            len(result.victims),
            result.node,
            pod_key(pod),
            ", ".join(pod_key(v) for v in result.victims),
        )
        return message, result.node

    async def _delete_victim(self, victim: Obj) -> None:
        md = victim.get("metadata") or {}
        ns, name = md.get("namespace") or "default", md.get("name") or ""
        pre = {"uid": md["uid"]} if md.get("uid") else None
        try:
            await self.client.delete(PODS, name, ns, preconditions=pre)
        except (NotFound, Conflict):
            pass
        except (TimeoutError, ApiError, OSError) as e:
            log.warning("deleting the preemption victim %s/%s: %s", ns, name, e)

    def _unschedulable(self, pod: Obj, message: str, nominated: str | None = None) -> None:
        md = pod.get("metadata") or {}
        self.recorder.event(pod, "Warning", "FailedScheduling", message)
        status = pod.get("status") or {}
        same_nomination = nominated in (None, status.get("nominatedNodeName"))
        for c in status.get("conditions") or [] if same_nomination else []:
            if (
                c.get("type") == "PodScheduled"
                and c.get("status") == "False"
                and c.get("reason") == "Unschedulable"
                and c.get("message") == message
            ):
                return
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        patch: Obj = {
            "status": {
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": message,
                        "lastProbeTime": None,
                        "lastTransitionTime": now,
                    }
                ]
            }
        }
        if nominated:
            patch["status"]["nominatedNodeName"] = nominated
        t = asyncio.get_running_loop().create_task(
            self._patch_status(md.get("namespace") or "default", md.get("name") or "", patch)
        )
        self._bind_tasks.add(t)
        t.add_done_callback(self._bind_tasks.discard)

    async def _patch_status(self, ns: str, name: str, patch: Obj) -> None:
        try:
            await self.client.patch(PODS, name, patch, ns, subresource="status", patch_type="strategic")
        except NotFound:
            pass
        except (TimeoutError, ApiError, OSError) as e:
            log.warning("updating the status of %s/%s: %s", ns, name, e)

    # ---- HTTP ------------------------------------------------------------------------------

    async def start_http(self) -> int:
        app = web.Application()
        for path in ("/healthz", "/livez", "/readyz"):
            app.router.add_get(path, self._healthz)
        app.router.add_get("/metrics", self._metrics)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.bind_address, self.port)
        await site.start()
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]
        return self.port

    async def _healthz(self, request: web.Request) -> web.Response:
        if request.path == "/readyz" and not self.ready:
            return web.Response(status=500, text="informers not synced\n")
        return web.Response(text="ok")

    def metrics_text(self) -> str:
        prof = self.scheduler_name
        out = [
            "# HELP scheduler_schedule_attempts_total Number of attempts to schedule pods, by the result.",
            "# TYPE scheduler_schedule_attempts_total counter",
        ]
        for result in ("scheduled", "unschedulable", "error"):
            out.append(
                f'scheduler_schedule_attempts_total{{profile="{prof}",result="{result}"}} {self.attempts[result]}'
            )
        out += [
            "# HELP scheduler_scheduling_attempt_duration_seconds Scheduling attempt latency (filter and score).",
            "# TYPE scheduler_scheduling_attempt_duration_seconds histogram",
        ]
        acc = 0
        for b, c in zip(BUCKETS, self._hist_counts, strict=False):
            acc += c
            out.append(
                f'scheduler_scheduling_attempt_duration_seconds_bucket{{profile="{prof}",le="{b}"}} {acc}'
            )
        out.append(
            f'scheduler_scheduling_attempt_duration_seconds_bucket{{profile="{prof}",le="+Inf"}} {self._hist_n}'
        )
        out.append(f'scheduler_scheduling_attempt_duration_seconds_sum{{profile="{prof}"}} {self._hist_sum}')
        out.append(f'scheduler_scheduling_attempt_duration_seconds_count{{profile="{prof}"}} {self._hist_n}')
        out += [
            "# HELP scheduler_pending_pods Number of pending pods, by the queue type.",
            "# TYPE scheduler_pending_pods gauge",
            f'scheduler_pending_pods{{queue="active"}} {self.queue.active_len}',
            f'scheduler_pending_pods{{queue="backoff"}} {self.queue.backoff_len}',
            f'scheduler_pending_pods{{queue="unschedulable"}} {len(self.queue.unschedulable)}',
            "# HELP scheduler_bindings_total Pod bindings, by the result.",
            "# TYPE scheduler_bindings_total counter",
            f'scheduler_bindings_total{{result="ok"}} {self.bindings["ok"]}',
            f'scheduler_bindings_total{{result="error"}} {self.bindings["error"]}',
            "# HELP scheduler_preemption_attempts_total Preemption attempts, by whether a node was found.",
            "# TYPE scheduler_preemption_attempts_total counter",
            f'scheduler_preemption_attempts_total{{result="nominated"}} {self.preemptions["ok"]}',
            f'scheduler_preemption_attempts_total{{result="none"}} {self.preemptions["none"]}',
            "# HELP leader_election_master_status Whether this instance is the leader.",
            "# TYPE leader_election_master_status gauge",
            f'leader_election_master_status{{name="kube-scheduler"}} {int(self.is_leader)}',
        ]
        return "\n".join(out) + "\n"

    @property
    def is_leader(self) -> bool:
        return self.elector.is_leader if self.leader_elect else True

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=self.metrics_text(), content_type="text/plain")

    # ---- run --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Watch, (campaign and) schedule until cancelled."""
        self.nodes_inf.add_event_handler(
            on_add=self._on_node,
            on_update=lambda old, new: self._on_node(new, old),
            on_delete=self._on_node_delete,
        )
        self.pods_inf.add_event_handler(
            on_add=self._on_pod,
            on_update=lambda old, new: self._on_pod(new, old),
            on_delete=self._on_pod_delete,
        )
        self.factory.start()
        try:
            await self.factory.wait_for_sync()
            self.ready = True
            if self.leader_elect:
                while True:
                    await self.elector.run()
            else:
                await self._schedule_loop()
        finally:
            for t in list(self._bind_tasks):
                t.cancel()
            await self.factory.stop()
            await self.recorder.close()
            if self.runner is not None:
                await self.runner.cleanup()
