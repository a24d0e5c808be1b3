"""The API server's security layer: who is calling, may they, how much, and the record of it.

One aiohttp middleware, outermost, runs upstream's filter chain in its order for every request:

1. **authentication** (:class:`~.auth.authn.Authenticator`): the TLS client certificate (the
   TLS layer verified it against the cluster CA; CN = user, O = groups), else a bearer token
   (static token file, ServiceAccount JWT, bootstrap token). A request without credentials is
   ``system:anonymous`` on /healthz, /livez, /readyz and /version only, and 401 elsewhere; bad
   credentials are 401 everywhere (a ``Status`` whose message is just ``Unauthorized``, as
   upstream: the reason is logged, not told).
2. **max in-flight** (upstream ``--max-requests-inflight`` 400 / ``--max-mutating-requests-inflight``
   200): beyond them 429 with ``Retry-After``; long-running requests (watch, follow logs) take no
   slot but are capped per user; ``system:masters`` are exempt, as upstream's legacy filter.
3. **authorization**: the Node authorizer, then RBAC (both kept in memory from the store by
   :mod:`.mirror`); denied is 403 with upstream's message.
4. the request itself, under a timeout (60 s, upstream's ``--request-timeout``) unless it is
   long-running; then the **audit** line (JSON: user, groups, verb, resource, namespace, name,
   code; never a body, so Secret data never reaches it).

The user is also put in a context variable (:data:`.admission.request_user`) for admission.
``--insecure-http`` (development only, loopback only, logged loudly) skips TLS; requests without
credentials are then treated as ``system:masters``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import ssl
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from hyperkube.api import errors
from hyperkube.api.errors import ApiError
from hyperkube.api.registry import resource
from hyperkube.api.serialization import to_json
from hyperkube.apiserver import (
    admission,
    protobuf_security,  # noqa: F401  (registers message layouts)
)
from hyperkube.apiserver.auth import policy
from hyperkube.apiserver.auth.authn import Authenticator, TokenSigner, Unauthorized, load_token_file
from hyperkube.apiserver.auth.node import NodeAuthorizer, node_name
from hyperkube.apiserver.auth.pki import PKI
from hyperkube.apiserver.auth.rbac import MASTERS_GROUP, Attributes, Decision, RBACAuthorizer, UserInfo
from hyperkube.apiserver.mirror import Mirror
from hyperkube.apiserver.requestinfo import attributes, is_long_running, is_mutating

if TYPE_CHECKING:
    from hyperkube.apiserver.app import APIServer

log = logging.getLogger("hyperkube.apiserver.security")

DISCONNECT_POLL = 3.0  # seconds between checks that a watch's client is still connected
PUBLIC_PATHS = ("/healthz", "/livez", "/readyz", "/version")
INSECURE_ADMIN = UserInfo("system:admin", (MASTERS_GROUP, "system:authenticated"))
_RBAC_PREFIXES = [
    "/registry/clusterroles/",
    "/registry/roles/",
    "/registry/clusterrolebindings/",
    "/registry/rolebindings/",
]


@dataclass
class SecurityOptions:
    pki_dir: str | None = None  # the cluster PKI (CA, SA key); None: no TLS, no SA tokens
    insecure: bool = False  # plain HTTP: requests without credentials are system:masters
    token_auth_file: str | None = None
    audit_log_path: str | None = None
    audit_log_maxsize_mb: int = 100
    audit_log_maxbackup: int = 3
    max_requests_inflight: int = 400
    max_mutating_requests_inflight: int = 200
    max_watches_per_user: int = 250
    request_timeout: float = 60.0
    service_account_issuer_audiences: tuple[str, ...] = ()


def is_public(path: str) -> bool:
    p = path.rstrip("/") or "/"
    return any(p == x or p.startswith(x + "/") for x in PUBLIC_PATHS)


def server_ssl_context(pki: PKI) -> ssl.SSLContext:
    """TLS 1.2+, the API serving certificate, client certificates requested (optional) and verified
    against the cluster CA. A client certificate from another CA, or expired, fails the handshake:
    Python's ssl module cannot accept the connection and ignore the certificate, as Go's TLS with
    VerifyClientCertIfGiven + a later 401 would."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    pair = pki.pair("apiserver")
    ctx.load_cert_chain(pair.cert, pair.key)
    ctx.load_verify_locations(pki.ca.cert)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def peer_identity(request: web.Request) -> tuple[str, list[str]] | None:
    """(CN, [O...]) of the verified client certificate, or None."""
    transport = request.transport
    if transport is None:
        return None
    cert = transport.get_extra_info("peercert")
    if not cert:
        sslobj = transport.get_extra_info("ssl_object")
        cert = sslobj.getpeercert() if sslobj is not None else None
    if not cert:
        return None
    cn, orgs = "", []
    for rdn in cert.get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                cn = v
            elif k == "organizationName":
                orgs.append(v)
    return (cn, orgs) if cn else None


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def forbidden(a: Attributes, reason: str) -> ApiError:
    if not a.resource_request:
        return ApiError(403, "Forbidden", f"forbidden: {reason}")
    what = f"{a.resource}.{a.api_group}" if a.api_group else a.resource
    if a.name:
        what = f'{what} "{a.name}"'
    e = ApiError(403, "Forbidden", f"{what} is forbidden: {reason}", kind=a.resource, group=a.api_group)
    if a.name:
        e.name = a.name
    return e


