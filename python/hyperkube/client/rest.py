"""The async REST client: every verb for any resource, over one aiohttp session.

Design:

- One :class:`Client` owns one ``aiohttp.ClientSession`` (created lazily inside the running loop,
  so a Client can be built before the loop starts) with a connection pool; every call is a
  coroutine. Objects travel as plain ``dict`` (the JSON the server sends), never as generated
  classes: components read the fields they need and the client stays schema-free.
- A resource is addressed by :class:`~hyperkube.client.resources.Resource` (group, version,
  plural, namespaced) plus a namespace, a name and optionally a subresource (``status``,
  ``binding``, ``scale``, ``log``, ``eviction``), laid out as upstream's URLs.
- Non-2xx answers raise the typed error built from the server's ``Status``
  (:mod:`hyperkube.client.errors`). 429 answers with ``Retry-After`` are retried a few times, as
  client-go does; everything else is the caller's decision.
- ``watch()`` is an async iterator over ``(type, object)`` from the ``watch=1`` stream (one JSON
  document per line, ``BOOKMARK`` events included when asked for). An ``ERROR`` event raises its
  Status as a typed error (410 ``Expired``/``Gone`` tells the caller to re-list).
- ``list_all()`` follows ``limit``/``continue`` pages, so a reflector can list 150k pods in
  bounded chunks.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import aiohttp
import yaml

from hyperkube.client.errors import ApiError, TooManyRequests, error_from_status

try:  # orjson: ~2.5x faster decoding and ~30 % smaller objects (it shares dict keys across documents)
    import orjson

    _loads = orjson.loads

    def _dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    def _dumps_str(obj: Any) -> str:
        return orjson.dumps(obj).decode()

except ImportError:  # pragma: no cover - orjson is a dependency; plain json keeps working
    _loads = json.loads

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj).encode()

    def _dumps_str(obj: Any) -> str:
        return json.dumps(obj)


from hyperkube.client.resources import Resource, resource

PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}

ResourceLike = Resource | str


class WatchEvent(NamedTuple):
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    object: dict[str, Any]


def _res(r: ResourceLike) -> Resource:
    return r if isinstance(r, Resource) else resource(r)


def _ns_of(obj: Mapping[str, Any], namespace: str | None) -> str | None:
    return namespace or (obj.get("metadata") or {}).get("namespace")


def _name_of(obj: Mapping[str, Any]) -> str:
    return (obj.get("metadata") or {}).get("name") or ""


@dataclass
class KubeConfig:
    """The parts of a kubeconfig's current context a client needs."""

    server: str
    token: str | None = None
    ca_file: str | None = None
    ca_data: bytes | None = None
    cert_data: bytes | None = None
    key_data: bytes | None = None
    insecure: bool = False
    tls_server_name: str | None = None
    namespace: str = "default"
    extra: dict[str, Any] = field(default_factory=dict)

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.server.startswith("https"):
            return None
        ctx = ssl.create_default_context()
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.ca_data:
            ctx.load_verify_locations(cadata=self.ca_data.decode())
        elif self.ca_file:
            ctx.load_verify_locations(cafile=self.ca_file)
        if self.cert_data and self.key_data:
            # load_cert_chain reads files only: write them to a private temporary directory.
            with tempfile.TemporaryDirectory(prefix="hk-kubeconfig-") as d:
                cert, key = os.path.join(d, "tls.crt"), os.path.join(d, "tls.key")
                for p, data in ((cert, self.cert_data), (key, self.key_data)):
                    fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o600)
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                ctx.load_cert_chain(cert, key)
        return ctx


