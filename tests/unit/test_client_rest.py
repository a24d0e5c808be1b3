"""The REST client against the fake API server: verbs, URLs, typed errors, pages, watch, kubeconfig."""

from __future__ import annotations

import asyncio
import base64

import pytest

from hyperkube.client import (
    DEPLOYMENTS,
    NODES,
    PODS,
    AlreadyExists,
    Client,
    Conflict,
    Expired,
    Gone,
    Invalid,
    NotFound,
    Resource,
    errors,
    load_kubeconfig,
    resource,
)
from tests.unit import conftest_client
from tests.unit.conftest_client import FakeApiServer

fake_api = conftest_client.fake_api  # the shared fixtures
fake_client = conftest_client.fake_client  # the shared fixtures


def pod(name: str, ns: str = "default", labels: dict | None = None) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }


def test_paths_follow_upstream_layout() -> None:
    assert PODS.path("ns1") == "/api/v1/namespaces/ns1/pods"
    assert PODS.path("ns1", "p", "status") == "/api/v1/namespaces/ns1/pods/p/status"
    assert PODS.path() == "/api/v1/pods"
    assert DEPLOYMENTS.path("d", "web", "scale") == "/apis/apps/v1/namespaces/d/deployments/web/scale"
    assert NODES.path(None, "n1") == "/api/v1/nodes/n1"
    assert NODES.path("ignored", "n1") == "/api/v1/nodes/n1"
    assert resource("deploy") is DEPLOYMENTS
    assert resource("deployments.apps") is DEPLOYMENTS
    assert resource("Pod") is PODS
    assert (
        Resource("example.com", "v1", "widgets").path("x", "w")
        == "/apis/example.com/v1/namespaces/x/widgets/w"
    )
    with pytest.raises(KeyError):
        resource("nosuch")
    with pytest.raises(ValueError):
        PODS.path("ns", "")


def test_error_from_status_prefers_reason() -> None:
    st = {"kind": "Status", "code": 409, "reason": "AlreadyExists", "message": "x exists"}
    e = errors.error_from_status(st)
    assert isinstance(e, AlreadyExists) and not isinstance(e, Conflict)
    assert isinstance(errors.error_from_status({"kind": "Status", "code": 410, "reason": "Expired"}), Expired)
    assert isinstance(errors.error_from_status({"kind": "Status", "code": 410, "reason": "Expired"}), Gone)
    assert isinstance(errors.error_from_status(None, 404, "nope"), NotFound)
    e = errors.error_from_status(
        {
            "kind": "Status",
            "code": 422,
            "reason": "Invalid",
            "message": "bad",
            "details": {"causes": [{"field": "spec"}]},
        }
    )
    assert isinstance(e, Invalid) and e.causes == [{"field": "spec"}]
    assert str(e) == "422 Invalid: bad"


async def test_crud_and_typed_errors(fake_client: Client, fake_api: FakeApiServer) -> None:
    c = fake_client
    created = await c.create(PODS, pod("a"))
    assert created["metadata"]["uid"]
    with pytest.raises(AlreadyExists) as ei:
        await c.create(PODS, pod("a"))
    assert ei.value.code == 409 and "already exists" in ei.value.message
    got = await c.get(PODS, "a", "default")
    assert got["metadata"]["name"] == "a"
    with pytest.raises(NotFound):
        await c.get("pods", "zzz", "default")
    # conditional update: stale resourceVersion → Conflict
    stale = dict(got)
    got["metadata"]["labels"] = {"x": "1"}
    upd = await c.update(PODS, got)
    assert upd["metadata"]["labels"] == {"x": "1"}
    with pytest.raises(Conflict):
        await c.update(PODS, stale)
    # patches
    p = await c.patch(PODS, "a", {"metadata": {"labels": {"y": "2"}}}, "default")
    assert p["metadata"]["labels"] == {"x": "1", "y": "2"}
    p = await c.patch(
        PODS, "a", [{"op": "remove", "path": "/metadata/labels/x"}], "default", patch_type="json"
    )
    assert p["metadata"]["labels"] == {"y": "2"}
    assert fake_api.requests[-1][0] == "PATCH"
    with pytest.raises(ValueError):
        await c.patch(PODS, "a", {}, "default", patch_type="bogus")
    st = await c.update_status(PODS, dict(p, status={"phase": "Running"}))
    assert st["status"]["phase"] == "Running"
    await c.delete(PODS, "a", "default", propagation_policy="Foreground")
    with pytest.raises(NotFound):
        await c.get(PODS, "a", "default")


