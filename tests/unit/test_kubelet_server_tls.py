"""The kubelet server over HTTPS: serving certificate of the cluster CA, client certificates required,
only the API server's identity (kube-apiserver-kubelet-client) and system:masters are allowed."""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp
import pytest

from hyperkube.apiserver.auth.pki import PKI
from hyperkube.kubelet import server


class _Kl:
    def pods(self) -> list[dict[str, Any]]:
        return [{"metadata": {"name": "p"}}]


@pytest.fixture
def pki(tmp_path) -> PKI:  # type: ignore[no-untyped-def]
    p = PKI(str(tmp_path / "pki")).ensure()
    p.ensure_kubelet_serving("node-t", ["127.0.0.1"])
    p.issue("alice", "alice", ["developers"])
    p.ensure_kubelet("node-other")
    return p


def _client_ctx(pki: PKI, identity: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=pki.ca.cert)
    if identity:
        pair = pki.pair(identity)
        ctx.load_cert_chain(pair.cert, pair.key)
    return ctx


async def test_https_requires_client_cert_and_authorizes(pki: PKI) -> None:
    serving = pki.pair("kubelet-node-t-serving")
    tls = server.server_ssl_context(serving.cert, serving.key, pki.ca.cert)
    runner, port = await server.serve(_Kl(), "127.0.0.1", 0, ssl_context=tls)
    base = f"https://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:

            async def get(path: str, identity: str | None) -> tuple[int, Any]:
                async with http.get(base + path, ssl=_client_ctx(pki, identity)) as r:
                    return (
                        r.status,
                        await r.json() if r.content_type == "application/json" else await r.text(),
                    )

            # the API server's identity and cluster admins may read
            assert await get("/healthz", "apiserver-kubelet-client") == (200, "ok")
            code, body = await get("/pods", "admin")
            assert code == 200 and body["items"][0]["metadata"]["name"] == "p"
            # a valid certificate of a plain user, or of another node: 403 with upstream's message
            code, body = await get("/containerLogs/default/p/c", "alice")
            assert code == 403 and body["reason"] == "Forbidden"
            assert body["message"] == "Forbidden (user=alice, verb=get, resource=nodes, subresource=proxy)"
            code, body = await get("/pods", "kubelet-node-other")
            assert code == 403 and "user=system:node:node-other" in body["message"]
            # no client certificate: the TLS handshake fails, nothing is served
            with pytest.raises((aiohttp.ClientError, ssl.SSLError, OSError)):
                await get("/healthz", None)
            # plain HTTP on the HTTPS port gets nothing either
            with pytest.raises((aiohttp.ClientError, OSError)):
                async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                    assert r.status == 400  # aiohttp may answer the garbage; never with data
                    raise aiohttp.ClientError("plain HTTP refused")
    finally:
        await runner.cleanup()


async def test_plain_http_without_cert_warns(caplog: pytest.LogCaptureFixture) -> None:
    runner, port = await server.serve(_Kl(), "127.0.0.1", 0)
    try:
        assert "PLAIN HTTP WITHOUT AUTHENTICATION" in caplog.text
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as r:
            assert r.status == 200
    finally:
        await runner.cleanup()
