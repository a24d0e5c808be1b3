"""The kube-proxy daemon: informers -> ModelBuilder -> ProxyTable -> one transaction per sync.

Services and EndpointSlices are watched through the shared client library's informers; each
event only records the object in the :class:`~hyperkube.proxy.model.ModelBuilder` and wakes the
sync loop. The loop (as upstream's BoundedFrequencyRunner):

- runs at most once per ``min_sync_period`` (changes arriving meanwhile are batched into one sync);
- hands the changed services' rows to the backend's ProxyTable and applies one transaction
  (``iptables-restore`` partial sync or an ``nft -f`` element diff), in a worker thread so the
  informers keep reading;
- does a full sync every ``sync_period`` (rewriting everything repairs rules someone tampered with)
  and after any failure;
- on stop, removes everything it programmed (``cleanup``).

``/healthz`` answers 200 while syncs succeed (503 once a change has waited longer than
``healthz_timeout``), with upstream's JSON body; ``/metrics`` serves Prometheus text with
upstream's metric names (``kubeproxy_sync_proxy_rules_duration_seconds``,
``kubeproxy_network_programming_duration_seconds``, ...) plus rule/element counts and the number of
full and partial syncs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from hyperkube.proxy.backends import Backend, SyncResult
from hyperkube.proxy.model import ModelBuilder

log = logging.getLogger("hyperkube.proxy")

TRIGGER_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
BUCKETS = (
    0.001,
    0.002,
    0.004,
    0.008,
    0.016,
    0.032,
    0.064,
    0.128,
    0.256,
    0.512,
    1.024,
    2.048,
    4.096,
    8.192,
    16.384,
)


class Histogram:
    def __init__(self, name: str, help: str) -> None:
        self.name, self.help = name, help
        self.counts = [0] * len(BUCKETS)
        self.total = 0
        self.sum = 0.0

    def observe(self, v: float) -> None:
        self.total += 1
        self.sum += v
        for i, b in enumerate(BUCKETS):
            if v <= b:
                self.counts[i] += 1

    def render(self) -> str:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for b, c in zip(BUCKETS, self.counts, strict=True):
            out.append(f'{self.name}_bucket{{le="{b}"}} {c}')
        out.append(f'{self.name}_bucket{{le="+Inf"}} {self.total}')
        out.append(f"{self.name}_sum {self.sum}")
        out.append(f"{self.name}_count {self.total}")
        return "\n".join(out)


def _parse_time(s: str) -> float | None:
    try:
        return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return None


class ProxyDaemon:
    def __init__(
        self,
        client: Any,
        backend: Backend,
        *,
        node_name: str | None = None,
        min_sync_period: float = 1.0,
        sync_period: float = 30.0,
        healthz_timeout: float | None = None,
    ) -> None:
        self.client = client
        self.backend = backend
        self.builder = ModelBuilder(node_name)
        self.node_name = node_name
        self.min_sync_period = min_sync_period
        self.sync_period = sync_period
        self.healthz_timeout = healthz_timeout or max(2 * sync_period, 60.0)
        self._wake = asyncio.Event()
        self._pending_triggers: list[float] = []
        self._first_pending: float | None = None
        self.last_sync: float | None = None  # wall time of the last successful sync
        self.last_full = 0.0  # monotonic
        self.syncs = {"full": 0, "partial": 0}
        self.failures = 0
        self.partial_failures = 0
        self.last_result: SyncResult | None = None
        self.h_sync = Histogram(
            "kubeproxy_sync_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds"
        )
        self.h_full = Histogram(
            "kubeproxy_sync_full_proxy_rules_duration_seconds", "Full SyncProxyRules latency in seconds"
        )
        self.h_partial = Histogram(
            "kubeproxy_sync_partial_proxy_rules_duration_seconds", "Partial SyncProxyRules latency in seconds"
        )
        self.h_netprog = Histogram(
            "kubeproxy_network_programming_duration_seconds",
            "In Cluster Network Programming Latency in seconds (EndpointSlice change to rules applied)",
        )
        self.synced = asyncio.Event()

    # -- informer handlers ----------------------------------------------------------------------

    def _changed(self, trigger: float | None = None) -> None:
        now = time.time()
        self._pending_triggers.append(trigger if trigger is not None else now)
        if self._first_pending is None:
            self._first_pending = now
        self._wake.set()

    def on_service(self, obj: Mapping[str, Any]) -> None:
        self.builder.set_service(obj)
        self._changed()

    def on_service_update(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        if old is new:  # periodic resync of the informer: nothing changed
            return
        self.on_service(new)

    def on_service_delete(self, obj: Mapping[str, Any]) -> None:
        md = obj.get("metadata") or {}
        self.builder.delete_service(md.get("namespace") or "default", md.get("name") or "")
        self._changed()

    def on_slice(self, obj: Mapping[str, Any]) -> None:
        self.builder.set_slice(obj)
        ann = ((obj.get("metadata") or {}).get("annotations") or {}).get(TRIGGER_ANNOTATION)
        self._changed(_parse_time(ann) if ann else None)

    def on_slice_update(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        if old is new:
            return
        self.on_slice(new)

    def on_slice_delete(self, obj: Mapping[str, Any]) -> None:
        md = obj.get("metadata") or {}
        self.builder.delete_slice(md.get("namespace") or "default", md.get("name") or "")
        self._changed()

    # -- sync loop --------------------------------------------------------------------------------

    def sync_once(self, full: bool = False) -> SyncResult:
        """Hand the changed rows to the backend and apply one transaction (blocking)."""
        m, removed = self.builder.changes()
        self.backend.update(m, removed)
        return self.backend.sync(full=full)

    async def run(self, informers: tuple[Any, Any]) -> None:
        svc_inf, slice_inf = informers
        svc_inf.add_event_handler(self.on_service, self.on_service_update, self.on_service_delete)
        slice_inf.add_event_handler(self.on_slice, self.on_slice_update, self.on_slice_delete)
        loop = asyncio.get_running_loop()
        last = 0.0
        while True:
            timeout = max(0.0, self.sync_period - (time.monotonic() - self.last_full))
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass
            wait = self.min_sync_period - (time.monotonic() - last)
            if wait > 0:
                await asyncio.sleep(wait)
            self._wake.clear()
            full = time.monotonic() - self.last_full >= self.sync_period or self.last_result is None
            triggers, self._pending_triggers = self._pending_triggers, []
            last = time.monotonic()
            try:
                res = await loop.run_in_executor(None, self.sync_once, full)
            except Exception as e:  # keep running: the next sync is a full one
                self.failures += 1
                self.backend.table.invalidate()
                self.last_result = None
                self._pending_triggers = triggers + self._pending_triggers
                log.error("sync failed: %s", e)
                self._wake.set()
                await asyncio.sleep(min(self.sync_period, 5.0))
                continue
            self.record(res, triggers)

    def record(self, res: SyncResult, triggers: list[float]) -> None:
        self.last_result = res
        self.last_sync = time.time()
        self._first_pending = None if not self._pending_triggers else self._first_pending
        if res.full:
            self.last_full = time.monotonic()
        self.syncs["full" if res.full else "partial"] += 1
        if res.fell_back:
            self.partial_failures += 1
        self.h_sync.observe(res.seconds)
        (self.h_full if res.full else self.h_partial).observe(res.seconds)
        now = time.time()
        for t in triggers:
            self.h_netprog.observe(max(0.0, now - t))
        self.synced.set()
        log.info(
            "synced (%s, %s) in %.1f ms: %s",
            res.mode,
            "full" if res.full else "partial",
            res.seconds * 1e3,
            res.stats,
        )

    # -- HTTP -------------------------------------------------------------------------------------

    def healthy(self) -> bool:
        if self.last_sync is None:
            return False
        return self._first_pending is None or time.time() - self._first_pending < self.healthz_timeout

    async def healthz(self, request: web.Request) -> web.Response:
        now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
        last = (
            dt.datetime.fromtimestamp(self.last_sync, dt.UTC).isoformat().replace("+00:00", "Z")
            if self.last_sync
            else ""
        )
        body = {
            "lastUpdated": last,
            "currentTime": now,
            "nodeName": self.node_name or "",
            "nodeEligible": True,
        }
        return web.Response(
            status=200 if self.healthy() else 503, text=json.dumps(body), content_type="application/json"
        )

    async def metrics(self, request: web.Request) -> web.Response:
        out = [h.render() for h in (self.h_sync, self.h_full, self.h_partial, self.h_netprog)]
        st = self.last_result.stats if self.last_result else {}
        mode = self.backend.mode
        out.append("# TYPE kubeproxy_sync_proxy_rules_last_timestamp_seconds gauge")
        out.append(f"kubeproxy_sync_proxy_rules_last_timestamp_seconds {self.last_sync or 0}")
        out.append("# TYPE kubeproxy_sync_proxy_rules_total counter")
        for kind, n in self.syncs.items():
            out.append(f'kubeproxy_sync_proxy_rules_total{{mode="{mode}",kind="{kind}"}} {n}')
        out.append("# TYPE kubeproxy_sync_proxy_rules_failures_total counter")
        out.append(f"kubeproxy_sync_proxy_rules_failures_total {self.failures}")
        if mode == "iptables":
            out.append("# TYPE kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total counter")
            out.append(
                f"kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total {self.partial_failures}"
            )
            out.append("# TYPE kubeproxy_sync_proxy_rules_iptables_last gauge")
            for table, key in (("filter", "filter_rules"), ("nat", "nat_rules")):
                out.append(f'kubeproxy_sync_proxy_rules_iptables_last{{table="{table}"}} {st.get(key, 0)}')
        else:
            out.append("# TYPE kubeproxy_sync_proxy_rules_nftables_elements gauge")
            out.append(f"kubeproxy_sync_proxy_rules_nftables_elements {st.get('elements', 0)}")
            out.append("# TYPE kubeproxy_sync_proxy_rules_nftables_rules gauge")
            out.append(f"kubeproxy_sync_proxy_rules_nftables_rules {st.get('rules', 0)}")
            out.append("# TYPE kubeproxy_sync_proxy_rules_nftables_chains gauge")
            out.append(f"kubeproxy_sync_proxy_rules_nftables_chains {st.get('chains', 0)}")
        out.append("# TYPE kubeproxy_sync_proxy_rules_last_changed_rows gauge")
        out.append(f"kubeproxy_sync_proxy_rules_last_changed_rows {st.get('changed_rows', 0)}")
        return web.Response(text="\n".join(out) + "\n", content_type="text/plain")

    def app(self) -> web.Application:
        a = web.Application()
        a.router.add_get("/healthz", self.healthz)
        a.router.add_get("/livez", self.healthz)
        a.router.add_get("/metrics", self.metrics)
        return a