async def test_injected_server_errors_are_typed(fake_client: Client, fake_api: FakeApiServer) -> None:
    fake_api.fail_next(500, "InternalError")
    with pytest.raises(errors.InternalError):
        await fake_client.list(PODS)
    fake_api.fail_next(403, "Forbidden")
    with pytest.raises(errors.Forbidden):
        await fake_client.list(PODS)
    # 429 is retried
    fake_api.fail_next(429, "TooManyRequests")
    assert (await fake_client.list(PODS))["items"] == []


async def test_list_pages_with_limit_and_continue(fake_client: Client, fake_api: FakeApiServer) -> None:
    for i in range(23):
        await fake_client.create(PODS, pod(f"p{i:02}", labels={"app": "web" if i % 2 else "db"}))
    page = await fake_client.list(PODS, "default", limit=10)
    assert len(page["items"]) == 10 and page["metadata"]["continue"]
    full = await fake_client.list_all(PODS, page_size=5)
    assert [o["metadata"]["name"] for o in full["items"]] == [f"p{i:02}" for i in range(23)]
    assert "continue" not in full["metadata"]
    limits = [q.get("limit") for m, path, q in fake_api.requests if path == "/api/v1/pods"]
    assert limits[-5:] == ["5"] * 5
    web = await fake_client.list_all(PODS, label_selector="app=web")
    assert len(web["items"]) == 11


async def test_watch_streams_events_and_raises_on_error(fake_client: Client, fake_api: FakeApiServer) -> None:
    start = (await fake_client.list(PODS))["metadata"]["resourceVersion"]
    seen: list[tuple[str, str]] = []

    async def consume() -> None:
        async for ev in fake_client.watch(PODS, "default", resource_version=start):
            seen.append((ev.type, ev.object["metadata"]["name"]))

    task = asyncio.create_task(consume())
    await fake_client.create(PODS, pod("w1"))
    await fake_client.patch(PODS, "w1", {"metadata": {"labels": {"a": "b"}}}, "default")
    await fake_client.delete(PODS, "w1", "default")
    for _ in range(200):
        if len(seen) == 3:
            break
        await asyncio.sleep(0.01)
    assert seen == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]
    fake_api.send_watch_error(410, "Expired")
    with pytest.raises(Expired):
        await asyncio.wait_for(task, 5)
    fake_api.compact()
    with pytest.raises(Gone):
        async for _ in fake_client.watch(PODS, resource_version=start):
            pass


async def test_watch_handles_large_objects(fake_client: Client, fake_api: FakeApiServer) -> None:
    big = pod("big")
    big["metadata"]["annotations"] = {"blob": "x" * 300_000}
    await fake_client.create(PODS, big)
    async for ev in fake_client.watch(PODS):
        assert len(ev.object["metadata"]["annotations"]["blob"]) == 300_000
        break


async def test_subresources(fake_client: Client, fake_api: FakeApiServer) -> None:
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 2},
    }
    await fake_client.create(DEPLOYMENTS, dep)
    assert (await fake_client.get_scale(DEPLOYMENTS, "web", "default"))["spec"]["replicas"] == 2
    await fake_client.scale(DEPLOYMENTS, "web", 7, "default")
    assert (await fake_client.get(DEPLOYMENTS, "web", "default"))["spec"]["replicas"] == 7
    await fake_client.create(PODS, pod("p"))
    await fake_client.bind("default", "p", "node-1")
    assert fake_api.requests[-1][:2] == ("POST", "/api/v1/namespaces/default/pods/p/binding")