def load_kubeconfig(path: str | None = None, context: str | None = None) -> KubeConfig:
    """Parse a kubeconfig file (default ``$KUBECONFIG`` or ``~/.kube/config``)."""
    path = (
        path or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or os.path.expanduser("~/.kube/config")
    )
    try:
        with open(path) as f:
            doc = yaml.safe_load(f) or {}
    except OSError as e:
        raise ValueError(f"cannot read kubeconfig {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"kubeconfig {path} is not valid YAML: {e}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"kubeconfig {path}: expected a mapping at the top level")
    base = os.path.dirname(os.path.abspath(path))

    def named(kind: str, name: str | None) -> dict[str, Any]:
        for item in doc.get(kind) or []:
            if name is None or item.get("name") == name:
                return item.get(kind[:-1]) or {}
        raise ValueError(f"kubeconfig {path}: no {kind[:-1]} named {name!r}")

    ctx_name = context or doc.get("current-context")
    ctx = named("contexts", ctx_name) if (ctx_name or doc.get("contexts")) else {}
    cluster = named("clusters", ctx.get("cluster"))
    user = named("users", ctx.get("user")) if ctx.get("user") or doc.get("users") else {}
    if not cluster.get("server"):
        raise ValueError(f"kubeconfig {path}: the cluster has no server address")

    def data(d: dict[str, Any], key: str) -> bytes | None:
        if d.get(f"{key}-data"):
            return base64.b64decode(d[f"{key}-data"])
        if d.get(key):
            p = d[key] if os.path.isabs(d[key]) else os.path.join(base, d[key])
            with open(p, "rb") as f:
                return f.read()
        return None

    token = user.get("token")
    if not token and user.get("tokenFile"):
        with open(user["tokenFile"]) as f:
            token = f.read().strip()
    ca_file = cluster.get("certificate-authority")
    if ca_file and not os.path.isabs(ca_file):
        ca_file = os.path.join(base, ca_file)
    return KubeConfig(
        server=cluster["server"].rstrip("/"),
        token=token,
        ca_file=ca_file,
        ca_data=base64.b64decode(cluster["certificate-authority-data"])
        if cluster.get("certificate-authority-data")
        else None,
        cert_data=data(user, "client-certificate"),
        key_data=data(user, "client-key"),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        tls_server_name=cluster.get("tls-server-name"),
        namespace=ctx.get("namespace") or "default",
    )


