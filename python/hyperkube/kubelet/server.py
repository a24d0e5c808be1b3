"""The kubelet's HTTP server: ``/healthz``, ``/pods`` and ``/containerLogs/{ns}/{pod}/{container}``.

``/containerLogs`` takes upstream's query parameters: ``follow`` (stream until the container exits or the
client goes away), ``tailLines``, ``limitBytes`` and ``previous`` (the container's previous instance, kept
by the kubelet until the next restart). The API server's ``pods/log`` subresource proxies here (the
Node's ``status.daemonEndpoints.kubeletEndpoint.Port``). Errors are ``Status`` objects.

With a serving certificate (``--tls-cert-file``/``--tls-private-key-file``, signed by the cluster CA) and
``--client-ca-file`` the server speaks HTTPS only and requires a client certificate from that CA: a
connection without one fails the TLS handshake. Authorization (upstream asks the API server with a
SubjectAccessReview for ``nodes/proxy``, ``nodes/log``...; here a fixed rule, no webhook): allowed are the
API server's client identity (CN ``kube-apiserver-kubelet-client``, as kubeadm names it) and members of
``system:masters``; anyone else (e.g. another node's ``system:node:*`` or a plain user) gets 403 with
upstream's message. Without a serving certificate the server falls back to plain HTTP without
authentication (the development path used with ``hyperkube server --insecure-http``) and logs a loud
warning: bind it to loopback or the node network only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
from typing import Any

from aiohttp import web

from hyperkube.kubelet.runtime.base import RuntimeError_


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}  # fmt: skip
    return web.json_response(body, status=code)


log = logging.getLogger("hyperkube.kubelet.server")

# the API server's identity towards kubelets (kubeadm's apiserver-kubelet-client)
APISERVER_CLIENT_CN = "kube-apiserver-kubelet-client"
ADMIN_GROUP = "system:masters"

_SUBRESOURCE = {"containerLogs": "proxy", "pods": "proxy", "healthz": "proxy", "logs": "log"}

INSECURE_WARNING = (
    "WARNING: the kubelet serves PLAIN HTTP WITHOUT AUTHENTICATION on {addr}: anyone who reaches it can read "
    "every container's logs. Give it a serving certificate (--tls-cert-file, --tls-private-key-file, "
    "--client-ca-file; `hyperkube certs kubeconfig --node NAME --serving-ip IP` issues one)."
)


def server_ssl_context(cert_file: str, key_file: str, client_ca_file: str) -> ssl.SSLContext:
    """TLS 1.2+ with the serving certificate; a client certificate from the cluster CA is required."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    ctx.load_verify_locations(client_ca_file)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _peer(request: web.Request) -> tuple[str, list[str]] | None:
    transport = request.transport
    sslobj = transport.get_extra_info("ssl_object") if transport is not None else None
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
    return cn, orgs


def authorized(cn: str, groups: list[str]) -> bool:
    return cn == APISERVER_CLIENT_CN or ADMIN_GROUP in groups


@web.middleware
async def _authz(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.transport is None or request.transport.get_extra_info("ssl_object") is None:
        return await handler(request)  # plain HTTP (development): no authentication
    who = _peer(request)
    if who is None:  # cannot happen with CERT_REQUIRED; kept as a guard
        return _status(401, "Unauthorized", "Unauthorized")
    cn, groups = who
    if not authorized(cn, groups):
        first = request.path.strip("/").split("/", 1)[0]
        sub = _SUBRESOURCE.get(first, "proxy")
        return _status(
            403,
            "Forbidden",
            f"Forbidden (user={cn}, verb=get, resource=nodes, subresource={sub})",
        )
    return await handler(request)


def _truthy(v: str | None) -> bool:
    return (v or "").lower() in ("1", "true", "yes")


def make_app(kubelet: Any) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def pods(request: web.Request) -> web.Response:
        items = kubelet.pods()
        return web.Response(
            text=json.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}),
            content_type="application/json",
        )

    async def container_logs(request: web.Request) -> web.StreamResponse:
        ns, pod, container = (
            request.match_info["ns"],
            request.match_info["pod"],
            request.match_info["container"],
        )
        q = request.query
        previous = _truthy(q.get("previous"))
        try:
            tail = int(q["tailLines"]) if q.get("tailLines") else None
            limit = int(q["limitBytes"]) if q.get("limitBytes") else None
        except ValueError:
            return _status(400, "BadRequest", "tailLines and limitBytes must be integers")
        cid = kubelet.find_container(ns, pod, container, previous=previous)
        if cid is None:
            what = "previous terminated container" if previous else "container"
            return _status(
                404 if not previous else 400,
                "NotFound" if not previous else "BadRequest",
                f'{what} "{container}" in pod "{pod}" not found',
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        await resp.prepare(request)
        try:
            async for chunk in kubelet.runtime.logs(
                cid, tail=tail, follow=_truthy(q.get("follow")), limit_bytes=limit
            ):
                await resp.write(chunk)
        except (RuntimeError_, ConnectionResetError):
            pass
        await resp.write_eof()
        return resp

    app = web.Application(middlewares=[_authz])
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/pods", pods)
    app.router.add_get("/pods/", pods)
    app.router.add_get("/containerLogs/{ns}/{pod}/{container}", container_logs)
    return app


def listen_in_netns(netns: str, host: str, port: int) -> socket.socket:
    """A listening TCP socket created inside the network namespace ``netns`` (a path): the socket stays in
    that namespace after the creating thread switched back, so the kubelet (in the host namespace, where it
    reaches the API server) serves the node's address that only exists in the node's namespace."""
    from hyperkube.kubelet.probes import _in_netns

    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(128)
        s.setblocking(False)
        return s

    return _in_netns(netns, make)  # type: ignore[no-any-return]


async def serve(
    kubelet: Any, host: str, port: int, netns: str = "", ssl_context: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, int]:
    """Serve on host:port (inside ``netns`` when given); HTTPS with client certificates when
    ``ssl_context`` is given, else plain HTTP with a loud warning."""
    runner = web.AppRunner(make_app(kubelet), access_log=None)
    await runner.setup()
    site: web.BaseSite
    if netns:
        sock = await asyncio.to_thread(listen_in_netns, netns, host, port)
        site = web.SockSite(runner, sock, ssl_context=ssl_context)
    else:
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    if ssl_context is None:
        log.warning(INSECURE_WARNING.format(addr=f"{host}:{bound}"))
    return runner, int(bound)
