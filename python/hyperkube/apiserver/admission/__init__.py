"""Admission: the plugins every create and update passes before validation and storage.

Upstream's order (``--enable-admission-plugins``), each a small module with plain functions
``admit(ctx, obj, old) -> None`` that mutate the object in place or raise an
:class:`~hyperkube.api.errors.ApiError` (a 403 ``Forbidden`` Status with upstream's wording):

- NamespaceLifecycle: in :mod:`hyperkube.apiserver.rest` (no creates in a missing or
  terminating namespace).
- :mod:`.serviceaccount`: the default ServiceAccount, and the ``kube-api-access-*`` projected
  volume (token, ``kube-root-ca.crt``, namespace) mounted at
  /var/run/secrets/kubernetes.io/serviceaccount.
- :mod:`.tolerations` (DefaultTolerationSeconds): not-ready/unreachable NoExecute for 300 s.
- :mod:`.limits` (LimitRanger): LimitRange defaults and min/max per container.
- :mod:`.priority` (Priority): priorityClassName -> priority; built-in system classes; globalDefault.
- :mod:`.noderestriction` (NodeRestriction): a kubelet changes only its own Node and its pods.
- :mod:`.quota` (ResourceQuota, last, as upstream): usage checked against every quota in the
  namespace and recorded in the quota's status.
- CertificateSigningRequests get their requester from the request's user, and kubelet client
  CSRs from bootstrap tokens are approved and signed (:mod:`hyperkube.apiserver.certificates`).

:class:`Chain` is what :class:`~hyperkube.apiserver.rest.Registry` calls (its ``admission``
hook); the requesting user comes from the :data:`request_user` context variable set by the
security middleware (None for the API server's own writes, which are not restricted).
Every new namespace gets its ``default`` ServiceAccount and ``kube-root-ca.crt`` ConfigMap
as it is created (:meth:`Chain.after_create`), and a background loop keeps every quota's
``status.used`` current.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from hyperkube.api.registry import Resource
from hyperkube.apiserver import certificates
from hyperkube.apiserver.admission import (
    limits,
    noderestriction,
    priority,
    quota,
    serviceaccount,
    tolerations,
)
from hyperkube.apiserver.admission.common import Cache, Context, Obj, forbidden, request_user

if TYPE_CHECKING:
    from hyperkube.apiserver.rest import Registry
    from hyperkube.apiserver.security import Security

__all__ = ["Cache", "Chain", "Context", "forbidden", "request_user"]

log = logging.getLogger("hyperkube.apiserver.admission")


class Chain:
    def __init__(self, registry: Registry, security: Security | None = None, resync: float = 5.0) -> None:
        self.registry = registry
        self.security = security
        self.resync = resync
        self.cache = Cache()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from hyperkube.apiserver.admission import priority, serviceaccount

        await priority.ensure_builtin(self.registry)
        await serviceaccount.reconcile_namespaces(self.registry, self.security)
        self.registry.after_create = self.after_create
        self._task = asyncio.create_task(self._loop())

    async def after_create(self, res: Resource, obj: Obj) -> None:
        """A new namespace gets its default ServiceAccount and kube-root-ca.crt at once (the
        ServiceAccount and root-CA-publisher controllers' job upstream)."""
        if res.plural in (
            "serviceaccounts",
            "limitranges",
            "resourcequotas",
            "priorityclasses",
            "configmaps",
        ):
            self.cache.invalidate(res.plural, (obj.get("metadata") or {}).get("namespace") or "")
        if res.plural == "namespaces" and res.group == "":
            name = (obj.get("metadata") or {}).get("name", "")
            await serviceaccount.ensure_default_account(self.registry, name)
            await serviceaccount.ensure_root_ca(self.registry, self.security, name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _loop(self) -> None:
        while True:
            try:
                await quota.reconcile(self.registry)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("admission background reconcile")
            await asyncio.sleep(self.resync)

    async def admit(
        self,
        operation: str,
        res: Resource,
        namespace: str | None,
        obj: Obj,
        old: Obj | None,
        dry_run: bool = False,
        subresource: str | None = None,
    ) -> Obj:
        ctx = Context(
            operation,
            res,
            namespace or "",
            subresource or "",
            request_user.get(),
            dry_run,
            self.registry,
            self.security,
            self.cache,
        )
        plural = res.plural
        if plural in ("serviceaccounts", "limitranges", "resourcequotas", "priorityclasses", "configmaps"):
            self.cache.invalidate(plural, namespace or "")
        if plural == "pods" and operation == "CREATE":
            await serviceaccount.admit(ctx, obj)
            tolerations.admit(ctx, obj)
            await limits.admit(ctx, obj)
            await priority.admit(ctx, obj)
        if plural == "priorityclasses":
            await priority.admit_class(ctx, obj, old)
        await noderestriction.admit(ctx, obj, old)
        if plural == "certificatesigningrequests":
            certificates.admit(ctx, obj, old)
        if plural == "resourcequotas" and operation == "CREATE":
            await quota.init_status(ctx, obj)
        if operation == "CREATE":
            await quota.admit(ctx, obj)
        return obj
