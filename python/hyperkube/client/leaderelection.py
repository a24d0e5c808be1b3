"""Leader election on a ``coordination.k8s.io/v1`` Lease (client-go's ``tools/leaderelection``).

The Lease's spec is the election record: ``holderIdentity``, ``leaseDurationSeconds``,
``acquireTime``, ``renewTime``, ``leaseTransitions``. A candidate:

1. every ``retry_period`` (2 s, jittered) reads the Lease; if it is missing, creates it holding it;
   if another holder's record has not changed for ``leaseDurationSeconds`` *as observed on our own
   clock* (so clock skew between machines does not matter), takes it over (``acquireTime`` = now,
   ``leaseTransitions`` + 1). Every write is a conditional update (resourceVersion), so two
   candidates can never both win: the loser gets 409 and tries again later.
2. once leader, runs ``on_started_leading`` as a task and renews every ``retry_period``; if no
   renewal succeeds for ``renew_deadline`` (10 s) it has lost the lease: the task is cancelled and
   ``on_stopped_leading`` runs (daemons exit then, as upstream's do).
3. on cancellation (clean shutdown) with ``release_on_cancel``, it hands the Lease back (empty
   holder, ``leaseDurationSeconds`` 1) so a standby takes over at once.

Defaults are upstream's: lease duration 15 s, renew deadline 10 s, retry period 2 s.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from hyperkube.client.errors import AlreadyExists, ApiError, Conflict, NotFound
from hyperkube.client.resources import LEASES
from hyperkube.client.rest import Client
from hyperkube.client.timeutil import micro_time

log = logging.getLogger("hyperkube.client.leaderelection")


def default_identity() -> str:
    return f"{socket.gethostname()}_{uuid.uuid4()}"


class LeaderElector:
    def __init__(
        self,
        client: Client,
        name: str,
        namespace: str = "kube-system",
        *,
        identity: str | None = None,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        on_started_leading: Callable[[], Awaitable[Any]] | None = None,
        on_stopped_leading: Callable[[], Any] | None = None,
        on_new_leader: Callable[[str], Any] | None = None,
        release_on_cancel: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ):
        if lease_duration <= renew_deadline:
            raise ValueError("lease_duration must be greater than renew_deadline")
        if renew_deadline <= retry_period:
            raise ValueError("renew_deadline must be greater than retry_period")
        self.client = client
        self.name = name
        self.namespace = namespace
        self.identity = identity or default_identity()
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.on_started_leading = on_started_leading
        self.on_stopped_leading = on_stopped_leading
        self.on_new_leader = on_new_leader
        self.release_on_cancel = release_on_cancel
        self.clock = clock
        self._observed: dict[str, Any] | None = None
        self._observed_time = 0.0
        self._lease: dict[str, Any] | None = None
        self._leader: str = ""
        self.is_leader = False

    @property
    def leader(self) -> str:
        """The holder last observed (ours or another's)."""
        return self._leader

    async def run(self) -> None:
        """Campaign, lead, and return when leadership is lost (or raise CancelledError)."""
        work: asyncio.Task | None = None
        try:
            await self._acquire()
            self.is_leader = True
            log.info("%s/%s: %s became leader", self.namespace, self.name, self.identity)
            if self.on_started_leading is not None:
                work = asyncio.get_running_loop().create_task(self.on_started_leading())
            await self._renew_loop(work)
        finally:
            was_leader = self.is_leader
            self.is_leader = False
            if work is not None and not work.done():
                work.cancel()
                try:
                    await work
                except (asyncio.CancelledError, Exception):  # noqa: BLE001
                    pass
            if was_leader:
                if self.release_on_cancel:
                    await asyncio.shield(self._release())
                if self.on_stopped_leading is not None:
                    r = self.on_stopped_leading()
                    if inspect.isawaitable(r):
                        await r

    async def _sleep(self) -> None:
        await asyncio.sleep(self.retry_period * (1 + 0.2 * random.random()))

    async def _acquire(self) -> None:
        while True:
            if await self.try_acquire_or_renew():
                return
            await self._sleep()

    async def _renew_loop(self, work: asyncio.Task | None) -> None:
        last_ok = self.clock()
        while True:
            await asyncio.sleep(self.retry_period)
            if work is not None and work.done():
                return  # the leader's work ended by itself
            try:
                ok = await asyncio.wait_for(self.try_acquire_or_renew(), self.renew_deadline)
            except TimeoutError:
                ok = False
            if ok:
                last_ok = self.clock()
            elif self.clock() - last_ok >= self.renew_deadline:
                log.error(
                    "%s/%s: failed to renew the lease for %.0fs; leadership lost",
                    self.namespace,
                    self.name,
                    self.renew_deadline,
                )
                return

    def _observe(self, spec: dict[str, Any]) -> None:
        if spec != self._observed:
            self._observed = dict(spec)
            self._observed_time = self.clock()
        holder = spec.get("holderIdentity") or ""
        if holder != self._leader:
            self._leader = holder
            if holder and self.on_new_leader is not None:
                try:
                    self.on_new_leader(holder)
                except Exception:  # noqa: BLE001
                    log.exception("on_new_leader failed")

    async def try_acquire_or_renew(self) -> bool:
        now = micro_time()
        try:
            lease = await self.client.get(LEASES, self.name, self.namespace)
        except NotFound:
            spec = {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.lease_duration),
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            }
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": spec,
            }
            try:
                self._lease = await self.client.create(LEASES, body, self.namespace)
            except (AlreadyExists, Conflict):
                return False
            except (ApiError, OSError, Exception) as e:  # noqa: BLE001
                log.warning("creating lease %s/%s: %s", self.namespace, self.name, e)
                return False
            self._observe(spec)
            return True
        except Exception as e:  # noqa: BLE001
            log.warning("reading lease %s/%s: %s", self.namespace, self.name, e)
            return False

        spec = dict(lease.get("spec") or {})
        self._observe(spec)
        holder = spec.get("holderIdentity") or ""
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and self._observed_time + duration > self.clock():
            return False  # someone else holds a live lease
        new = dict(spec)
        if holder != self.identity:
            new["acquireTime"] = now
            new["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        new["holderIdentity"] = self.identity
        new["leaseDurationSeconds"] = int(self.lease_duration)
        new["renewTime"] = now
        body = dict(lease)
        body["spec"] = new
        try:
            self._lease = await self.client.update(LEASES, body, self.namespace)
        except Conflict:
            return False
        except Exception as e:  # noqa: BLE001
            log.warning("updating lease %s/%s: %s", self.namespace, self.name, e)
            return False
        self._observe(new)
        return True

    async def _release(self) -> None:
        lease = self._lease
        if lease is None:
            return
        spec = dict(lease.get("spec") or {})
        if spec.get("holderIdentity") != self.identity:
            return
        now = micro_time()
        spec.update({"holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": now, "acquireTime": now})
        body = dict(lease)
        body["spec"] = spec
        try:
            await asyncio.wait_for(self.client.update(LEASES, body, self.namespace), 5)
        except Exception as e:  # noqa: BLE001
            log.info("releasing lease %s/%s: %s", self.namespace, self.name, e)
