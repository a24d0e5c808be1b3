"""ServiceAccount controller: a ``default`` ServiceAccount in every active namespace.

Namespaces (added or updated) and deletions of a ``default`` ServiceAccount enqueue the
namespace; ``reconcile`` creates the account when the cache lacks it and the namespace is not
terminating (AlreadyExists is success). Token Secrets are not created: bound service-account
tokens come with the security work, as in current upstream.
"""

from __future__ import annotations

from hyperkube.client import NAMESPACES, SERVICEACCOUNTS, AlreadyExists, Forbidden, NotFound
from hyperkube.controllers.base import ControllerContext, Obj, QueueController, is_deleting, name_of, ns_of

MANAGED = ("default",)


class ServiceAccountController(QueueController):
    name = "serviceaccount"

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.ns_informer = ctx.factory.informer(NAMESPACES)
        self.sa_informer = ctx.factory.informer(SERVICEACCOUNTS)
        self.informers = (self.ns_informer, self.sa_informer)
        self.ns_informer.add_event_handler(self._ns, lambda o, n: self._ns(n), None)
        self.sa_informer.add_event_handler(None, None, self._sa_deleted)

    def _ns(self, ns: Obj) -> None:
        if not is_deleting(ns):
            self.queue.add(name_of(ns))

    def _sa_deleted(self, sa: Obj) -> None:
        if name_of(sa) in MANAGED:
            self.queue.add(ns_of(sa))

    async def reconcile(self, key: str) -> None:
        ns = self.ns_informer.get(key)
        if ns is None or is_deleting(ns) or (ns.get("status") or {}).get("phase") == "Terminating":
            return
        for sa in MANAGED:
            if self.sa_informer.get(sa, key) is not None:
                continue
            body = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": key}}
            try:
                await self.client.create(SERVICEACCOUNTS, body, key)
            except AlreadyExists:
                pass
            except (NotFound, Forbidden):
                return  # the namespace went away or is terminating
