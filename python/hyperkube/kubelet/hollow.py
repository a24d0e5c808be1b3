"""Hollow nodes: many kubelets with the fake runtime in one process (upstream's kubemark, KWOK's idea).

Each hollow node is a real :class:`~hyperkube.kubelet.agent.Kubelet` - it registers its Node, renews its
Lease every 10 s, reports status and runs the pods bound to it through the same pod workers, status
computation and final delete as a real node - but with the :class:`FakeRuntime` (containers "run" the
moment they start), no probes, no volumes on disk, pod IPs handed out from the node's podCIDR (or a
private range), and no PLEG.

What makes thousands fit in one process: all nodes share one API client (one connection pool) and ONE
pod informer (a single list+watch of all pods, dispatched to the node named by ``spec.nodeName``) instead
of one watch per node; registration is spread over a bounded number of concurrent requests, and lease
renewals are spread over the interval by a random initial offset.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from hyperkube.client import PODS, SharedInformer
from hyperkube.kubelet.agent import Kubelet
from hyperkube.kubelet.runtime.fake import FakeRuntime

log = logging.getLogger("hyperkube.kubelet.hollow")


class HollowNodes:
    def __init__(
        self,
        client: Any,
        count: int,
        *,
        prefix: str = "hollow-node-",
        root_dir: str = ".hyperkube/hollow",
        labels: dict[str, str] | None = None,
        capacity: dict[str, str] | None = None,
        lease_interval: float = 10.0,
        status_update_interval: float = 10.0,
        register_concurrency: int = 32,
        start_index: int = 0,
    ) -> None:
        self.client = client
        self.register_concurrency = register_concurrency
        self.kubelets: dict[str, Kubelet] = {}
        for i in range(start_index, start_index + count):
            name = f"{prefix}{i}"
            self.kubelets[name] = Kubelet(
                client,
                name,
                FakeRuntime(),
                root_dir=os.path.join(root_dir, name),
                node_ip=f"10.{64 + (i >> 16) % 64}.{(i >> 8) & 255}.{i & 255}",
                labels={"hyperkube.io/hollow": "true", **(labels or {})},
                capacity=capacity,
                hollow=True,
                lease_interval=lease_interval,
                status_update_interval=status_update_interval,
                own_informer=False,
                fake_pod_cidr=f"10.{128 + (i >> 8) % 128}.{i & 255}.0/24",
            )
        self.informer: SharedInformer | None = None

    def _dispatch(self, pod: dict[str, Any]) -> None:
        kl = self.kubelets.get((pod.get("spec") or {}).get("nodeName") or "")
        if kl is not None:
            kl.on_pod(pod)

    def _deleted(self, pod: dict[str, Any]) -> None:
        kl = self.kubelets.get((pod.get("spec") or {}).get("nodeName") or "")
        if kl is not None:
            kl.on_pod_deleted(pod)

    async def start(self) -> None:
        sem = asyncio.Semaphore(self.register_concurrency)

        async def one(kl: Kubelet) -> None:
            async with sem:
                await kl.start()

        await asyncio.gather(*(one(kl) for kl in self.kubelets.values()))
        self.informer = SharedInformer(self.client, PODS, field_selector="spec.nodeName!=")
        self.informer.add_event_handler(self._dispatch, lambda old, new: self._dispatch(new), self._deleted)
        self.informer.start()
        await self.informer.wait_for_sync()
        log.info("%d hollow nodes registered", len(self.kubelets))

    async def stop(self) -> None:
        if self.informer is not None:
            await self.informer.stop()
        await asyncio.gather(*(kl.stop() for kl in self.kubelets.values()), return_exceptions=True)
