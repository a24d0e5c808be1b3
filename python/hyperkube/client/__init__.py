"""hyperkube.client: the library every component talks to the API server through.

- :class:`Client` (``rest``): async REST client, every verb on any resource, typed errors
  (``errors``), ``watch()`` streams, paged lists; ``Client.from_kubeconfig(path)``.
- :class:`SharedInformerFactory` / :class:`SharedInformer` (``informer``): list + watch into a
  local indexed cache (``store``) with add/update/delete handlers, resync and re-list on 410.
- :class:`WorkQueue` (``workqueue``): rate-limited, deduplicating queue of keys + ``run_worker``.
- :class:`LeaderElector` (``leaderelection``): leader election on a coordination.k8s.io Lease.
- :class:`EventRecorder` (``events``): core/v1 Events with count aggregation.

Usage::

    client = Client.from_kubeconfig("kubeconfig")
    factory = SharedInformerFactory(client)
    pods = factory.informer(PODS, indexers={"node": index_by_field("spec.nodeName")})
    pods.add_event_handler(on_add=..., on_update=..., on_delete=...)
    factory.start()
    await factory.wait_for_sync()
    pods.by_index("node", "node-1")
"""

from hyperkube.client import errors
from hyperkube.client.errors import (
    AlreadyExists,
    ApiError,
    Conflict,
    Expired,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
)
from hyperkube.client.events import NORMAL, WARNING, EventRecorder
from hyperkube.client.informer import Reflector, SharedInformer, SharedInformerFactory, wait_for_sync
from hyperkube.client.leaderelection import LeaderElector
from hyperkube.client.resources import (
    CONFIGMAPS,
    DAEMONSETS,
    DEPLOYMENTS,
    ENDPOINTS,
    ENDPOINTSLICES,
    EVENTS,
    LEASES,
    NAMESPACES,
    NODES,
    PODS,
    REPLICASETS,
    SECRETS,
    SERVICEACCOUNTS,
    SERVICES,
    STATEFULSETS,
    Resource,
    resource,
)
from hyperkube.client.rest import Client, KubeConfig, WatchEvent, load_kubeconfig
from hyperkube.client.store import (
    Store,
    index_by_controller_uid,
    index_by_field,
    index_by_label,
    index_by_namespace,
    index_by_owner_uid,
    meta_namespace_key,
    split_key,
)
from hyperkube.client.workqueue import ShutDown, WorkQueue, default_controller_rate_limiter, run_worker

__all__ = [
    "CONFIGMAPS",
    "DAEMONSETS",
    "DEPLOYMENTS",
    "ENDPOINTS",
    "ENDPOINTSLICES",
    "EVENTS",
    "LEASES",
    "NAMESPACES",
    "NODES",
    "NORMAL",
    "PODS",
    "REPLICASETS",
    "SECRETS",
    "SERVICEACCOUNTS",
    "SERVICES",
    "STATEFULSETS",
    "WARNING",
    "AlreadyExists",
    "ApiError",
    "Client",
    "Conflict",
    "EventRecorder",
    "Expired",
    "Forbidden",
    "Gone",
    "Invalid",
    "KubeConfig",
    "LeaderElector",
    "NotFound",
    "Reflector",
    "Resource",
    "SharedInformer",
    "SharedInformerFactory",
    "ShutDown",
    "Store",
    "WatchEvent",
    "WorkQueue",
    "default_controller_rate_limiter",
    "errors",
    "index_by_controller_uid",
    "index_by_field",
    "index_by_label",
    "index_by_namespace",
    "index_by_owner_uid",
    "load_kubeconfig",
    "meta_namespace_key",
    "resource",
    "run_worker",
    "split_key",
    "wait_for_sync",
]
