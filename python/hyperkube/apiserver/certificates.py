"""CertificateSigningRequests (certificates.k8s.io/v1): requester, approval, signing by the CA.

- On create, ``spec.username``/``uid``/``groups``/``extra`` are set from the requesting user
  (what a client sends there is ignored), the PEM request must parse and be self-signed
  correctly, and the spec is immutable afterwards; ``status`` can only change through the
  ``approval`` and ``status`` subresources.
- **Auto-approval** (upstream's csrapproving controller, for node bootstrap): a CSR for the
  ``kubernetes.io/kube-apiserver-client-kubelet`` signer whose subject is
  ``CN=system:node:<name>, O=system:nodes`` with client usages, requested by a bootstrap token
  (group ``system:bootstrappers``) or by that same node renewing, is approved at once.
- **Signing** (upstream's csrsigning controller): approved CSRs for
  ``kubernetes.io/kube-apiserver-client``, ``kubernetes.io/kube-apiserver-client-kubelet`` and
  ``kubernetes.io/kubelet-serving`` are signed by the cluster CA at once, so the create (or the
  approval) response already carries ``status.certificate``.
- ``PUT .../certificatesigningrequests/<name>/approval`` (``kubectl certificate approve|deny``)
  sets the Approved/Denied condition; RBAC decides who may (``update`` on
  ``certificatesigningrequests/approval``).
"""

from __future__ import annotations

import base64
import copy
from typing import TYPE_CHECKING, Any

from aiohttp import web
from cryptography import x509
from cryptography.x509.oid import NameOID

from hyperkube.api import errors
from hyperkube.api.meta import now
from hyperkube.api.registry import resource
from hyperkube.apiserver.auth.rbac import Attributes

if TYPE_CHECKING:
    from hyperkube.apiserver.admission.common import Context
    from hyperkube.apiserver.security import Security

KUBELET_CLIENT = "kubernetes.io/kube-apiserver-client-kubelet"
CLIENT = "kubernetes.io/kube-apiserver-client"
KUBELET_SERVING = "kubernetes.io/kubelet-serving"
SIGNERS = (KUBELET_CLIENT, CLIENT, KUBELET_SERVING)
GROUP = "certificates.k8s.io"


def _invalid(name: str, field: str, msg: str) -> errors.ApiError:
    return errors.invalid(
        "CertificateSigningRequest",
        GROUP,
        name,
        [{"field": field, "reason": "FieldValueInvalid", "message": msg}],
    )


def parse_request(spec: dict[str, Any], name: str) -> x509.CertificateSigningRequest:
    raw = spec.get("request")
    if not isinstance(raw, str) or not raw:
        raise _invalid(name, "spec.request", "Required value")
    try:
        csr = x509.load_pem_x509_csr(base64.b64decode(raw))
    except Exception:
        raise _invalid(
            name,
            "spec.request",
            'Invalid value: "<PEM-encoded CSR>": PEM block type must be CERTIFICATE REQUEST',
        ) from None
    if not csr.is_signature_valid:
        raise _invalid(name, "spec.request", "the request's signature is not valid")
    return csr


def _subject(csr: x509.CertificateSigningRequest) -> tuple[str, list[str]]:
    cn = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return (str(cn[0].value) if cn else "", sorted(str(o.value) for o in orgs))


def is_kubelet_client_bootstrap(csr_obj: dict[str, Any], csr: x509.CertificateSigningRequest) -> bool:
    spec = csr_obj.get("spec") or {}
    if spec.get("signerName") != KUBELET_CLIENT:
        return False
    cn, orgs = _subject(csr)
    if not cn.startswith("system:node:") or orgs != ["system:nodes"] or len(cn) <= len("system:node:"):
        return False
    usages = set(spec.get("usages") or [])
    if not usages <= {"digital signature", "key encipherment", "client auth"} or "client auth" not in usages:
        return False
    groups = spec.get("groups") or []
    return "system:bootstrappers" in groups or spec.get("username") == cn