def test_kubeconfig(tmp_path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("dummy")
    cfg = tmp_path / "kubeconfig"
    cfg.write_text(
        f"""
apiVersion: v1
kind: Config
current-context: c2
clusters:
- name: one
  cluster: {{server: "https://127.0.0.1:6443/", certificate-authority: ca.crt}}
- name: two
  cluster: {{server: "http://127.0.0.1:8080", insecure-skip-tls-verify: true}}
contexts:
- name: c1
  context: {{cluster: one, user: u1}}
- name: c2
  context: {{cluster: two, user: u2, namespace: team}}
users:
- name: u1
  user: {{token: abc, client-certificate-data: {base64.b64encode(b"CERT").decode()}}}
- name: u2
  user: {{token: xyz}}
"""
    )
    k = load_kubeconfig(str(cfg))
    assert (k.server, k.token, k.namespace, k.insecure) == ("http://127.0.0.1:8080", "xyz", "team", True)
    assert k.ssl_context() is None
    k1 = load_kubeconfig(str(cfg), context="c1")
    assert k1.server == "https://127.0.0.1:6443" and k1.token == "abc" and k1.ca_file == str(ca)
    assert k1.cert_data == b"CERT"
    c = Client.from_kubeconfig(str(cfg))
    assert c.base_url == "http://127.0.0.1:8080" and c.namespace == "team"
    with pytest.raises(ValueError, match="no context named"):
        load_kubeconfig(str(cfg), context="nope")
    with pytest.raises(ValueError, match="cannot read kubeconfig .*nonexistent"):
        load_kubeconfig(str(tmp_path / "nonexistent"))
    (tmp_path / "bad").write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="expected a mapping"):
        load_kubeconfig(str(tmp_path / "bad"))


async def test_tls_with_client_certificates_from_kubeconfig(tmp_path) -> None:
    """The path the components take once the API server serves HTTPS with client certificates."""
    import ssl

    from aiohttp import web

    from hyperkube.apiserver.auth.pki import PKI

    pki = PKI(str(tmp_path / "pki")).ensure()
    server, ident, ca = pki.pair("apiserver"), pki.pair("controller-manager"), pki.pair("ca")
    sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    sctx.load_cert_chain(server.cert, server.key)
    sctx.load_verify_locations(ca.cert)
    sctx.verify_mode = ssl.CERT_REQUIRED

    async def who(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert")
        cn = dict(x[0] for x in peer["subject"])["commonName"]
        return web.json_response({"kind": "Pod", "metadata": {"name": cn}})

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/default/pods/me", who)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=sctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]

    def b64(path: str) -> str:
        with open(path, "rb") as f:
            return base64.b64encode(f.read()).decode()

    cfg = tmp_path / "kubeconfig"
    cfg.write_text(
        f"""
apiVersion: v1
kind: Config
current-context: c
clusters: [{{name: k, cluster: {{server: "https://127.0.0.1:{port}", certificate-authority-data: {b64(ca.cert)}}}}}]
contexts: [{{name: c, context: {{cluster: k, user: u}}}}]
users: [{{name: u, user: {{client-certificate-data: {b64(ident.cert)}, client-key-data: {b64(ident.key)}}}}}]
"""
    )
    c = Client.from_kubeconfig(str(cfg))
    try:
        got = await c.get(PODS, "me", "default")
        assert got["metadata"]["name"] == "system:kube-controller-manager"
    finally:
        await c.close()
    # without the CA the server's certificate is refused
    bare = Client(f"https://127.0.0.1:{port}")
    try:
        with pytest.raises(Exception, match="(?i)certificate"):
            await bare.get(PODS, "me", "default")
    finally:
        await bare.close()
        await runner.cleanup()
