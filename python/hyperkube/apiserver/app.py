"""The HTTP layer: aiohttp routes for the Kubernetes REST API over :class:`~.rest.Registry`.

One catch-all route parses ``/api/v1/...`` and ``/apis/<group>/<version>/...`` paths into
(resource, namespace, name, subresource) and the HTTP method into a verb (get, list, watch,
create, update, patch, delete, deletecollection), as upstream's request-info resolver does. Bodies
are JSON or YAML up to 3 MiB; responses are JSON, or a ``meta.k8s.io`` Table when the client asks
for one (``kubectl get``). Every error is a ``Status``. Each request carries a user in
``request["user"]`` (an anonymous administrator until authentication lands) for authorization and
audit to use.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import yaml
from aiohttp import ClientConnectorError, ClientSession, ClientSSLError, ClientTimeout, web

from hyperkube.api import errors, protobuf, tables
from hyperkube.api.errors import ApiError
from hyperkube.api.patch import PATCH_TYPES, strategic_merge_patch
from hyperkube.api.registry import Resource, lookup, resource
from hyperkube.api.serialization import decode, to_json
from hyperkube.apiserver import discovery, hostile, openapi
from hyperkube.apiserver.metrics import Metrics
from hyperkube.apiserver.rest import DeleteOptions, ListOptions, Registry, parse_list_options
from hyperkube.apiserver.watchcache import CacheEvent, Watcher, direct_watch
from hyperkube.storage.interface import Compacted, Store

log = logging.getLogger("hyperkube.apiserver")

MAX_BODY = 3 * 1024 * 1024
JSON = "application/json"
DEFAULT_WATCH_TIMEOUT = 1800
BOOKMARK_INTERVAL = 30.0
LIST_CHUNK = 1000


@dataclass
class UserInfo:
    name: str
    groups: list[str] = field(default_factory=list)
    uid: str = ""


ANONYMOUS_ADMIN = UserInfo("system:admin", ["system:masters", "system:authenticated"])


@dataclass
class Options:
    service_cidr: str = "10.96.0.0/12"
    node_port_range: tuple[int, int] = (30000, 32767)
    scheduler_health_url: str = "http://127.0.0.1:10259/healthz"
    controller_manager_health_url: str = "http://127.0.0.1:10257/healthz"
    advertise_address: str = "127.0.0.1"
    port: int = 6443
    max_body: int = MAX_BODY
    watch_window: int = 10_000
    # hyperkube.apiserver.security.Security: authn, authz, admission, limits, audit (None: open)
    security: Any = None


def _response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=to_json(data), status=status, content_type=JSON)


def error_response(e: ApiError) -> web.Response:
    headers = {}
    if e.retry_after is not None:
        headers["Retry-After"] = str(e.retry_after)
    return web.Response(body=to_json(e.status()), status=e.code, content_type=JSON, headers=headers)


@dataclass
class RequestInfo:
    group: str
    version: str
    res: Resource | None
    namespace: str | None
    name: str | None
    subresource: str | None
    watch_path: bool
    plural: str


def parse_path(path: str) -> RequestInfo | None:
    parts = [p for p in path.split("/") if p]
    if not parts:
        return None
    if parts[0] == "api" and len(parts) >= 2:
        group, version, segs = "", parts[1], parts[2:]
    elif parts[0] == "apis" and len(parts) >= 3:
        group, version, segs = parts[1], parts[2], parts[3:]
    else:
        return None
    watch_path = False
    if segs and segs[0] == "watch":
        watch_path, segs = True, segs[1:]
    ns: str | None = None
    if len(segs) >= 3 and segs[0] == "namespaces" and segs[2] not in ("status", "finalize"):
        ns, segs = segs[1], segs[2:]
    if not segs or len(segs) > 3:
        return RequestInfo(group, version, None, ns, None, None, watch_path, "" if not segs else "\x00")
    plural = segs[0]
    name = segs[1] if len(segs) > 1 else None
    sub = segs[2] if len(segs) > 2 else None
    return RequestInfo(group, version, lookup(group, version, plural), ns, name, sub, watch_path, plural)


def _accept(request: web.Request) -> tuple[bool, str]:
    """(wants a Table, includeObject policy)."""
    acc = request.headers.get("Accept", "")
    table = False
    for part in acc.split(","):
        params = {}
        for kv in part.split(";")[1:]:
            if "=" in kv:
                k, v = kv.strip().split("=", 1)
                params[k] = v
        if params.get("as") == "Table" and params.get("g", "meta.k8s.io") == "meta.k8s.io":
            table = True
            break
        if part.split(";")[0].strip() in (JSON, "*/*", "application/*", ""):
            break
    return table, request.query.get("includeObject", "Metadata")


async def read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise errors.too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(65536)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise errors.too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


PROTOBUF = "application/vnd.kubernetes.protobuf"


def parse_body(
    raw: bytes, content_type: str, allowed: tuple[str, ...] = (JSON, "application/yaml", PROTOBUF, "*/*", "")
) -> Any:
    ct = content_type.split(";")[0].strip().lower()
    if ct == PROTOBUF and ct in allowed:
        try:
            return protobuf.decode(raw)
        except protobuf.ProtobufError as e:
            raise errors.bad_request(f"the protobuf body could not be decoded: {e}") from None
    if ct not in allowed:
        raise errors.unsupported_media(ct, [a for a in allowed if a not in ("*/*", "")])
    if not raw.strip():
        raise errors.bad_request("the request body is empty; send a JSON object")
    try:
        if ct == "application/yaml" or ct == "application/apply-patch+yaml":
            return hostile.loads_yaml(raw)
        return hostile.loads_json(raw)
    except (ValueError, yaml.YAMLError) as e:
        raise errors.bad_request(f"couldn't get version/kind; json parse error: {e}") from None


def check_kind(
    body: Any, res: Resource, kind: str | None = None, api_versions: tuple[str, ...] | None = None
) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise errors.bad_request(
            f"the body of the request must be a JSON object (a {kind or res.kind}), not {type(body).__name__}"
        )
    want_kind = kind or res.kind
    want_av = api_versions or (res.api_version,)
    bk, bav = body.get("kind"), body.get("apiVersion")
    if bk and bk != want_kind:
        av = bav or want_av[0]
        raise errors.bad_request(
            f'{bk} in version "{av.split("/")[-1]}" cannot be handled as a {want_kind}: the kind in the body ({bk}) '
            f"does not match the resource in the URL ({res.plural}, kind {want_kind})"
        )
    if bav and bav not in want_av:
        raise errors.bad_request(
            f"the API version in the data ({bav}) does not match the expected API version ({want_av[0]})"
        )
    return body


def check_fields(request: web.Request, res: Resource, body: dict[str, Any]) -> None:
    """fieldValidation: drop unknown fields always; Strict rejects them (400), Warn (the default)
    reports them in Warning headers, Ignore says nothing."""
    mode = request.query.get("fieldValidation", "Warn")
    if mode not in ("Strict", "Warn", "Ignore"):
        raise errors.bad_request(
            f'fieldValidation: Unsupported value: "{mode}": supported values: "Ignore", "Strict", "Warn"'
        )
    schema = openapi.kind_schema(res.group, res.version, res.kind)
    if schema is None:
        return
    unknown = openapi.prune_unknown(schema, body)
    if not unknown:
        return
    listed = ", ".join(f'unknown field "{u}"' for u in unknown)
    if mode == "Strict":
        raise errors.bad_request(
            f'{res.kind} in version "{res.version}" cannot be handled as a {res.kind}: strict decoding error: {listed}'
        )
    if mode == "Warn":
        request["warnings"] = [f'unknown field "{u}"' for u in unknown]


def _dry_run(q: Any) -> bool:
    vals = q.getall("dryRun", [])
    for v in vals:
        if v != "All":
            raise errors.bad_request(f'dryRun: Unsupported value: "{v}": supported values: "All"')
    return bool(vals)


def _int_param(q: Any, name: str) -> int | None:
    v = q.get(name)
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError:
        raise errors.bad_request(f"invalid {name} {v!r}: must be an integer") from None


class APIServer:
    def __init__(self, store: Store, options: Options) -> None:
        self.store = store
        self.options = options
        self.metrics = Metrics()
        self.registry = Registry(
            store,
            service_cidr=options.service_cidr,
            node_port_range=options.node_port_range,
            kubernetes_endpoint=(options.advertise_address, options.port),
            observe_store=self.metrics.observe_store,
        )
        self.metrics.watchers = lambda: {p: len(c.watchers) for p, c in self.registry.caches.items()}
        self.http: ClientSession | None = None
        # TLS towards kubelets (their serving certs verified against the cluster CA, our client
        # cert apiserver-kubelet-client); None with --insecure-http: kubelets are called over HTTP
        self.kubelet_tls: ssl.SSLContext | None = None
        self._watch_tasks: set[asyncio.Task[Any]] = set()
        self.started_at = time.time()

    # --- lifecycle ------------------------------------------------------------------------------

    async def on_startup(self, app: web.Application) -> None:
        await self.registry.start()
        self.http = ClientSession(timeout=ClientTimeout(total=2))
        sec = self.options.security
        pki = getattr(sec, "pki", None)
        if pki is not None and not sec.insecure:
            pair = pki.pair("apiserver-kubelet-client")
            if os.path.exists(pair.cert):
                ctx = ssl.create_default_context(cafile=pki.ca.cert)
                ctx.load_cert_chain(pair.cert, pair.key)
                self.kubelet_tls = ctx

    async def on_cleanup(self, app: web.Application) -> None:
        await self.registry.stop()
        if self.http is not None:
            await self.http.close()

    # --- dispatch -------------------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if "user" not in request:  # set by the security middleware when it runs
            request["user"] = ANONYMOUS_ADMIN
        t0 = time.perf_counter()
        verb, res_name = request.method, ""
        try:
            resp = await handler(request)
        except ApiError as e:
            resp = error_response(e)
        except web.HTTPException:
            raise
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as e:
            log.exception("internal error serving %s %s", request.method, request.path)
            resp = error_response(errors.internal(str(e)))
        warnings = request.get("warnings")
        if warnings and not resp.prepared:
            for w in warnings:
                escaped = w.replace("\\", "\\\\").replace('"', '\\"')
                resp.headers.add("Warning", f'299 - "{escaped}"')
        info = request.get("info")
        if info is not None:
            verb, res_name = info
        self.metrics.observe_request(verb, res_name, resp.status, time.perf_counter() - t0)
        return resp

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path in ("/healthz", "/livez", "/readyz") or path.startswith(("/healthz/", "/livez/", "/readyz/")):
            return await self.health(request)
        if path == "/version" or path == "/version/":
            return _response(discovery.version_info())
        if path == "/metrics":
            return web.Response(text=self.metrics.render(), content_type="text/plain", charset="utf-8")
        if path.startswith("/openapi/"):
            return self.serve_openapi(request)
        if path in ("/api", "/api/"):
            return _response(discovery.api_versions(f"{self.options.advertise_address}:{self.options.port}"))
        if path in ("/apis", "/apis/"):
            return _response(discovery.api_group_list())
        parts = [p for p in path.split("/") if p]
        if len(parts) == 2 and parts[0] == "apis":
            g = discovery.api_group(parts[1])
            if g is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return _response(g)
        if len(parts) == 2 and parts[0] == "api" or len(parts) == 3 and parts[0] == "apis":
            rl = discovery.resource_list("" if parts[0] == "api" else parts[1], parts[-1])
            if rl is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return _response(rl)
        if path == "/":
            return _response({"paths": sorted(self.root_paths())})
        info = parse_path(path)
        if info is None or info.res is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return await self.serve_resource(request, info)

    def root_paths(self) -> list[str]:
        from hyperkube.api.registry import GROUPS

        out = [
            "/api",
            "/api/v1",
            "/apis",
            "/healthz",
            "/livez",
            "/readyz",
            "/metrics",
            "/version",
            "/openapi/v2",
            "/openapi/v3",
        ]
        for g, vs in GROUPS.items():
            if g:
                out.append(f"/apis/{g}")
                out += [f"/apis/{g}/{v}" for v in vs]
        return out

    # --- health -------------------------------------------------------------------------------

    async def _store_ok(self) -> str | None:
        try:
            await asyncio.wait_for(self.store.current_revision(), 2.0)
            return None
        except Exception as e:
            return str(e) or type(e).__name__

    async def health(self, request: web.Request) -> web.Response:
        path = request.path.rstrip("/")
        base = path.split("/")[1]
        checks: list[tuple[str, str | None]] = [
            ("ping", None),
            ("log", None),
            ("etcd", await self._store_ok()),
        ]
        if base == "readyz":
            checks.append(
                ("poststarthook/start-system-namespaces", None if self.registry.ready else "not finished")
            )
            checks.append(("shutdown", None))
        sub = path.split("/", 2)[2] if path.count("/") >= 2 else ""
        if sub:
            for name, err in checks:
                if name == sub:
                    return web.Response(
                        text="ok" if err is None else f"internal server error: {err}",
                        status=200 if err is None else 500,
                    )
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        exclude = set(request.query.getall("exclude", []))
        checks = [c for c in checks if c[0] not in exclude]
        failed = any(err is not None for _, err in checks)
        if "verbose" in request.query or failed:
            lines = [f"[+]{n} ok" if e is None else f"[-]{n} failed: reason withheld" for n, e in checks]
            lines.append(f"{base} check {'failed' if failed else 'passed'}")
            return web.Response(text="\n".join(lines) + "\n", status=500 if failed else 200)
        return web.Response(text="ok")

    # --- openapi --------------------------------------------------------------------------------

    def serve_openapi(self, request: web.Request) -> web.Response:
        path = request.path.rstrip("/")
        if path == "/openapi/v2":
            acc = request.headers.get("Accept", "")
            if "protobuf" in acc:
                return web.Response(
                    body=openapi.v2_protobuf(),
                    content_type="application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
                )
            return _response(openapi.v2())
        if path == "/openapi/v3":
            return _response(openapi.v3_root())
        if path.startswith("/openapi/v3/"):
            doc = openapi.v3_group(path[len("/openapi/v3/") :])
            if doc is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return web.Response(
                body=doc,
                content_type=JSON,
                headers={"Cache-Control": "public, immutable"} if request.query.get("hash") else {},
            )
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    # --- resources ----------------------------------------------------------------------------

    async def serve_resource(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        res = info.res
        assert res is not None
        m = request.method
        q = request.query
        if res.namespaced and info.namespace is None and info.name is not None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not res.namespaced and info.namespace is not None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        sub = info.subresource
        if sub is not None and sub not in res.subresources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if info.name is None:
            watch = info.watch_path or q.get("watch") in ("true", "1")
            verb = {"GET": "watch" if watch else "list", "POST": "create", "DELETE": "deletecollection"}.get(
                m
            )
        elif sub is None:
            verb = {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(m)
            if info.watch_path and m == "GET":
                verb = "watch"
        else:
            verb = {"GET": "get", "PUT": "update", "PATCH": "patch", "POST": "create"}.get(m)
        request["info"] = (verb or m, res.plural if sub is None else f"{res.plural}/{sub}")
        if verb is None or verb not in res.verbs and sub is None:
            raise errors.method_not_allowed("the server does not allow this method on the requested resource")
        if res.namespaced and info.namespace is None and verb in ("create", "deletecollection"):
            raise errors.method_not_allowed("the server does not allow this method on the requested resource")
        if res.plural == "componentstatuses":
            return await self.component_statuses(request, info, verb)
        if res.plural == "bindings":
            return await self.create_binding(request, info, None)
        if sub is not None:
            return await self.serve_subresource(request, info, verb)
        reg = self.registry
        ns, name = info.namespace, info.name
        if verb == "get":
            obj = await reg.get(res, ns, name or "")
            return self.render(request, res, obj)
        if verb == "list":
            lo = parse_list_options(q, res.plural)
            if not lo.limit and not lo.continue_token and not _accept(request)[0]:
                return await self.stream_list(request, res, ns, lo)
            items, meta = await reg.list(res, ns, lo)
            return self.render_list(request, res, items, meta)
        if verb == "watch":
            lo = parse_list_options(q, res.plural)
            if info.name is not None:
                lo.field_selector = ",".join(
                    x for x in (lo.field_selector, f"metadata.name={info.name}") if x
                )
            return await self.watch(request, res, ns, lo)
        dry_run = _dry_run(q)
        if verb == "create":
            body = check_kind(
                parse_body(
                    await read_body(request, self.options.max_body), request.headers.get("Content-Type", "")
                ),
                res,
            )
            md = body.get("metadata")
            if md is not None and not isinstance(md, dict):
                raise errors.bad_request("metadata must be an object")
            if res.namespaced and isinstance(md, dict) and md.get("namespace") and md["namespace"] != ns:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            check_fields(request, res, body)
            obj = await reg.create(res, ns, body, dry_run=dry_run)
            return self.render(request, res, obj, 201)
        if verb == "update":
            body = check_kind(
                parse_body(
                    await read_body(request, self.options.max_body), request.headers.get("Content-Type", "")
                ),
                res,
            )
            self._check_name(body, name or "", ns, res)
            check_fields(request, res, body)
            obj, created = await reg.update(res, ns, name or "", body, dry_run=dry_run)
            return self.render(request, res, obj, 201 if created else 200)
        if verb == "patch":
            return await self.patch(request, res, ns, name or "", None, dry_run)
        if verb == "delete":
            opts = await self.delete_options(request, dry_run)
            obj, _ = await reg.delete(res, ns, name or "", opts)
            if res.plural in ("pods", "services", "namespaces", "nodes") or (obj.get("metadata") or {}).get(
                "deletionTimestamp"
            ):
                return self.render(request, res, obj)
            return _response(
                errors.success_status(
                    name or "", res.group, res.plural, (obj.get("metadata") or {}).get("uid")
                )
            )
        if verb == "deletecollection":
            opts = await self.delete_options(request, dry_run)
            lo = parse_list_options(q, res.plural)
            items = await reg.delete_collection(res, ns, lo, opts)
            return _response(
                {"kind": res.list_kind, "apiVersion": res.api_version, "metadata": {}, "items": items}
            )
        raise errors.method_not_allowed("the server does not allow this method on the requested resource")

    @staticmethod
    def _check_name(body: dict[str, Any], name: str, ns: str | None, res: Resource) -> None:
        md = body.get("metadata")
        if not isinstance(md, dict):
            raise errors.bad_request("metadata must be an object with a name")
        if md.get("name") and md["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({md['name']}) does not match the name on the URL ({name})"
            )
        md["name"] = name
        if res.namespaced and md.get("namespace") and md["namespace"] != ns:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )

    async def delete_options(self, request: web.Request, dry_run: bool) -> DeleteOptions:
        q = request.query
        opts = DeleteOptions(dry_run=dry_run)
        opts.grace_period = _int_param(q, "gracePeriodSeconds")
        opts.propagation = q.get("propagationPolicy") or None
        if q.get("orphanDependents") == "true":
            opts.propagation = "Orphan"
        raw = await read_body(request, self.options.max_body)
        if raw.strip():
            body = parse_body(raw, request.headers.get("Content-Type", ""))
            if not isinstance(body, dict):
                raise errors.bad_request("the body of a delete must be a DeleteOptions object")
            if body.get("kind") not in (None, "DeleteOptions"):
                raise errors.bad_request(
                    f"the body of a delete must be a DeleteOptions object, not {body.get('kind')}"
                )
            if body.get("gracePeriodSeconds") is not None:
                opts.grace_period = int(body["gracePeriodSeconds"])
            if body.get("propagationPolicy"):
                opts.propagation = body["propagationPolicy"]
            if body.get("orphanDependents") is True:
                opts.propagation = "Orphan"
            pre = body.get("preconditions") or {}
            opts.precondition_uid = pre.get("uid") or None
            opts.precondition_rv = pre.get("resourceVersion") or None
            if body.get("dryRun"):
                opts.dry_run = body["dryRun"] == ["All"] or opts.dry_run
        if opts.propagation not in (None, "Orphan", "Background", "Foreground"):
            raise errors.bad_request(
                f'propagationPolicy: Unsupported value: "{opts.propagation}": supported values: "Foreground", "Background", "Orphan"'
            )
        return opts

    async def patch(
        self, request: web.Request, res: Resource, ns: str | None, name: str, sub: str | None, dry_run: bool
    ) -> web.Response:
        ct = request.content_type.split(";")[0].strip().lower()
        ptype = PATCH_TYPES.get(ct)
        if ptype is None:
            raise errors.unsupported_media(ct, list(PATCH_TYPES))
        body = parse_body(await read_body(request, self.options.max_body), ct, (ct,))
        if ptype == "apply":
            # server-side apply, approximated: create when missing, else a strategic merge of the
            # applied configuration (no managedFields tracking)
            body = check_kind(body, res)
            try:
                obj = await self.registry.patch(
                    res,
                    ns,
                    name,
                    "strategic",
                    {k: v for k, v in body.items() if k not in ("apiVersion", "kind")},
                    subresource=sub,
                    dry_run=dry_run,
                )
            except ApiError as e:
                if e.code != 404 or sub is not None:
                    raise
                body.setdefault("metadata", {})["name"] = name
                obj = await self.registry.create(res, ns, body, dry_run=dry_run)
                return self.render(request, res, obj, 201)
            return self.render(request, res, obj)
        if sub == "scale":
            return _response(
                await self.registry.update_scale(
                    res, ns or "", name, lambda cur: _patched(cur, ptype, body), dry_run=dry_run
                )
            )
        obj = await self.registry.patch(
            res,
            ns,
            name,
            ptype,
            body,
            subresource=sub,
            dry_run=dry_run,
            check=lambda o: check_fields(request, res, o),
        )
        return self.render(request, res, obj)

    # --- subresources ---------------------------------------------------------------------------

    async def serve_subresource(
        self, request: web.Request, info: RequestInfo, verb: str
    ) -> web.StreamResponse:
        res, ns, name, sub = info.res, info.namespace, info.name or "", info.subresource
        assert res is not None
        dry_run = _dry_run(request.query)
        reg = self.registry
        if sub == "status":
            if verb == "get":
                return self.render(request, res, await reg.get(res, ns, name))
            if verb == "update":
                body = check_kind(
                    parse_body(
                        await read_body(request, self.options.max_body),
                        request.headers.get("Content-Type", ""),
                    ),
                    res,
                )
                self._check_name(body, name, ns, res)
                obj, _ = await reg.update(res, ns, name, body, subresource="status", dry_run=dry_run)
                return self.render(request, res, obj)
            if verb == "patch":
                return await self.patch(request, res, ns, name, "status", dry_run)
        if sub == "scale":
            if verb == "get":
                return _response(reg.to_scale(await reg.get(res, ns, name)))
            if verb == "update":
                body = check_kind(
                    parse_body(
                        await read_body(request, self.options.max_body),
                        request.headers.get("Content-Type", ""),
                    ),
                    res,
                    "Scale",
                    ("autoscaling/v1",),
                )
                return _response(
                    await reg.update_scale(res, ns or "", name, lambda cur: body, dry_run=dry_run)
                )
            if verb == "patch":
                return await self.patch(request, res, ns, name, "scale", dry_run)
        if sub == "binding" and verb == "create":
            return await self.create_binding(request, info, name)
        if sub == "eviction" and verb == "create":
            body = parse_body(
                await read_body(request, self.options.max_body), request.headers.get("Content-Type", "")
            )
            body = check_kind(body, res, "Eviction", ("policy/v1", "policy/v1beta1"))
            do = body.get("deleteOptions") or {}
            opts = DeleteOptions(grace_period=do.get("gracePeriodSeconds"), dry_run=dry_run)
            await reg.delete(res, ns, name, opts)
            return _response(
                {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, 201
            )
        if sub == "finalize" and verb == "update":
            body = check_kind(
                parse_body(
                    await read_body(request, self.options.max_body), request.headers.get("Content-Type", "")
                ),
                res,
            )
            fin = (body.get("spec") or {}).get("finalizers")

            def mutate(cur: dict[str, Any]) -> dict[str, Any]:
                cur.setdefault("spec", {})["finalizers"] = fin or []
                return cur

            obj, _ = await reg._write_update(res, None, name, mutate, skip_validation=True, dry_run=dry_run)
            return self.render(request, res, obj)
        if sub == "log" and verb == "get":
            return await self.pod_log(request, ns or "", name)
        raise errors.method_not_allowed("the server does not allow this method on the requested resource")

    async def create_binding(self, request: web.Request, info: RequestInfo, name: str | None) -> web.Response:
        body = parse_body(
            await read_body(request, self.options.max_body), request.headers.get("Content-Type", "")
        )
        body = check_kind(body, resource("bindings"), "Binding", ("v1",))
        md = body.get("metadata") or {}
        pod = name or md.get("name")
        if not pod:
            raise errors.bad_request("a Binding needs metadata.name (the pod's name)")
        if name and md.get("name") and md["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({md['name']}) does not match the name on the URL ({name})"
            )
        await self.registry.bind(info.namespace or "", pod, body, dry_run=_dry_run(request.query))
        return _response(
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, 201
        )

    async def pod_log(self, request: web.Request, ns: str, name: str) -> web.StreamResponse:
        pod = await self.registry.get(resource("pods"), ns, name)
        containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
        container = request.query.get("container")
        if not container:
            if len(containers) != 1:
                raise errors.bad_request(
                    f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]"
                )
            container = containers[0]
        elif container not in containers + [
            c.get("name") for c in (pod.get("spec") or {}).get("initContainers") or []
        ]:
            raise errors.bad_request(f"container {container} is not valid for pod {name}")
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            raise errors.bad_request(f"pod {name} does not have a host assigned")
        try:
            node = await self.registry.get(resource("nodes"), None, node_name)
        except ApiError:
            raise errors.service_unavailable(
                f"the node {node_name} of pod {name} is not registered, so its logs cannot be fetched"
            ) from None
        status = node.get("status") or {}
        addr = next(
            (a.get("address") for a in status.get("addresses") or [] if a.get("type") == "InternalIP"), None
        )
        port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
        if not addr or not port:
            raise errors.service_unavailable(
                f"the kubelet of node {node_name} has not published its address and port (status.addresses InternalIP, "
                f"status.daemonEndpoints.kubeletEndpoint.Port), so the logs of pod {name} cannot be fetched"
            )
        scheme = "https" if self.kubelet_tls is not None else "http"
        host = f"[{addr}]" if ":" in addr else addr
        url = f"{scheme}://{host}:{port}/containerLogs/{ns}/{name}/{container}"
        params = {
            k: v
            for k, v in request.query.items()
            if k in ("follow", "tailLines", "timestamps", "sinceSeconds", "previous", "limitBytes")
        }
        assert self.http is not None
        try:
            timeout = (
                ClientTimeout(total=None, sock_connect=5)
                if params.get("follow") == "true"
                else ClientTimeout(total=30)
            )
            async with self.http.get(
                url, params=params, timeout=timeout, ssl=self.kubelet_tls if self.kubelet_tls else True
            ) as upstream:
                if upstream.status != 200:
                    text = await upstream.text()
                    raise ApiError(
                        upstream.status if upstream.status < 500 else 502,
                        "BadRequest" if upstream.status < 500 else "InternalError",
                        text.strip() or f"kubelet answered {upstream.status}",
                    )
                resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
                await resp.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
                return resp
        except OSError as e:
            hint = (
                " (the API server calls kubelets over HTTPS: the kubelet needs a serving certificate of the "
                "cluster CA, e.g. `hyperkube certs kubeconfig --node NAME --serving-ip IP` and its "
                "--tls-cert-file/--tls-private-key-file/--client-ca-file)"
                if self.kubelet_tls is not None and isinstance(e, ssl.SSLError | ClientSSLError)
                else ""
            )
            raise errors.service_unavailable(
                f'Get "{url}": the kubelet of node {node_name} is not reachable: {e}{hint}'
            ) from None

    # --- componentstatuses ------------------------------------------------------------------------

    async def _probe(self, url: str) -> tuple[bool, str, str]:
        assert self.http is not None
        try:
            async with self.http.get(url) as r:
                body = (await r.text()).strip()
                if r.status == 200:
                    return True, body or "ok", ""
                return False, "", f"HTTP probe failed with statuscode: {r.status}"
        except OSError as e:
            from urllib.parse import urlsplit

            u = urlsplit(url)
            why = "connection refused" if isinstance(e, ClientConnectorError) else (e.strerror or str(e))
            return False, "", f'Get "{url}": dial tcp {u.hostname}:{u.port}: connect: {why}'
        except Exception as e:
            return False, "", f'Get "{url}": {e or type(e).__name__}'

    async def component_statuses(self, request: web.Request, info: RequestInfo, verb: str) -> web.Response:
        targets = {
            "scheduler": self.options.scheduler_health_url,
            "controller-manager": self.options.controller_manager_health_url,
        }
        names = ["scheduler", "controller-manager", "etcd-0"]
        if info.name is not None:
            if info.name not in names:
                raise errors.not_found("componentstatuses", "", info.name)
            names = [info.name]

        async def one(n: str) -> dict[str, Any]:
            if n == "etcd-0":
                err = await self._store_ok()
                ok, msg, error = err is None, '{"health":"true"}' if err is None else "", err or ""
            else:
                ok, msg, error = await self._probe(targets[n])
            cond: dict[str, Any] = {"type": "Healthy", "status": "True" if ok else "False"}
            if msg:
                cond["message"] = msg
            if error:
                cond["error"] = error
            return {
                "kind": "ComponentStatus",
                "apiVersion": "v1",
                "metadata": {"name": n},
                "conditions": [cond],
            }

        items = list(await asyncio.gather(*(one(n) for n in names)))
        res = resource("componentstatuses")
        headers = {"Warning": '299 - "v1 ComponentStatus is deprecated in v1.19+"'}
        if info.name is not None:
            resp = self.render(request, res, items[0])
        else:
            resp = self.render_list(request, res, items, {})
        resp.headers.update(headers)
        return resp

    # --- rendering ------------------------------------------------------------------------------

    def render(
        self, request: web.Request, res: Resource, obj: dict[str, Any], status: int = 200
    ) -> web.Response:
        want_table, include = _accept(request)
        if want_table:
            meta = {"resourceVersion": (obj.get("metadata") or {}).get("resourceVersion", "")}
            return _response(tables.table(res.plural, [obj], meta, include), status)
        return _response(obj, status)

    def render_list(
        self, request: web.Request, res: Resource, items: list[dict[str, Any]], meta: dict[str, Any]
    ) -> web.Response:
        want_table, include = _accept(request)
        if want_table:
            return _response(tables.table(res.plural, items, meta, include))
        return _response(
            {"kind": res.list_kind, "apiVersion": res.api_version, "metadata": meta, "items": items}
        )

    async def stream_list(
        self, request: web.Request, res: Resource, ns: str | None, lo: ListOptions
    ) -> web.StreamResponse:
        """An unpaginated JSON list, decoded, filtered and encoded LIST_CHUNK items at a time and
        streamed, so peak memory is the stored bytes plus one chunk (not every object twice)."""
        r = await self.registry.list_kvs(res, ns, lo)
        resp = web.StreamResponse(status=200, headers={"Content-Type": JSON})
        await resp.prepare(request)
        head = to_json(
            {
                "kind": res.list_kind,
                "apiVersion": res.api_version,
                "metadata": {"resourceVersion": str(r.revision)},
            }
        )
        await resp.write(head[:-1] + b',"items":[')
        filtering = lo.selector is not None or bool(lo.field_reqs)
        first = True
        kvs = r.items
        for i in range(0, len(kvs), LIST_CHUNK):
            objs = [decode(kv.value, kv.mod_revision) for kv in kvs[i : i + LIST_CHUNK]]
            if filtering:
                objs = [o for o in objs if self.registry.matches(res, lo, o)]
            if not objs:
                continue
            chunk = b",".join(to_json(o) for o in objs)
            await resp.write(chunk if first else b"," + chunk)
            first = False
        await resp.write(b"]}")
        await resp.write_eof()
        return resp

    # --- watch ------------------------------------------------------------------------------------

    async def watch(
        self, request: web.Request, res: Resource, ns: str | None, lo: ListOptions
    ) -> web.StreamResponse:
        q = request.query
        timeout = _int_param(q, "timeoutSeconds") or DEFAULT_WATCH_TIMEOUT
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        want_table, include = _accept(request)
        fmt: Any = ("table", include) if want_table else "json"
        cache = self.registry.cache(res)
        await cache.ensure_started()
        w = Watcher(ns or "", lo.label_selector, lo.field_selector, raw_json=not want_table)
        rv = lo.resource_version
        initial: list[dict[str, Any]] = []
        if not rv or rv == "0":
            items, meta = await self.registry.list(
                res,
                ns,
                ListOptions(
                    label_selector=lo.label_selector,
                    field_selector=lo.field_selector,
                    selector=lo.selector,
                    field_reqs=lo.field_reqs,
                ),
            )
            initial = items
            from_rev = int(meta["resourceVersion"])
        else:
            from_rev = int(rv)
        direct: asyncio.Task[None] | None = None
        if not cache.subscribe(w, from_rev):
            direct = asyncio.create_task(
                direct_watch(self.store, res, self.registry.cache(res).decode, w, from_rev, res.prefix(ns))
            )
        resp = web.StreamResponse(
            status=200, headers={"Content-Type": JSON, "Cache-Control": "no-cache, private"}
        )
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        deadline = time.monotonic() + timeout
        last_rv = from_rev
        try:
            if initial:
                out = []
                for obj in initial:
                    out.append(self._encode_obj("ADDED", obj, res, fmt))
                await resp.write(b"".join(out))
            next_bookmark = time.monotonic() + BOOKMARK_INTERVAL
            while True:
                now = time.monotonic()
                if now >= deadline:
                    break
                wait = min(deadline, next_bookmark) - now if bookmarks else deadline - now
                if not w.buf and not w.closed:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(w.wake.wait(), max(wait, 0.001))
                batch = w.drain()
                if w.raw_json and w.transport is None and not w.closed and request.transport is not None:
                    w.transport = request.transport  # initial events are out: allow direct writes
                if batch:
                    chunks = [
                        item if isinstance(item, bytes) else self._encode_event(item[0], item[1], res, fmt)
                        for item in batch
                    ]
                    last_rv = max(last_rv, w.last_rev)
                    await resp.write(b"".join(chunks))
                if w.closed:
                    if isinstance(w.error, Compacted):
                        e = errors.gone(
                            f"too old resource version: {w.error.requested} ({w.error.compacted + 1})"
                        )
                        await resp.write(to_json({"type": "ERROR", "object": e.status()}) + b"\n")
                    elif w.error is not None:
                        await resp.write(
                            to_json({"type": "ERROR", "object": errors.internal(str(w.error)).status()})
                            + b"\n"
                        )
                    break
                if bookmarks and time.monotonic() >= next_bookmark:
                    last_rv = max(last_rv, cache.rev if direct is None else last_rv)
                    bm = {
                        "type": "BOOKMARK",
                        "object": {
                            "kind": res.kind,
                            "apiVersion": res.api_version,
                            "metadata": {"resourceVersion": str(last_rv)},
                        },
                    }
                    await resp.write(to_json(bm) + b"\n")
                    next_bookmark = time.monotonic() + BOOKMARK_INTERVAL
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            w.transport = None
            cache.unsubscribe(w)
            w.closed = True
            if direct is not None:
                direct.cancel()
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await resp.write_eof()
        return resp

    def _encode_obj(self, etype: str, obj: dict[str, Any], res: Resource, fmt: Any) -> bytes:
        if fmt == "json":
            return to_json({"type": etype, "object": obj}) + b"\n"
        meta = {"resourceVersion": (obj.get("metadata") or {}).get("resourceVersion", "")}
        return to_json({"type": etype, "object": tables.table(res.plural, [obj], meta, fmt[1])}) + b"\n"

    def _encode_event(self, etype: str, ev: CacheEvent, res: Resource, fmt: Any) -> bytes:
        key = (etype, fmt)
        b = ev.encoded.get(key)
        if b is None:
            obj = ev.obj
            if etype == "DELETED" and ev.type == "MODIFIED" and ev.prev is not None:
                obj = copy.copy(ev.prev)
            b = ev.encoded[key] = self._encode_obj(etype, obj, res, fmt)
        return b


def _patched(cur: dict[str, Any], ptype: str, body: Any) -> dict[str, Any]:
    from hyperkube.api.patch import PatchError, apply_patch

    try:
        if ptype == "strategic":
            return strategic_merge_patch(cur, body, "Scale")
        return apply_patch(cur, ptype, body, "Scale")
    except PatchError as e:
        raise errors.bad_request(str(e)) from None


def create_app(store: Store, **options: Any) -> web.Application:
    """The API server as an aiohttp application over `store` (already started by the caller).

    Options: service_cidr, node_port_range, scheduler_health_url, controller_manager_health_url,
    advertise_address, port, max_body, watch_window."""
    opts = Options(**options)
    server = APIServer(store, opts)
    sec = opts.security
    middlewares = [sec.middleware, server.middleware] if sec is not None else [server.middleware]
    app = web.Application(middlewares=middlewares, client_max_size=opts.max_body + 1024 * 1024)
    app["apiserver"] = server
    app.router.add_route("*", "/{tail:.*}", server.dispatch)
    app.on_startup.append(server.on_startup)
    app.on_cleanup.append(server.on_cleanup)
    if sec is not None:
        app.on_startup.append(lambda _app: sec.start(server))
        app.on_cleanup.append(lambda _app: sec.stop())
    return app


async def serve(
    store: Store,
    host: str = "127.0.0.1",
    port: int = 6443,
    *,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    ssl_context: Any = None,
    **options: Any,
) -> None:
    """Run the API server until `stop` is set (or forever)."""
    options.setdefault("port", port)
    if host not in ("0.0.0.0", "::"):
        options.setdefault("advertise_address", host)
    app = create_app(store, **options)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    if options.get("security") is not None and runner.server is not None:
        options["security"].watch_connections(runner.server)
    site = web.TCPSite(runner, host, port, backlog=1024, ssl_context=ssl_context)
    await site.start()
    if ready is not None:
        ready.set()
    try:
        if stop is None:
            await asyncio.Event().wait()
        else:
            await stop.wait()
    finally:
        await runner.cleanup()
