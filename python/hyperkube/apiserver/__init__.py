"""hyperkube.apiserver: the Kubernetes REST API over a revisioned store.

``create_app(store, **options)`` builds the aiohttp application (the store must be started);
``serve(store, host, port, ...)`` runs it. ``write_kubeconfig`` writes the kubeconfig clients use.
"""

from __future__ import annotations

from hyperkube.apiserver.app import create_app, serve
from hyperkube.apiserver.kubeconfig import write_kubeconfig

__all__ = ["create_app", "serve", "write_kubeconfig"]
