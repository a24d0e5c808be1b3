"""hyperkube.api: the Kubernetes object model as plain dicts.

Resources are JSON-shaped dicts (exactly what the wire carries); this package knows their
registry (:mod:`.registry`), defaulting (:mod:`.defaults`), validation (:mod:`.validation`),
patching (:mod:`.patch`), server-side tables (:mod:`.tables`), OpenAPI documents (:mod:`.openapi`)
and storage encoding (:mod:`.serialization`). It imports no component, so every component and the
API server share it.
"""
