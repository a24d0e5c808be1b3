"""Admission plugins, request attributes, hostile bodies and encryption at rest, in-process
(MemoryStore + the real Registry and admission chain)."""

from __future__ import annotations

import base64
import types
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hyperkube.api.errors import ApiError
from hyperkube.api.registry import resource
from hyperkube.apiserver import admission, hostile
from hyperkube.apiserver.admission import Chain
from hyperkube.apiserver.auth.pki import PKI
from hyperkube.apiserver.auth.rbac import UserInfo
from hyperkube.apiserver.requestinfo import attributes, is_long_running
from hyperkube.apiserver.rest import Registry
from hyperkube.storage.memory import MemoryStore

PODS = resource("pods")


@pytest.fixture
async def reg(tmp_path: Path) -> AsyncIterator[Registry]:
    store = MemoryStore()
    await store.start()
    r = Registry(store)
    await r.start()
    sec = types.SimpleNamespace(pki=PKI(str(tmp_path / "pki")).ensure())
    chain = Chain(r, sec)  # type: ignore[arg-type]
    r.admission = chain.admit
    await chain.start()
    await r.create(resource("namespaces"), None, {"metadata": {"name": "dev"}})
    try:
        yield r
    finally:
        await chain.stop()
        await r.stop()
        await store.close()


