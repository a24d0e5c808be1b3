"""ServiceAccount admission (upstream plugin/pkg/admission/serviceaccount).

A pod without ``serviceAccountName`` gets ``default``; the account must exist (``default`` is
created on the spot when missing, as the ServiceAccount controller would have). Unless
``automountServiceAccountToken`` is false (on the pod, else on the account), the pod gets the
projected volume ``kube-api-access-<5 chars>``: a bound ``serviceAccountToken`` (3607 s, path
``token``), ``ca.crt`` from the namespace's ``kube-root-ca.crt`` ConfigMap, and ``namespace``
from the downward API, mounted read-only at /var/run/secrets/kubernetes.io/serviceaccount in
every container. Mirror pods (static pods from a kubelet) are left alone.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from hyperkube.api.errors import ApiError
from hyperkube.api.registry import resource
from hyperkube.apiserver.admission.common import forbidden

if TYPE_CHECKING:
    from hyperkube.apiserver.admission.common import Context
    from hyperkube.apiserver.rest import Registry
    from hyperkube.apiserver.security import Security

MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
_SUFFIX = "bcdfghjklmnpqrstvwxz2456789"  # upstream's generateName alphabet


def random_suffix(n: int = 5) -> str:
    return "".join(random.choices(_SUFFIX, k=n))  # a volume name, not a secret: no CSPRNG needed


ROOT_CA = "kube-root-ca.crt"
MIRROR = "kubernetes.io/config.mirror"


def token_volume(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": ROOT_CA, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {
                    "downwardAPI": {
                        "items": [
                            {
                                "path": "namespace",
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                            }
                        ]
                    }
                },
            ],
        },
    }


async def _get(reg: Registry, plural: str, ns: str, name: str) -> dict[str, Any] | None:
    try:
        return await reg.get(resource(plural), ns, name)
    except ApiError as e:
        if e.code == 404:
            return None
        raise


async def ensure_default_account(reg: Registry, ns: str) -> dict[str, Any] | None:
    sa = await _get(reg, "serviceaccounts", ns, "default")
    if sa is not None:
        return sa
    try:
        return await reg.create(
            resource("serviceaccounts"),
            ns,
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}},
        )
    except ApiError as e:
        if e.code == 409:
            return await _get(reg, "serviceaccounts", ns, "default")
        if e.code in (403, 404):  # namespace missing or terminating
            return None
        raise


async def ensure_root_ca(reg: Registry, security: Security | None, ns: str) -> None:
    if security is None or security.pki is None:
        return
    if await _get(reg, "configmaps", ns, ROOT_CA) is not None:
        return
    with open(security.pki.ca.cert) as f:
        ca = f.read()
    try:
        await reg.create(
            resource("configmaps"),
            ns,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": ROOT_CA, "annotations": {"kubernetes.io/description": _DESCRIPTION}},
                "data": {"ca.crt": ca},
            },
        )
    except ApiError as e:
        if e.code not in (409, 403, 404):
            raise


_DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints "
    "such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across "
    "distributions of Kubernetes clusters."
)


async def reconcile_namespaces(reg: Registry, security: Security | None) -> None:
    """Every active namespace has its default ServiceAccount and kube-root-ca.crt ConfigMap."""
    from hyperkube.apiserver.rest import ListOptions

    namespaces, _ = await reg.list(resource("namespaces"), None, ListOptions())
    for nso in namespaces:
        md = nso.get("metadata") or {}
        if md.get("deletionTimestamp"):
            continue
        await ensure_default_account(reg, md.get("name", ""))
        await ensure_root_ca(reg, security, md.get("name", ""))


async def admit(ctx: Context, pod: dict[str, Any]) -> None:
    md = pod.get("metadata") or {}
    if (md.get("annotations") or {}).get(MIRROR):
        return
    spec = pod.setdefault("spec", {})
    name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec["serviceAccountName"] = name
    spec["serviceAccount"] = name
    reg = ctx.registry
    ns = ctx.namespace

    async def load() -> dict[str, Any] | None:
        if name == "default":
            return await ensure_default_account(reg, ns)
        return await _get(reg, "serviceaccounts", ns, name)

    sa = await ctx.cache.get(("serviceaccounts", ns, name), load)
    if sa is None:
        ctx.cache.invalidate("serviceaccounts", ns)  # a miss is not cached
    if sa is None:
        raise forbidden(
            ctx,
            pod,
            f'error looking up service account {ctx.namespace}/{name}: serviceaccount "{name}" not found',
        )
    automount = spec.get("automountServiceAccountToken")
    if automount is None:
        automount = sa.get("automountServiceAccountToken")
    if automount is False:
        return
    containers = list(spec.get("initContainers") or []) + list(spec.get("containers") or [])
    if any(
        (m.get("mountPath") or "").rstrip("/") == MOUNT_PATH
        for c in containers
        for m in c.get("volumeMounts") or []
    ):
        return
    await ctx.cache.get(("configmaps", ns, ROOT_CA), lambda: ensure_root_ca(reg, ctx.security, ns))
    existing = {v.get("name") for v in spec.get("volumes") or []}
    vol = f"kube-api-access-{random_suffix()}"
    while vol in existing:
        vol = f"kube-api-access-{random_suffix()}"
    spec.setdefault("volumes", []).append(token_volume(vol))
    for c in containers:
        c.setdefault("volumeMounts", []).append({"name": vol, "readOnly": True, "mountPath": MOUNT_PATH})
