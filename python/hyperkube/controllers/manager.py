"""The controller manager: leader election, the selected controllers, /healthz and /metrics.

``ControllerManager.run()`` serves ``/healthz``, ``/readyz``, ``/livez`` and ``/metrics`` at once
(so ``kubectl get componentstatuses`` and probes work on standbys too), then campaigns for the
``kube-controller-manager`` Lease in ``kube-system``. The leader builds every selected controller
on one :class:`~hyperkube.controllers.base.ControllerContext` (one shared informer factory: one
watch per resource for the whole process), starts the informers and runs the controllers until
cancelled. Losing the lease stops the controllers and makes ``run()`` return 1, upon which the
daemon exits, as upstream's does (a supervisor restarts it as a candidate).

/metrics speaks the Prometheus text format: ``workqueue_depth``, ``workqueue_adds_total``,
``workqueue_retries_total``, ``workqueue_work_duration_seconds_{sum,count}``,
``controller_reconcile_total``/``controller_reconcile_errors_total`` per controller,
``leader_election_master_status`` and ``process_cpu_seconds_total``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource as _resource
import socket
from typing import Any

from aiohttp import web

from hyperkube.client import Client, LeaderElector, SharedInformerFactory
from hyperkube.controllers.base import Controller, ControllerContext, Options
from hyperkube.controllers.registry import build

log = logging.getLogger("hyperkube.controllers.manager")

LEASE_NAME = "kube-controller-manager"


class ControllerManager:
    def __init__(
        self,
        client: Client,
        controllers: list[str],
        options: Options | None = None,
        *,
        leader_elect: bool = True,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        lease_namespace: str = "kube-system",
        identity: str | None = None,
        bind_address: str = "127.0.0.1",
        port: int = 10257,
    ):
        self.client = client
        self.names = controllers
        self.options = options or Options()
        self.leader_elect = leader_elect
        self.identity = identity or f"{socket.gethostname()}_{os.getpid()}"
        self.elector = LeaderElector(
            client,
            LEASE_NAME,
            lease_namespace,
            identity=self.identity,
            lease_duration=lease_duration,
            renew_deadline=renew_deadline,
            retry_period=retry_period,
            on_started_leading=self._lead,
        )
        self.bind_address = bind_address
        self.port = port
        self.controllers: list[Controller] = []
        self.ctx: ControllerContext | None = None
        self.runner: web.AppRunner | None = None
        self.started = asyncio.Event()

    # -- HTTP -----------------------------------------------------------------------------------

    async def start_http(self) -> int:
        app = web.Application()
        for path in ("/healthz", "/livez", "/readyz"):
            app.router.add_get(path, self._healthz)
        app.router.add_get("/metrics", self._metrics)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.bind_address, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.port

    async def _healthz(self, request: web.Request) -> web.Response:
        if "verbose" in request.query:
            lines = ["[+]ping ok", f"[+]leaderElection ok ({'leader' if self.is_leader else 'standby'})"]
            lines += [f"[+]controller-{c.name} ok" for c in self.controllers]
            return web.Response(text="\n".join(lines) + "\nhealthz check passed\n")
        return web.Response(text="ok")

    @property
    def is_leader(self) -> bool:
        return self.elector.is_leader if self.leader_elect else bool(self.controllers)

    def metrics_text(self) -> str:
        out: list[str] = []

        def metric(name: str, kind: str, help_: str, rows: list[tuple[str, Any]]) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")
            for labels, v in rows:
                out.append(f"{name}{labels} {v}")

        ms = [(c.name, c.metrics(), c) for c in self.controllers]
        metric(
            "workqueue_depth",
            "gauge",
            "Current depth of workqueue",
            [(f'{{name="{n}"}}', m.get("depth", 0)) for n, m, _ in ms],
        )
        metric(
            "workqueue_adds_total",
            "counter",
            "Total number of adds handled by workqueue",
            [(f'{{name="{n}"}}', m.get("adds", 0)) for n, m, _ in ms],
        )
        metric(
            "workqueue_retries_total",
            "counter",
            "Total number of retries handled by workqueue",
            [(f'{{name="{n}"}}', m.get("retries", 0)) for n, m, _ in ms],
        )
        metric(
            "workqueue_work_duration_seconds_sum",
            "counter",
            "Seconds spent processing items",
            [(f'{{name="{n}"}}', f"{m.get('work_seconds', 0.0):.6f}") for n, m, _ in ms],
        )
        metric(
            "workqueue_work_duration_seconds_count",
            "counter",
            "Items processed",
            [(f'{{name="{n}"}}', m.get("work_count", 0)) for n, m, _ in ms],
        )
        metric(
            "controller_reconcile_total",
            "counter",
            "Reconciles run",
            [(f'{{controller="{n}"}}', c.reconciles) for n, _, c in ms],
        )
        metric(
            "controller_reconcile_errors_total",
            "counter",
            "Reconciles that failed",
            [(f'{{controller="{n}"}}', c.errors) for n, _, c in ms],
        )
        metric(
            "controller_reconcile_duration_seconds_sum",
            "counter",
            "Seconds spent reconciling",
            [(f'{{controller="{n}"}}', f"{c.reconcile_seconds:.6f}") for n, _, c in ms],
        )
        metric(
            "leader_election_master_status",
            "gauge",
            "1 when this process is the leader",
            [(f'{{name="{LEASE_NAME}"}}', int(self.is_leader))],
        )
        ru = _resource.getrusage(_resource.RUSAGE_SELF)
        metric(
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU seconds",
            [("", f"{ru.ru_utime + ru.ru_stime:.3f}")],
        )
        metric("process_resident_memory_bytes", "gauge", "Peak resident memory", [("", ru.ru_maxrss * 1024)])
        return "\n".join(out) + "\n"

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=self.metrics_text(), content_type="text/plain")

    # -- controllers --------------------------------------------------------------------------------

    async def _lead(self) -> None:
        factory = SharedInformerFactory(self.client)
        self.ctx = ControllerContext(self.client, factory, self.options, host=socket.gethostname())
        self.controllers = build(self.names, self.ctx)
        factory.start()
        log.info("controller-manager %s leading; running %s", self.identity, ", ".join(self.names))
        tasks = [asyncio.create_task(c.run(), name=f"controller:{c.name}") for c in self.controllers]
        self.started.set()
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                if t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await factory.stop()
            await self.ctx.close()

    async def run(self) -> int:
        if self.runner is None and self.port >= 0:
            await self.start_http()
        try:
            if not self.leader_elect:
                await self._lead()
                return 0
            await self.elector.run()
            log.error("leader election lost")
            return 1
        finally:
            if self.runner is not None:
                await self.runner.cleanup()
                self.runner = None