def admit(ctx: Context, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    name = (obj.get("metadata") or {}).get("name", "")
    spec = obj.setdefault("spec", {})
    if ctx.operation == "UPDATE" and old is not None:
        obj["spec"] = copy.deepcopy(old.get("spec") or {})
        if ctx.subresource != "status":
            obj["status"] = copy.deepcopy(old.get("status") or {})
        return
    if ctx.operation != "CREATE":
        return
    if not isinstance(spec.get("signerName"), str) or not spec.get("signerName"):
        raise _invalid(name, "spec.signerName", "Required value")
    csr = parse_request(spec, name)
    u = ctx.user
    if u is not None:
        spec["username"] = u.name
        spec["groups"] = list(u.groups)
        if u.uid:
            spec["uid"] = u.uid
        else:
            spec.pop("uid", None)
        if u.extra:
            spec["extra"] = u.extra
        else:
            spec.pop("extra", None)
    obj["status"] = {}
    if is_kubelet_client_bootstrap(obj, csr):
        obj["status"]["conditions"] = [
            {
                "type": "Approved",
                "status": "True",
                "reason": "AutoApproved",
                "message": "Auto approving kubelet client certificate after SubjectAccessReview.",
                "lastUpdateTime": now(),
                "lastTransitionTime": now(),
            }
        ]
        if ctx.security is not None and not ctx.dry_run:
            sign_into(ctx.security, obj, csr)


def sign_into(sec: Security, obj: dict[str, Any], csr: x509.CertificateSigningRequest | None = None) -> None:
    spec = obj.get("spec") or {}
    if sec.pki is None or spec.get("signerName") not in SIGNERS:
        return
    status = obj.setdefault("status", {})
    conds = status.get("conditions") or []
    if status.get("certificate") or not any(c.get("type") == "Approved" for c in conds):
        return
    if any(c.get("type") in ("Denied", "Failed") for c in conds):
        return
    csr = csr or parse_request(spec, (obj.get("metadata") or {}).get("name", ""))
    usages = set(spec.get("usages") or [])
    seconds = spec.get("expirationSeconds")
    days = 365
    if isinstance(seconds, int) and not isinstance(seconds, bool) and seconds >= 600:
        days = max(1, min(365, seconds // 86400))
    pem = sec.pki.sign_csr(
        csr,
        client="client auth" in usages,
        server="server auth" in usages and spec.get("signerName") == KUBELET_SERVING,
        days=days,
    )
    status["certificate"] = base64.b64encode(pem).decode()


async def approval(sec: Security, request: web.Request, a: Attributes) -> web.Response:
    from hyperkube.apiserver.app import _response, check_kind, parse_body, read_body

    assert sec.server is not None
    if request.method != "PUT":
        raise errors.method_not_allowed("the server does not allow this method on the requested resource")
    reg = sec.server.registry
    res = resource("certificatesigningrequests", GROUP)
    body = check_kind(
        parse_body(await read_body(request, 1024 * 1024), request.headers.get("Content-Type", "")), res
    )
    # upstream also requires "approve" on the signer (certificates.k8s.io/signers, by name or domain/*)
    cur = await reg.get(res, None, a.name)
    signer = (cur.get("spec") or {}).get("signerName", "")
    names = [signer, signer.split("/")[0] + "/*"]
    decisions = [
        await sec.authorize(Attributes(a.user, "approve", api_group=GROUP, resource="signers", name=n))
        for n in names
    ]
    if not any(d.allowed for d in decisions):
        raise errors.forbidden(
            "certificatesigningrequests",
            GROUP,
            a.name,
            f'user not permitted to approve requests with signerName "{signer}"',
        )
    conds = (body.get("status") or {}).get("conditions") or []
    if not isinstance(conds, list) or not all(isinstance(c, dict) for c in conds):
        raise errors.bad_request("status.conditions must be a list of objects")
    types = {c.get("type") for c in conds}
    if "Approved" in types and "Denied" in types:
        raise _invalid(a.name, "status.conditions", "Approved and Denied conditions are mutually exclusive")
    for c in conds:
        if c.get("type") not in ("Approved", "Denied", "Failed"):
            raise _invalid(a.name, "status.conditions", f"Unsupported value: {c.get('type')!r}")
        c.setdefault("status", "True")
        c.setdefault("lastUpdateTime", now())
        c.setdefault("lastTransitionTime", now())
    rv = (body.get("metadata") or {}).get("resourceVersion")

    def mutate(cur: dict[str, Any]) -> dict[str, Any]:
        if rv and rv != cur["metadata"].get("resourceVersion"):
            raise errors.stale("certificatesigningrequests", GROUP, a.name)
        old_types = {c.get("type") for c in (cur.get("status") or {}).get("conditions") or []}
        if ("Approved" in old_types and "Denied" in types) or ("Denied" in old_types and "Approved" in types):
            raise _invalid(
                a.name, "status.conditions", "Approved and Denied conditions are mutually exclusive"
            )
        cur.setdefault("status", {})["conditions"] = conds
        cur["metadata"].pop("resourceVersion", None)
        sign_into(sec, cur)
        return cur

    obj, _ = await reg._write_update(res, None, a.name, mutate, skip_validation=True)
    return _response(obj)