def _pod(name: str, **spec: object) -> dict:
    return {"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}


async def test_pod_defaults_service_account_tolerations_priority(reg: Registry) -> None:
    pod = await reg.create(PODS, "dev", _pod("a"))
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "default" and spec["priority"] == 0
    keys = {(t["key"], t["tolerationSeconds"]) for t in spec["tolerations"]}
    assert keys == {("node.kubernetes.io/not-ready", 300), ("node.kubernetes.io/unreachable", 300)}
    assert spec["volumes"][0]["name"].startswith("kube-api-access-")
    # the namespace got its default account and CA bundle
    assert (await reg.get(resource("configmaps"), "dev", "kube-root-ca.crt"))["data"]["ca.crt"].startswith(
        "-----"
    )
    # opting out, and a missing account
    pod = await reg.create(PODS, "dev", _pod("b", automountServiceAccountToken=False))
    assert "volumes" not in pod["spec"] or not pod["spec"]["volumes"]
    with pytest.raises(ApiError) as e:
        await reg.create(PODS, "dev", _pod("c", serviceAccountName="nope"))
    assert e.value.code == 403
    assert 'serviceaccount "nope" not found' in e.value.message


async def test_limit_range_defaults_and_maximum(reg: Registry) -> None:
    await reg.create(
        resource("limitranges"),
        "dev",
        {
            "metadata": {"name": "lr"},
            "spec": {
                "limits": [
                    {
                        "type": "Container",
                        "default": {"cpu": "500m"},
                        "defaultRequest": {"cpu": "100m"},
                        "max": {"cpu": "1"},
                    }
                ]
            },
        },
    )
    pod = await reg.create(PODS, "dev", _pod("a"))
    assert pod["spec"]["containers"][0]["resources"] == {
        "limits": {"cpu": "500m"},
        "requests": {"cpu": "100m"},
    }
    big = _pod("b")
    big["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "2"}}
    with pytest.raises(ApiError) as e:
        await reg.create(PODS, "dev", big)
    assert e.value.code == 403
    assert e.value.message == 'pods "b" is forbidden: maximum cpu usage per Container is 1, but limit is 2'


async def test_resource_quota_counts_and_compute(reg: Registry) -> None:
    rq = await reg.create(
        resource("resourcequotas"),
        "dev",
        {"metadata": {"name": "q"}, "spec": {"hard": {"pods": "1", "configmaps": "5"}}},
    )
    assert rq["status"]["hard"] == {"pods": "1", "configmaps": "5"}
    assert rq["status"]["used"]["configmaps"] == "1"  # kube-root-ca.crt
    await reg.create(PODS, "dev", _pod("a"))
    with pytest.raises(ApiError) as e:
        await reg.create(PODS, "dev", _pod("b"))
    assert e.value.code == 403
    assert "exceeded quota: q, requested: pods=1, used: pods=1, limited: pods=1" in e.value.message
    assert (await reg.get(resource("resourcequotas"), "dev", "q"))["status"]["used"]["pods"] == "1"
    # a rejected create wrote nothing
    with pytest.raises(ApiError):
        await reg.get(PODS, "dev", "b")
    await reg.create(
        resource("resourcequotas"),
        "dev",
        {"metadata": {"name": "cpu"}, "spec": {"hard": {"requests.cpu": "1"}}},
    )
    await reg.delete(PODS, "dev", "a", __import__("hyperkube.apiserver.rest", fromlist=["x"]).DeleteOptions())
    with pytest.raises(ApiError, match="must specify requests.cpu"):
        await reg.create(PODS, "dev", _pod("c"))


async def test_priority_classes(reg: Registry) -> None:
    pcs = resource("priorityclasses", "scheduling.k8s.io")
    assert (await reg.get(pcs, None, "system-node-critical"))["value"] == 2000001000
    pod = await reg.create(PODS, "dev", _pod("crit", priorityClassName="system-cluster-critical"))
    assert pod["spec"]["priority"] == 2000000000
    with pytest.raises(ApiError, match="no PriorityClass with name gold was found"):
        await reg.create(PODS, "dev", _pod("x", priorityClassName="gold"))
    await reg.create(pcs, None, {"metadata": {"name": "low"}, "value": 10, "globalDefault": True})
    pod = await reg.create(PODS, "dev", _pod("y"))
    assert pod["spec"]["priorityClassName"] == "low" and pod["spec"]["priority"] == 10
    token = admission.request_user.set(UserInfo("bob", ("system:authenticated",)))
    try:
        with pytest.raises(ApiError, match="already marked as default"):
            await reg.create(pcs, None, {"metadata": {"name": "other"}, "value": 5, "globalDefault": True})
        with pytest.raises(ApiError, match="reserved for system use"):
            await reg.create(pcs, None, {"metadata": {"name": "system-mine"}, "value": 5})
    finally:
        admission.request_user.reset(token)


async def test_node_restriction(reg: Registry) -> None:
    token = admission.request_user.set(UserInfo("system:node:n1", ("system:nodes", "system:authenticated")))
    try:
        with pytest.raises(ApiError, match="can only create mirror pods"):
            await reg.create(PODS, "dev", _pod("p", nodeName="n1"))
        with pytest.raises(ApiError, match='is not allowed to modify node "n2"'):
            await reg.create(resource("nodes"), None, {"metadata": {"name": "n2"}})
        await reg.create(resource("nodes"), None, {"metadata": {"name": "n1"}})
    finally:
        admission.request_user.reset(token)


async def test_csr_requester_and_auto_approval(reg: Registry) -> None:
    from hyperkube.client.bootstrap import make_csr

    csrs = resource("certificatesigningrequests", "certificates.k8s.io")
    pem, _ = make_csr("n7")
    body = {
        "metadata": {"name": "node-csr-1"},
        "spec": {
            "request": base64.b64encode(pem).decode(),
            "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
            "usages": ["digital signature", "client auth"],
        },
    }
    token = admission.request_user.set(UserInfo("system:bootstrap:abcdef", ("system:bootstrappers",)))
    try:
        obj = await reg.create(csrs, None, body)
    finally:
        admission.request_user.reset(token)
    assert obj["spec"]["username"] == "system:bootstrap:abcdef"
    assert obj["status"]["conditions"][0]["reason"] == "AutoApproved"
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(base64.b64decode(obj["status"]["certificate"]))
    assert cert.subject.rfc4514_string() == "CN=system:node:n7,O=system:nodes"
    # the same CSR from a plain user is not approved; garbage is refused
    token = admission.request_user.set(UserInfo("bob", ("system:authenticated",)))
    try:
        obj = await reg.create(csrs, None, {**body, "metadata": {"name": "node-csr-2"}})
        assert not obj["status"].get("conditions")
        with pytest.raises(ApiError) as e:
            await reg.create(
                csrs, None, {"metadata": {"name": "x"}, "spec": {"request": "bm9wZQ==", "signerName": "a/b"}}
            )
        assert e.value.code == 422
    finally:
        admission.request_user.reset(token)


def test_request_attributes() -> None:
    u = UserInfo("u")
    a = attributes(u, "GET", "/api/v1/namespaces/dev/pods", {})
    assert (a.verb, a.resource, a.namespace, a.name) == ("list", "pods", "dev", "")
    a = attributes(u, "GET", "/api/v1/namespaces/dev/pods", {"watch": "true"})
    assert a.verb == "watch" and is_long_running(a, {})
    a = attributes(u, "GET", "/api/v1/watch/namespaces/dev/pods/x", {})
    assert (a.verb, a.name) == ("watch", "x")
    a = attributes(u, "PATCH", "/apis/apps/v1/namespaces/dev/deployments/web/scale", {})
    assert (a.verb, a.api_group, a.resource, a.subresource, a.name) == (
        "patch",
        "apps",
        "deployments",
        "scale",
        "web",
    )
    a = attributes(u, "DELETE", "/api/v1/namespaces/dev/secrets", {})
    assert a.verb == "deletecollection"
    a = attributes(u, "GET", "/api/v1/namespaces/dev", {})
    assert (a.resource, a.name, a.namespace) == ("namespaces", "dev", "dev")
    a = attributes(u, "PUT", "/api/v1/namespaces/dev/finalize", {})
    assert (a.resource, a.subresource, a.verb) == ("namespaces", "finalize", "update")
    for path in ("/healthz", "/api", "/api/v1", "/apis/apps/v1", "/openapi/v3"):
        a = attributes(u, "GET", path, {})
        assert not a.resource_request and a.verb == "get" and a.path == path
    a = attributes(u, "GET", "/api/v1/namespaces/dev/pods/web/log", {"follow": "true"})
    assert is_long_running(a, {"follow": "true"}) and not is_long_running(a, {})


def test_hostile_bodies_are_refused_cheaply() -> None:
    deep = b"[" * 200_000 + b"]" * 200_000
    with pytest.raises(ApiError) as e:
        hostile.loads_json(deep)
    assert e.value.code == 400
    with pytest.raises(ApiError, match="nested more than"):
        hostile.loads_json(b"[" * 200 + b"]" * 200)
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(9)
    )
    with pytest.raises(ApiError, match="expands to more than"):
        hostile.loads_yaml(laughs)
    with pytest.raises(ApiError, match="refers to itself"):
        hostile.loads_yaml("a: &a [*a]\n")
    with pytest.raises(ApiError):
        hostile.loads_yaml("[" * 5000 + "]" * 5000)
    assert hostile.loads_yaml("a: &x {b: 1}\nc: *x\n") == {"a": {"b": 1}, "c": {"b": 1}}
    assert hostile.loads_json(b'{"a": [1, {"b": null}]}') == {"a": [1, {"b": None}]}


async def test_secrets_encrypted_at_rest(tmp_path: Path) -> None:
    from hyperkube.api.serialization import decode, encode
    from hyperkube.apiserver.encryption import DecryptError, EncryptedStore, load_config

    k1, k2 = base64.b64encode(b"1" * 32).decode(), base64.b64encode(b"2" * 32).decode()

    def config(*keys: tuple[str, str], identity: bool = True) -> str:
        p = tmp_path / f"enc-{len(list(tmp_path.iterdir()))}.yaml"
        providers = [{"aesgcm": {"keys": [{"name": n, "secret": s} for n, s in keys]}}]
        if identity:
            providers.append({"identity": {}})
        import yaml

        p.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "apiserver.config.k8s.io/v1",
                    "kind": "EncryptionConfiguration",
                    "resources": [{"resources": ["secrets"], "providers": providers}],
                }
            )
        )
        return str(p)

    inner = MemoryStore()
    await inner.start()
    plain_key = "/registry/secrets/dev/old"
    await inner.create(plain_key, encode({"data": {"k": "b2xk"}}))  # written before encryption
    store = EncryptedStore(inner, load_config(config(("key1", k1))))
    secret = {"metadata": {"name": "s"}, "data": {"password": base64.b64encode(b"hunter2").decode()}}
    await store.create("/registry/secrets/dev/s", encode(secret))
    await store.create("/registry/configmaps/dev/c", encode({"data": {"x": "plain"}}))
    raw = (await inner.get("/registry/secrets/dev/s")).value
    assert raw.startswith(b"k8s:enc:aesgcm:v1:key1:") and b"aHVudGVyMg" not in raw
    assert (await inner.get("/registry/configmaps/dev/c")).value == encode({"data": {"x": "plain"}})
    got = decode((await store.get("/registry/secrets/dev/s")).value, 1)
    assert got["data"] == secret["data"]
    assert decode((await store.get(plain_key)).value, 1)["data"] == {"k": "b2xk"}  # identity reads old
    listed = await store.list("/registry/secrets/")
    assert {kv.key for kv in listed.items} == {plain_key, "/registry/secrets/dev/s"}
    # rotation: the new key first, the old one still readable
    rotated = EncryptedStore(inner, load_config(config(("key2", k2), ("key1", k1))))
    assert decode((await rotated.get("/registry/secrets/dev/s")).value, 1)["data"] == secret["data"]
    await rotated.update("/registry/secrets/dev/s", encode(secret))
    assert (await inner.get("/registry/secrets/dev/s")).value.startswith(b"k8s:enc:aesgcm:v1:key2:")
    # a config that lost the key cannot read; nor can a store without the identity provider read plain
    with pytest.raises(DecryptError, match="not configured"):
        await EncryptedStore(inner, load_config(config(("key1", k1)))).get("/registry/secrets/dev/s")
    with pytest.raises(DecryptError, match="identity"):
        await EncryptedStore(inner, load_config(config(("key2", k2), identity=False))).get(plain_key)
    # a ciphertext moved under another key does not decrypt (the key is authenticated)
    await inner.create("/registry/secrets/dev/moved", (await inner.get("/registry/secrets/dev/s")).value)
    with pytest.raises(DecryptError):
        await rotated.get("/registry/secrets/dev/moved")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "kind: EncryptionConfiguration\nresources: [{resources: [secrets], providers: [{aesgcm: {keys: [{name: k, secret: c2hvcnQ=}]}}]}]\n"
    )
    with pytest.raises(ValueError, match="use 16, 24 or 32"):
        load_config(str(bad))
    await inner.close()