class AuditLog:
    """JSON lines, buffered and flushed every second (and at shutdown); rotated to
    ``<path>.1`` ... ``<path>.<max_backups>`` when larger than ``max_bytes`` (as upstream's
    --audit-log-maxsize / --audit-log-maxbackup)."""

    def __init__(self, path: str, max_bytes: int = 100 << 20, max_backups: int = 3) -> None:
        self.path, self.max_bytes, self.max_backups = path, max_bytes, max_backups
        self.f = self._open()
        self._task: asyncio.Task[None] | None = None

    def _open(self) -> Any:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return os.fdopen(fd, "a", buffering=1 << 16)

    def flush(self) -> None:
        self.f.flush()
        if self.max_bytes and self.f.tell() > self.max_bytes:
            self.f.close()
            for i in range(self.max_backups - 1, 0, -1):
                if os.path.exists(f"{self.path}.{i}"):
                    os.replace(f"{self.path}.{i}", f"{self.path}.{i + 1}")
            if self.max_backups > 0:
                os.replace(self.path, f"{self.path}.1")
            else:
                os.unlink(self.path)
            self.f = self._open()

    def write(self, entry: dict[str, Any]) -> None:
        self.f.write(json.dumps(entry, separators=(",", ":")) + "\n")

    async def run(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.flush()

    def start(self) -> None:
        self._task = asyncio.create_task(self.run())

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        with contextlib.suppress(Exception):
            self.flush()
            self.f.close()


class Security:
    def __init__(self, options: SecurityOptions) -> None:
        self.options = options
        self.pki = PKI(options.pki_dir) if options.pki_dir else None
        self.insecure = options.insecure or self.pki is None
        self.signer: TokenSigner | None = None
        if self.pki is not None:
            with open(self.pki.sa_key, "rb") as f:
                self.signer = TokenSigner(f.read())
        static = load_token_file(options.token_auth_file) if options.token_auth_file else {}
        self.authn = Authenticator(
            static_tokens=static,
            signer=self.signer,
            lookup=self._lookup_uid,
            bootstrap=self._bootstrap_secret,
            **(
                {"audiences": options.service_account_issuer_audiences}
                if options.service_account_issuer_audiences
                else {}
            ),
        )
        self.rbac = RBACAuthorizer()
        self._rbac_dirty = True
        self.pods_by_node: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self.node_authz = NodeAuthorizer(lambda n: self.pods_by_node.get(n, {}).values())
        self.audit = (
            AuditLog(options.audit_log_path, options.audit_log_maxsize_mb << 20, options.audit_log_maxbackup)
            if options.audit_log_path
            else None
        )
        self.inflight = 0
        self.inflight_mutating = 0
        self.watches: dict[str, int] = defaultdict(int)
        self.server: APIServer | None = None
        self.rbac_mirror: Mirror | None = None
        self.pod_mirror: Mirror | None = None
        self.admission: admission.Chain | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self, server: APIServer) -> None:
        self.server = server
        reg = server.registry
        await self.ensure_policy()
        self.rbac_mirror = Mirror(server.store, _RBAC_PREFIXES, self._rbac_changed)
        await self.rbac_mirror.start()
        self.pod_mirror = Mirror(server.store, ["/registry/pods/"], self._pod_changed)
        await self.pod_mirror.start()
        self.admission = admission.Chain(reg, self)
        reg.admission = self.admission.admit
        await self.admission.start()
        if self.audit is not None:
            self.audit.start()

    async def stop(self) -> None:
        for m in (self.rbac_mirror, self.pod_mirror):
            if m is not None:
                await m.stop()
        if self.admission is not None:
            await self.admission.stop()
        if self.audit is not None:
            self.audit.close()

    async def ensure_policy(self) -> None:
        """Upstream's default ClusterRoles and bindings, created when missing (never overwritten)."""
        assert self.server is not None
        reg = self.server.registry
        roles = resource("clusterroles", "rbac.authorization.k8s.io")
        bindings = resource("clusterrolebindings", "rbac.authorization.k8s.io")
        for res, objs in (
            (roles, policy.cluster_roles()),
            (bindings, policy.cluster_role_bindings()),
        ):
            for obj in objs:
                try:
                    await reg.create(res, None, obj)
                except ApiError as e:
                    if e.code != 409:
                        raise
        await self._ensure_cluster_info()

    async def _ensure_cluster_info(self) -> None:
        """kube-public/cluster-info (server URL + CA, as kubeadm) for nodes joining with a
        bootstrap token, readable by system:bootstrappers."""
        assert self.server is not None
        if self.pki is None:
            return
        import yaml

        from hyperkube.apiserver.credentials import kubeconfig_doc

        reg = self.server.registry
        o = self.server.options
        url = f"https://{o.advertise_address}:{o.port}"
        doc = kubeconfig_doc(url, self.pki.ca.cert)
        doc["users"], doc["contexts"], doc["current-context"] = [], [], ""
        rbac = "rbac.authorization.k8s.io"
        objs = [
            (
                resource("configmaps"),
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "cluster-info"},
                    "data": {"kubeconfig": yaml.safe_dump(doc, sort_keys=False)},
                },
            ),
            (
                resource("roles", rbac),
                {
                    "apiVersion": f"{rbac}/v1",
                    "kind": "Role",
                    "metadata": {"name": "kubeadm:bootstrap-signer-clusterinfo"},
                    "rules": [policy.rule(["get"], [""], ["configmaps"], ["cluster-info"])],
                },
            ),
            (
                resource("rolebindings", rbac),
                {
                    "apiVersion": f"{rbac}/v1",
                    "kind": "RoleBinding",
                    "metadata": {"name": "kubeadm:bootstrap-signer-clusterinfo"},
                    "roleRef": {
                        "apiGroup": rbac,
                        "kind": "Role",
                        "name": "kubeadm:bootstrap-signer-clusterinfo",
                    },
                    "subjects": [policy.group("system:bootstrappers")],
                },
            ),
        ]
        for res, obj in objs:
            try:
                await reg.create(res, "kube-public", obj)
            except ApiError as e:
                if e.code != 409:
                    raise

    def _rbac_changed(self, prefix: str, key: str, old: Any, new: Any) -> None:
        self._rbac_dirty = True

    def _pod_changed(self, prefix: str, key: str, old: Any, new: Any) -> None:
        for obj, add in ((old, False), (new, True)):
            if obj is None:
                continue
            node = (obj.get("spec") or {}).get("nodeName")
            if not node:
                continue
            if add:
                self.pods_by_node[node][key] = {"metadata": obj.get("metadata") or {}, "spec": obj["spec"]}
            else:
                self.pods_by_node[node].pop(key, None)
                if not self.pods_by_node[node]:
                    del self.pods_by_node[node]

    def _refresh_rbac(self) -> None:
        if not self._rbac_dirty or self.rbac_mirror is None:
            return
        o = self.rbac_mirror.objects
        self.rbac.set_objects(
            o["/registry/clusterroles/"].values(),
            o["/registry/roles/"].values(),
            o["/registry/clusterrolebindings/"].values(),
            o["/registry/rolebindings/"].values(),
        )
        self._rbac_dirty = False

    # --- authentication callbacks --------------------------------------------------------------

    async def _lookup_uid(self, kind: str, namespace: str, name: str) -> str | None:
        assert self.server is not None
        try:
            obj = await self.server.registry.get(resource(kind), namespace, name)
        except ApiError:
            return None
        md = obj.get("metadata") or {}
        if kind == "pods" and md.get("deletionTimestamp") and md.get("deletionGracePeriodSeconds") == 0:
            return None
        return md.get("uid")

    async def _bootstrap_secret(self, token_id: str) -> dict[str, str] | None:
        assert self.server is not None
        try:
            s = await self.server.registry.get(
                resource("secrets"), "kube-system", f"bootstrap-token-{token_id}"
            )
        except ApiError:
            return None
        if s.get("type") != "bootstrap.kubernetes.io/token":
            return None
        out = {}
        for k, v in (s.get("data") or {}).items():
            with contextlib.suppress(Exception):
                out[k] = base64.b64decode(v).decode()
        return out

    async def authenticate(self, request: web.Request) -> UserInfo:
        authz = request.headers.get("Authorization")
        cert = peer_identity(request)
        if self.insecure and not authz and cert is None:
            return INSECURE_ADMIN
        try:
            user = await self.authn.authenticate(authz, cert)
        except Unauthorized as e:
            log.info("401 for %s %s from %s: %s", request.method, request.path, request.remote, e)
            raise unauthorized() from None
        if user.name == "system:anonymous" and not is_public(request.path):
            raise unauthorized()
        return user

    async def impersonate(self, request: web.Request, user: UserInfo) -> UserInfo:
        """Upstream's impersonation filter: ``impersonate`` on users/groups/serviceaccounts."""
        name = request.headers.get("Impersonate-User", "")
        groups = request.headers.getall("Impersonate-Group", [])
        if not name:
            raise errors.bad_request("requested impersonation of groups without impersonating a user")
        checks = []
        if name.startswith("system:serviceaccount:") and name.count(":") == 3:
            _, _, ns, sa = name.split(":")
            checks.append(Attributes(user, "impersonate", namespace=ns, resource="serviceaccounts", name=sa))
            default_groups = ("system:serviceaccounts", f"system:serviceaccounts:{ns}")
        else:
            checks.append(Attributes(user, "impersonate", resource="users", name=name))
            default_groups = ()
        checks += [Attributes(user, "impersonate", resource="groups", name=g) for g in groups]
        for a in checks:
            d = await self.authorize(a)
            if not d.allowed:
                raise forbidden(a, d.reason)
        all_groups = tuple(groups) if groups else default_groups
        if name != "system:anonymous" and "system:authenticated" not in all_groups:
            all_groups = (*all_groups, "system:authenticated")
        return UserInfo(name, all_groups)

    # --- authorization --------------------------------------------------------------------------

    def _decide(self, a: Attributes) -> Decision:
        d = self.node_authz.authorize(a)
        if d is not None:
            return d
        self._refresh_rbac()
        return self.rbac.authorize(a)

    async def authorize(self, a: Attributes) -> Decision:
        d = self._decide(a)
        if d.allowed or MASTERS_GROUP in a.user.groups:
            return d
        # maybe the binding (or the pod, for a node) was written a moment ago: look again
        if node_name(a) is not None and a.namespace and a.name:
            if await self._node_may_read(a):
                return Decision(True, "node authorizer: referenced by a pod bound to the node")
            return d
        if self.rbac_mirror is not None:
            await self.rbac_mirror.resync()
            d = self._decide(a)
        return d

    async def _node_restriction_delete(self, a: Attributes) -> None:
        """NodeRestriction for deletes (which do not pass the admission chain here): a kubelet
        deletes only pods bound to itself, and never Nodes other than its own."""
        node = node_name(a)
        if node is None or a.verb not in ("delete", "deletecollection") or not a.resource_request:
            return
        if a.api_group != "":
            return
        if a.resource == "nodes" and a.name != node:
            raise forbidden(a, f'node "{node}" is not allowed to delete node "{a.name}"')
        if a.resource == "pods":
            if a.verb == "deletecollection":
                raise forbidden(a, f'node "{node}" can only delete pods one at a time')
            assert self.server is not None
            try:
                pod = await self.server.registry.get(resource("pods"), a.namespace, a.name)
            except ApiError:
                return  # the handler answers 404
            if (pod.get("spec") or {}).get("nodeName") != node:
                raise forbidden(a, f'node "{node}" can only delete pods with spec.nodeName set to itself')

    async def _node_may_read(self, a: Attributes) -> bool:
        """The Node authorizer's graph, read from the store: a pod in the namespace bound to the
        node that refers to the object (for pods bound after the in-memory index was updated)."""
        from hyperkube.apiserver.auth.node import _REFERENCED, references

        assert self.server is not None
        if not (a.resource in _REFERENCED or (a.resource == "serviceaccounts" and a.subresource == "token")):
            return False
        if a.verb not in ("get", "create"):
            return False
        node = node_name(a)
        from hyperkube.apiserver.rest import ListOptions

        items, _ = await self.server.registry.list(resource("pods"), a.namespace, ListOptions())
        for pod in items:
            if (pod.get("spec") or {}).get("nodeName") == node and (a.resource, a.name) in references(pod):
                return True
        return False

    # --- the middleware ---------------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        t0 = time.time()
        user: UserInfo | None = None
        a: Attributes | None = None
        status = 500
        slot: str | None = None
        watch_user: str | None = None
        try:
            try:
                user = await self.authenticate(request)
                if "Impersonate-User" in request.headers or "Impersonate-Group" in request.headers:
                    user = await self.impersonate(request, user)
                request["user"] = user
                a = attributes(user, request.method, request.path, request.query)
                long_running = is_long_running(a, request.query)
                exempt = MASTERS_GROUP in user.groups
                if long_running:
                    if a.verb == "watch" and not exempt:
                        if self.watches[user.name] >= self.options.max_watches_per_user:
                            raise ApiError(
                                429,
                                "TooManyRequests",
                                f"too many open watches for user {user.name!r} (limit "
                                f"{self.options.max_watches_per_user}); close some and retry",
                                retry_after=1,
                            )
                        self.watches[user.name] += 1
                        watch_user = user.name
                elif not exempt:
                    if is_mutating(a):
                        if self.inflight_mutating >= self.options.max_mutating_requests_inflight:
                            raise _too_many()
                        self.inflight_mutating += 1
                        slot = "mutating"
                    else:
                        if self.inflight >= self.options.max_requests_inflight:
                            raise _too_many()
                        self.inflight += 1
                        slot = "readonly"
                d = await self.authorize(a)
                if not d.allowed:
                    raise forbidden(a, d.reason)
                await self._node_restriction_delete(a)
                token = admission.request_user.set(user)
                try:
                    special = self._special(request, a)
                    call = special if special is not None else handler
                    if long_running:
                        monitor = asyncio.create_task(_cancel_on_disconnect(request, asyncio.current_task()))
                        try:
                            resp = await call(request)
                        finally:
                            monitor.cancel()
                    else:
                        try:
                            async with asyncio.timeout(self.options.request_timeout):
                                resp = await call(request)
                        except TimeoutError:
                            raise ApiError(
                                504,
                                "Timeout",
                                "Timeout: request did not complete within requested timeout - "
                                "context deadline exceeded",
                                retry_after=1,
                            ) from None
                finally:
                    admission.request_user.reset(token)
            except ApiError as e:
                from hyperkube.apiserver.app import error_response

                resp = error_response(e)
            status = resp.status
            return resp
        except web.HTTPException as e:
            status = e.status
            raise
        finally:
            if slot == "mutating":
                self.inflight_mutating -= 1
            elif slot == "readonly":
                self.inflight -= 1
            if watch_user is not None:
                self.watches[watch_user] -= 1
                if self.watches[watch_user] <= 0:
                    del self.watches[watch_user]
            if self.audit is not None:
                self._audit(request, user, a, status, t0)

    def _audit(
        self, request: web.Request, user: UserInfo | None, a: Attributes | None, status: int, t0: float
    ) -> None:
        assert self.audit is not None
        if a is None:  # rejected before authorization: still record what was asked
            a = attributes(user or UserInfo(""), request.method, request.path, request.query)
        entry: dict[str, Any] = {
            "ts": round(t0, 3),
            "user": user.name if user else "",
            "groups": list(user.groups) if user else [],
            "sourceIP": request.remote or "",
            "verb": a.verb if a else request.method.lower(),
            "code": status,
        }
        if a is not None and a.resource_request:
            entry.update(
                apiGroup=a.api_group,
                resource=a.resource,
                subresource=a.subresource,
                namespace=a.namespace,
                name=a.name,
            )
        else:
            entry["path"] = request.path
        entry["ms"] = round((time.time() - t0) * 1000, 1)
        self.audit.write(entry)

    def _special(self, request: web.Request, a: Attributes) -> Any:
        """Endpoints this layer serves itself: access reviews, TokenRequest, CSR approval."""
        if not a.resource_request:
            return None
        from hyperkube.apiserver import certificates, reviews

        if a.api_group in ("authorization.k8s.io", "authentication.k8s.io") and a.verb == "create":
            return lambda req: reviews.serve(self, req, a)
        if a.resource == "serviceaccounts" and a.subresource == "token" and a.api_group == "":
            return lambda req: reviews.token_request(self, req, a)
        if a.api_group == "certificates.k8s.io" and a.subresource == "approval":
            return lambda req: certificates.approval(self, req, a)
        return None


async def _cancel_on_disconnect(request: web.Request, task: asyncio.Task[Any] | None) -> None:
    """aiohttp does not cancel a handler whose client went away; a watch that waits for events
    would hold its per-user watch slot (and its buffers) until its timeout. Poll the connection."""
    while True:
        await asyncio.sleep(DISCONNECT_POLL)
        t = request.transport
        if t is None or t.is_closing():
            if task is not None:
                task.cancel()
            return


def _too_many() -> ApiError:
    return ApiError(429, "TooManyRequests", "Too many requests, please try again later.", retry_after=1)


def json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=to_json(obj), status=status, content_type="application/json")