class Client:
    """Async client of a Kubernetes(-compatible) API server."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        *,
        user_agent: str = "hyperkube",
        timeout: float = 60.0,
        max_connections: int = 64,
        headers: Mapping[str, str] | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.ssl_context = ssl_context
        self.timeout = timeout
        self.max_connections = max_connections
        self.namespace = "default"
        self._headers = {"User-Agent": user_agent, "Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        if headers:
            self._headers.update(headers)
        self._session: aiohttp.ClientSession | None = None

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, context: str | None = None, **kw: Any) -> Client:
        cfg = load_kubeconfig(path, context)
        c = cls(cfg.server, token=cfg.token, ssl_context=cfg.ssl_context(), **kw)
        c.namespace = cfg.namespace
        return c

    @classmethod
    def in_cluster(cls, **kw: Any) -> Client:
        """From a pod's service-account mount and KUBERNETES_SERVICE_HOST/PORT."""
        d = "/var/run/secrets/kubernetes.io/serviceaccount"
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        with open(f"{d}/token") as f:
            token = f.read().strip()
        ctx = ssl.create_default_context(cafile=f"{d}/ca.crt")
        if ":" in host:
            host = f"[{host}]"
        return cls(f"https://{host}:{port}", token=token, ssl_context=ctx, **kw)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.max_connections,
                ssl=self.ssl_context
                if self.ssl_context is not None
                else (None if self.base_url.startswith("https") else False),
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                json_serialize=_dumps_str,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- low level ----------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        raw: bool = False,
    ) -> Any:
        """One request; returns the decoded JSON (or text when ``raw``); raises typed errors."""
        data = None
        headers = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else _dumps(body)
            headers = {"Content-Type": content_type}
        q = _params(params)
        for attempt in range(5):
            async with self.session.request(
                method, self.base_url + path, params=q, data=data, headers=headers
            ) as resp:
                payload = await resp.read()
                if resp.status < 300:
                    if raw:
                        return payload.decode(resp.charset or "utf-8", errors="replace")
                    return _loads(payload) if payload else None
                err = _error(resp.status, payload.decode("utf-8", errors="replace"))
            if isinstance(err, TooManyRequests) and attempt < 4:
                retry = float(resp.headers.get("Retry-After") or err.retry_after or 1)
                await asyncio.sleep(min(retry, 10.0))
                continue
            raise err
        raise AssertionError("unreachable")

    # -- verbs ----------------------------------------------------------------------------------

    async def get(
        self, res: ResourceLike, name: str, namespace: str | None = None, *, subresource: str | None = None
    ) -> dict[str, Any]:
        return await self.request("GET", _res(res).path(namespace, name, subresource))

    async def list(
        self,
        res: ResourceLike,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_: str | None = None,
        resource_version: str | None = None,
        resource_version_match: str | None = None,
    ) -> dict[str, Any]:
        """One page of a list (all of it when ``limit`` is None)."""
        params = {
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
            "limit": limit,
            "continue": continue_,
            "resourceVersion": resource_version,
            "resourceVersionMatch": resource_version_match,
        }
        return await self.request("GET", _res(res).path(namespace), params=params)

    async def iter_pages(
        self, res: ResourceLike, namespace: str | None = None, *, page_size: int = 500, **kw: Any
    ) -> AsyncIterator[dict[str, Any]]:
        cont: str | None = None
        while True:
            page = await self.list(res, namespace, limit=page_size, continue_=cont, **kw)
            yield page
            cont = (page.get("metadata") or {}).get("continue")
            if not cont:
                return
            kw.pop("resource_version", None)  # the continue token pins the snapshot
            kw.pop("resource_version_match", None)

    async def list_all(
        self, res: ResourceLike, namespace: str | None = None, *, page_size: int = 500, **kw: Any
    ) -> dict[str, Any]:
        """A whole list, fetched in pages of ``page_size`` (limit/continue)."""
        items: list[dict[str, Any]] = []
        last: dict[str, Any] = {}
        async for page in self.iter_pages(res, namespace, page_size=page_size, **kw):
            items.extend(page.get("items") or [])
            last = page
        out = dict(last)
        out["items"] = items
        meta = dict(out.get("metadata") or {})
        meta.pop("continue", None)
        meta.pop("remainingItemCount", None)
        out["metadata"] = meta
        return out

    async def create(
        self,
        res: ResourceLike,
        obj: Mapping[str, Any],
        namespace: str | None = None,
        *,
        name: str | None = None,
        subresource: str | None = None,
        dry_run: bool = False,
        field_manager: str | None = None,
    ) -> dict[str, Any]:
        """POST an object; with ``subresource`` (``binding``, ``eviction``) POST to ``{name}/{sub}``."""
        r = _res(res)
        if subresource:
            path = r.path(_ns_of(obj, namespace), name or _name_of(obj), subresource)
        else:
            path = r.path(_ns_of(obj, namespace))
        params = {"dryRun": "All" if dry_run else None, "fieldManager": field_manager}
        return await self.request("POST", path, params=params, body=obj)

    async def update(
        self,
        res: ResourceLike,
        obj: Mapping[str, Any],
        namespace: str | None = None,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        field_manager: str | None = None,
    ) -> dict[str, Any]:
        """PUT an object (its metadata.resourceVersion makes it a conditional update → Conflict)."""
        r = _res(res)
        path = r.path(_ns_of(obj, namespace), _name_of(obj), subresource)
        params = {"dryRun": "All" if dry_run else None, "fieldManager": field_manager}
        return await self.request("PUT", path, params=params, body=obj)

    async def update_status(
        self, res: ResourceLike, obj: Mapping[str, Any], namespace: str | None = None
    ) -> dict:
        return await self.update(res, obj, namespace, subresource="status")

    async def patch(
        self,
        res: ResourceLike,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        patch_type: str = "merge",
        subresource: str | None = None,
        field_manager: str | None = None,
        force: bool | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """PATCH with ``patch_type`` merge | strategic | json | apply."""
        try:
            ctype = PATCH_TYPES[patch_type]
        except KeyError:
            raise ValueError(f"patch_type must be one of {sorted(PATCH_TYPES)}, not {patch_type!r}") from None
        if patch_type == "apply" and not field_manager:
            field_manager = "hyperkube"
        params = {
            "fieldManager": field_manager,
            "force": None if force is None else str(force).lower(),
            "dryRun": "All" if dry_run else None,
        }
        return await self.request(
            "PATCH",
            _res(res).path(namespace, name, subresource),
            params=params,
            body=patch,
            content_type=ctype,
        )

    async def delete(
        self,
        res: ResourceLike,
        name: str,
        namespace: str | None = None,
        *,
        propagation_policy: str | None = None,
        grace_period_seconds: int | None = None,
        preconditions: Mapping[str, str] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """DELETE; returns the deleted object (or a Status) as the server answers.

        ``propagation_policy``: Background | Foreground | Orphan. ``preconditions``:
        ``{"uid": ..., "resourceVersion": ...}``.
        """
        opts: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation_policy:
            opts["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            opts["gracePeriodSeconds"] = grace_period_seconds
        if preconditions:
            opts["preconditions"] = dict(preconditions)
        if dry_run:
            opts["dryRun"] = ["All"]
        return await self.request("DELETE", _res(res).path(namespace, name), body=opts)

    async def delete_collection(
        self,
        res: ResourceLike,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        propagation_policy: str | None = None,
    ) -> dict[str, Any]:
        opts: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation_policy:
            opts["propagationPolicy"] = propagation_policy
        params = {"labelSelector": label_selector, "fieldSelector": field_selector}
        return await self.request("DELETE", _res(res).path(namespace), params=params, body=opts)

    async def watch(
        self,
        res: ResourceLike,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        allow_bookmarks: bool = True,
        timeout_seconds: int | None = None,
        send_initial_events: bool | None = None,
    ) -> AsyncIterator[WatchEvent]:
        """Stream watch events; the iterator ends when the server closes the stream.

        ``ERROR`` events raise their Status as a typed error (``Expired``/``Gone`` on a
        compacted resourceVersion).
        """
        params = {
            "watch": "1",
            "resourceVersion": resource_version,
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
            "allowWatchBookmarks": "true" if allow_bookmarks else None,
            "timeoutSeconds": timeout_seconds,
        }
        if send_initial_events is not None:
            params["sendInitialEvents"] = str(send_initial_events).lower()
            params["resourceVersionMatch"] = "NotOlderThan"
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout)
        path = _res(res).path(namespace)
        async with self.session.get(self.base_url + path, params=_params(params), timeout=timeout) as resp:
            if resp.status >= 300:
                raise _error(resp.status, await resp.text())
            buf = b""
            async for chunk in resp.content.iter_any():
                buf += chunk
                if b"\n" not in chunk:
                    continue
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield _decode_event(line)
            if buf.strip():
                yield _decode_event(buf)

    # -- subresources and conveniences ----------------------------------------------------------

    async def get_scale(self, res: ResourceLike, name: str, namespace: str | None = None) -> dict[str, Any]:
        return await self.get(res, name, namespace, subresource="scale")

    async def scale(self, res: ResourceLike, name: str, replicas: int, namespace: str | None = None) -> dict:
        return await self.patch(res, name, {"spec": {"replicas": replicas}}, namespace, subresource="scale")

    async def bind(self, namespace: str, pod: str, node: str, *, uid: str | None = None) -> Any:
        """POST pods/{pod}/binding, as the scheduler does."""
        meta: dict[str, Any] = {"name": pod, "namespace": namespace}
        if uid:
            meta["uid"] = uid
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": meta,
            "target": {"kind": "Node", "name": node},
        }
        return await self.create("pods", body, namespace, name=pod, subresource="binding")

    async def evict(self, namespace: str, pod: str, *, grace_period_seconds: int | None = None) -> Any:
        """POST pods/{pod}/eviction (honours PodDisruptionBudgets on the server)."""
        body: dict[str, Any] = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": pod, "namespace": namespace},
        }
        if grace_period_seconds is not None:
            body["deleteOptions"] = {"gracePeriodSeconds": grace_period_seconds}
        return await self.create("pods", body, namespace, name=pod, subresource="eviction")

    async def log(
        self,
        namespace: str,
        pod: str,
        *,
        container: str | None = None,
        tail_lines: int | None = None,
        previous: bool = False,
        timestamps: bool = False,
    ) -> str:
        params = {
            "container": container,
            "tailLines": tail_lines,
            "previous": "true" if previous else None,
            "timestamps": "true" if timestamps else None,
        }
        return await self.request("GET", _res("pods").path(namespace, pod, "log"), params=params, raw=True)

    async def follow_log(
        self, namespace: str, pod: str, *, container: str | None = None, tail_lines: int | None = None
    ) -> AsyncIterator[bytes]:
        params = {"container": container, "tailLines": tail_lines, "follow": "true"}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout)
        url = self.base_url + _res("pods").path(namespace, pod, "log")
        async with self.session.get(url, params=_params(params), timeout=timeout) as resp:
            if resp.status >= 300:
                raise _error(resp.status, await resp.text())
            async for chunk in resp.content.iter_any():
                yield chunk

    async def version(self) -> dict[str, Any]:
        return await self.request("GET", "/version")

    async def healthz(self) -> bool:
        try:
            return (await self.request("GET", "/healthz", raw=True)).strip() == "ok"
        except (ApiError, aiohttp.ClientError, OSError):
            return False


def _params(params: Mapping[str, Any] | None) -> dict[str, str] | None:
    if not params:
        return None
    return {k: str(v) for k, v in params.items() if v is not None and v != ""}


def _error(code: int, text: str) -> ApiError:
    try:
        status = _loads(text)
    except ValueError:
        status = None
    return error_from_status(status, code, text)


def _decode_event(line: bytes) -> WatchEvent:
    ev = _loads(line)
    typ, obj = ev.get("type"), ev.get("object") or {}
    if typ == "ERROR":
        raise error_from_status(obj, obj.get("code") or 500)
    return WatchEvent(typ, obj)