def test_kubelet_serving_certificate(tmp_path: Path) -> None:
    from cryptography import x509

    from hyperkube.apiserver.auth.pki import identity_of

    pki = PKI(str(tmp_path / "pki")).ensure()
    pair = pki.ensure_kubelet_serving("n1", ["10.250.0.11"])
    cert = x509.load_pem_x509_certificate(Path(pair.cert).read_bytes())
    assert identity_of(cert) == ("system:node:n1", ["system:nodes"])
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "n1" in sans.get_values_for_type(x509.DNSName)
    assert [str(i) for i in sans.get_values_for_type(x509.IPAddress)] == ["10.250.0.11"]
    assert pki.ensure_kubelet_serving("n1", ["10.250.0.11"]) == pair  # reused
    assert (Path(pair.key).stat().st_mode & 0o077) == 0


def test_audit_log_rotates(tmp_path: Path) -> None:
    import json

    from hyperkube.apiserver.security import AuditLog

    path = str(tmp_path / "audit.log")
    log = AuditLog(path, max_bytes=500, max_backups=2)  # each round of 20 lines is ~590 bytes
    for round_ in range(3):
        for i in range(20):
            log.write({"user": "u", "i": i, "round": round_})
        log.flush()
    log.close()

    def rounds(name: str) -> set[int]:
        return {json.loads(x)["round"] for x in (tmp_path / name).read_text().splitlines()}

    assert rounds("audit.log.1") == {2} and rounds("audit.log.2") == {1}
    assert not (tmp_path / "audit.log.3").exists()
    assert (tmp_path / "audit.log").stat().st_mode & 0o077 == 0
