"""The kubelet's HTTP server: ``/healthz``, ``/pods`` and ``/containerLogs/{ns}/{pod}/{container}``.

``/containerLogs`` takes upstream's query parameters: ``follow`` (stream until the container exits or the
client goes away), ``tailLines``, ``limitBytes`` and ``previous`` (the container's previous instance, kept
by the kubelet until the next restart). The API server's ``pods/log`` subresource proxies here (the
Node's ``status.daemonEndpoints.kubeletEndpoint.Port``). Errors are ``Status`` objects.

Plain HTTP on the given address; upstream serves HTTPS with client-certificate/webhook authentication,
which is left out here: bind it to loopback or the node network only.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

from aiohttp import web

from hyperkube.kubelet.runtime.base import RuntimeError_


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}  # fmt: skip
    return web.json_response(body, status=code)


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

    app = web.Application()
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


async def serve(kubelet: Any, host: str, port: int, netns: str = "") -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(make_app(kubelet), access_log=None)
    await runner.setup()
    site: web.BaseSite
    if netns:
        sock = await asyncio.to_thread(listen_in_netns, netns, host, port)
        site = web.SockSite(runner, sock)
    else:
        site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, int(bound)
