"""Security of a real ``hyperkube server`` over HTTPS: authentication, RBAC, the Node authorizer,
ServiceAccount tokens, node bootstrap, audit. Real kubectl where a user would use it."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import ssl
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest

from hyperkube.apiserver.auth.pki import PKI
from tests.integration.conftest import APIServerProcess, run_kubectl, start_apiserver
from tests.integration.conftest_security import call, hyperkube


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[APIServerProcess]:
    s = start_apiserver(tmp_path_factory.mktemp("sec"), secure=True)
    try:
        yield s
    finally:
        s.stop()


def _ns(srv: APIServerProcess, name: str) -> None:
    code, body, _ = call(srv, "POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert code == 201, body


def test_kubeconfig_is_https_with_admin_certificate(srv: APIServerProcess) -> None:
    assert srv.url.startswith("https://")
    out = srv.kubectl("auth", "whoami", "-o", "json").stdout
    info = json.loads(out)["status"]["userInfo"]
    assert info["username"] == "admin"
    assert "system:masters" in info["groups"]
    for name in ("scheduler", "controller-manager", "proxy"):
        kc = Path(srv.data_dir) / f"{name}.kubeconfig"
        assert kc.stat().st_mode & 0o077 == 0
    who = json.loads(
        run_kubectl(str(Path(srv.data_dir) / "scheduler.kubeconfig"), "auth", "whoami", "-o", "json").stdout
    )
    assert who["status"]["userInfo"]["username"] == "system:kube-scheduler"


def test_no_credentials_or_bad_token_is_401(srv: APIServerProcess) -> None:
    for kw in (
        {"identity": None},
        {"identity": None, "token": "not-a-token"},
        {"identity": None, "token": "a.b.c"},
    ):
        code, body, _ = call(srv, "GET", "/api/v1/namespaces/default/pods", **kw)
        assert code == 401, (kw, body)
        assert body["kind"] == "Status" and body["reason"] == "Unauthorized" and body["code"] == 401
    # anonymous may read health and version (system:public-info-viewer), nothing else
    for path in ("/healthz", "/livez", "/readyz", "/version"):
        code, _, _ = call(srv, "GET", path, identity=None)
        assert code == 200, path
    code, _, _ = call(srv, "GET", "/metrics", identity=None)
    assert code == 401
    code, _, _ = call(srv, "GET", "/healthz", identity=None, token="bad")
    assert code == 401  # bad credentials are never downgraded to anonymous


def test_wrong_ca_or_expired_certificate_fails_the_handshake(srv: APIServerProcess, tmp_path: Path) -> None:
    """Python's ssl module (CERT_OPTIONAL) aborts the handshake for a client certificate it
    cannot verify, where Go's VerifyClientCertIfGiven would too: the client sees a TLS alert,
    not a 401."""
    other = PKI(str(tmp_path / "other")).ensure()
    foreign = other.issue("mallory", "admin", ["system:masters"])
    real = PKI(str(Path(srv.data_dir) / "pki"))
    expired = real.issue(
        "expired-admin",
        "admin",
        ["system:masters"],
        days=1,
        valid_from=dt.datetime.now(dt.UTC) - dt.timedelta(days=30),
    )
    for pair in (foreign, expired):
        ctx = ssl.create_default_context(cafile=real.ca.cert)
        ctx.load_cert_chain(pair.cert, pair.key)
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            call(srv, "GET", "/api/v1/namespaces", ctx=ctx)
    # the server is still fine
    assert call(srv, "GET", "/api/v1/namespaces")[0] == 200


def test_view_in_one_namespace_kubectl_and_can_i(srv: APIServerProcess) -> None:
    _ns(srv, "dev")
    _ns(srv, "prod")
    srv.kubectl("-n", "dev", "run", "web", "--image=busybox")
    srv.kubectl("-n", "dev", "create", "secret", "generic", "pw", "--from-literal=password=hunter2-secret")
    srv.kubectl("-n", "dev", "create", "rolebinding", "jane-view", "--clusterrole=view", "--user=jane")
    kc = hyperkube("certs", "kubeconfig", "--data-dir", srv.data_dir, "--user", "jane")

    def jane(*args: str, check: bool = True):  # noqa: ANN202
        return run_kubectl(kc, *args, check=check)

    assert "web" in jane("-n", "dev", "get", "pods").stdout
    r = jane("-n", "dev", "run", "x", "--image=busybox", check=False)
    assert r.returncode != 0
    assert (
        'pods is forbidden: User "jane" cannot create resource "pods" in API group "" in the namespace "dev"'
        in r.stderr
    )
    r = jane("-n", "dev", "get", "secret", "pw", check=False)
    assert 'secrets "pw" is forbidden: User "jane" cannot get resource "secrets"' in r.stderr
    r = jane("-n", "prod", "get", "pods", check=False)
    assert 'User "jane" cannot list resource "pods" in API group "" in the namespace "prod"' in r.stderr
    # kubectl auth can-i agrees (exit code 0 = yes, 1 = no)
    assert jane("auth", "can-i", "get", "pods", "-n", "dev").stdout.strip() == "yes"
    for args in (
        ("create", "pods", "-n", "dev"),
        ("get", "secrets", "-n", "dev"),
        ("list", "pods", "-n", "prod"),
        ("delete", "nodes"),
    ):
        r = jane("auth", "can-i", *args, check=False)
        assert (r.returncode, r.stdout.strip()) == (1, "no"), args
    listing = jane("auth", "can-i", "--list", "-n", "dev").stdout
    assert "pods" in listing and "selfsubjectaccessreviews.authorization.k8s.io" in listing
    # the administrator asks on jane's behalf (SubjectAccessReview via impersonation, and directly)
    assert srv.kubectl("auth", "can-i", "get", "pods", "-n", "dev", "--as", "jane").stdout.strip() == "yes"
    r = srv.kubectl("auth", "can-i", "create", "pods", "-n", "dev", "--as", "jane", check=False)
    assert r.stdout.strip() == "no"
    code, sar, _ = call(
        srv,
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": "jane",
                "resourceAttributes": {"namespace": "dev", "verb": "get", "resource": "pods"},
            },
        },
    )
    assert code == 201 and sar["status"]["allowed"] is True
    # jane cannot impersonate, nor review others
    r = jane("get", "pods", "-n", "dev", "--as", "admin", check=False)
    assert 'cannot impersonate resource "users"' in r.stderr


def test_kubelet_reads_only_its_own_pods_secrets(srv: APIServerProcess) -> None:
    _ns(srv, "nodes")
    for n in ("n1", "n2"):
        hyperkube("certs", "kubeconfig", "--data-dir", srv.data_dir, "--node", n)
    code, _, _ = call(
        srv,
        "POST",
        "/api/v1/namespaces/nodes/secrets",
        {"metadata": {"name": "s1"}, "stringData": {"k": "v"}},
    )
    assert code == 201
    pod = {
        "metadata": {"name": "p1"},
        "spec": {
            "nodeName": "n1",
            "containers": [{"name": "c", "image": "busybox"}],
            "volumes": [{"name": "s", "secret": {"secretName": "s1"}}],
        },
    }
    assert call(srv, "POST", "/api/v1/namespaces/nodes/pods", pod)[0] == 201
    path = "/api/v1/namespaces/nodes/secrets/s1"
    code, body, _ = call(srv, "GET", path, identity="kubelet-n1")
    assert code == 200 and body["data"]["k"]
    code, body, _ = call(srv, "GET", path, identity="kubelet-n2")
    assert code == 403, body
    assert 'no relationship found between node "n2" and this object' in body["message"]
    assert call(srv, "GET", "/api/v1/namespaces/nodes/secrets", identity="kubelet-n1")[0] == 403
    # its own Node only; and pod status only for its own pods
    node = {"metadata": {"name": "n2"}}
    code, body, _ = call(srv, "POST", "/api/v1/nodes", node, identity="kubelet-n1")
    assert code == 403 and 'is not allowed to modify node "n2"' in body["message"]
    assert call(srv, "POST", "/api/v1/nodes", {"metadata": {"name": "n1"}}, identity="kubelet-n1")[0] == 201
    code, body, _ = call(
        srv,
        "PATCH",
        "/api/v1/namespaces/nodes/pods/p1/status",
        {"status": {"phase": "Running"}},
        identity="kubelet-n2",
        content_type="application/merge-patch+json",
    )
    assert code == 403, body
    code, body, _ = call(
        srv,
        "PATCH",
        "/api/v1/namespaces/nodes/pods/p1/status",
        {"status": {"phase": "Running"}},
        identity="kubelet-n1",
        content_type="application/merge-patch+json",
    )
    assert code == 200, body
    # NodeRestriction on deletes: another node's pod, or another Node
    code, body, _ = call(srv, "DELETE", "/api/v1/namespaces/nodes/pods/p1", identity="kubelet-n2")
    assert code == 403 and "spec.nodeName set to itself" in body["message"]
    code, body, _ = call(srv, "DELETE", "/api/v1/nodes/n1", identity="kubelet-n2")
    assert code == 403
    assert call(srv, "GET", "/api/v1/namespaces/nodes/pods/p1")[0] == 200


def _token_request(srv: APIServerProcess, ns: str, pod: dict, identity: str = "admin") -> tuple[int, dict]:
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "expirationSeconds": 3607,
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": pod["metadata"]["name"],
                "uid": pod["metadata"]["uid"],
            },
        },
    }
    code, out, _ = call(
        srv, "POST", f"/api/v1/namespaces/{ns}/serviceaccounts/default/token", body, identity=identity
    )
    return code, out


def test_pod_token_works_until_the_pod_is_deleted(srv: APIServerProcess) -> None:
    _ns(srv, "tok")
    code, pod, _ = call(
        srv,
        "POST",
        "/api/v1/namespaces/tok/pods",
        {"metadata": {"name": "app"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
    )
    assert code == 201
    vol = next(v for v in pod["spec"]["volumes"] if v["name"].startswith("kube-api-access-"))
    sources = vol["projected"]["sources"]
    assert sources[0]["serviceAccountToken"]["path"] == "token"
    assert sources[1]["configMap"]["name"] == "kube-root-ca.crt"
    assert (
        pod["spec"]["containers"][0]["volumeMounts"][0]["mountPath"]
        == "/var/run/secrets/kubernetes.io/serviceaccount"
    )
    code, cm, _ = call(srv, "GET", "/api/v1/namespaces/tok/configmaps/kube-root-ca.crt")
    assert code == 200
    assert cm["data"]["ca.crt"] == (Path(srv.data_dir) / "pki" / "ca.crt").read_text()

    code, tr = _token_request(srv, "tok", pod)
    assert code == 201, tr
    token = tr["status"]["token"]
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    code, who, _ = call(
        srv, "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", review, identity=None, token=token
    )
    assert code == 201, who
    assert who["status"]["userInfo"]["username"] == "system:serviceaccount:tok:default"
    assert who["status"]["userInfo"]["extra"]["authentication.kubernetes.io/pod-name"] == ["app"]
    # what the account may do is RBAC's business: nothing yet, then view
    code, body, _ = call(srv, "GET", "/api/v1/namespaces/tok/pods", identity=None, token=token)
    assert code == 403
    assert 'User "system:serviceaccount:tok:default" cannot list resource "pods"' in body["message"]
    srv.kubectl(
        "-n", "tok", "create", "rolebinding", "sa-view", "--clusterrole=view", "--serviceaccount=tok:default"
    )
    code, body, _ = call(srv, "GET", "/api/v1/namespaces/tok/pods", identity=None, token=token)
    assert code == 200 and [p["metadata"]["name"] for p in body["items"]] == ["app"]
    # a kubelet may not mint tokens for pods on other nodes
    hyperkube("certs", "kubeconfig", "--data-dir", srv.data_dir, "--node", "n9")
    code, body = _token_request(srv, "tok", pod, identity="kubelet-n9")
    assert code == 403, body
    # the pod goes: its token stops working
    assert call(srv, "DELETE", "/api/v1/namespaces/tok/pods/app")[0] == 200
    code, body, _ = call(srv, "GET", "/api/v1/namespaces/tok/pods", identity=None, token=token)
    assert code == 401, body


def test_node_joins_with_a_bootstrap_token(srv: APIServerProcess, tmp_path: Path) -> None:
    from hyperkube.client.bootstrap import JoinError, join

    out = hyperkube("token", "create", "--data-dir", srv.data_dir, "--print-join-command")
    parts = out.split()
    token = parts[parts.index("--token") + 1]
    ca_hash = parts[parts.index("--discovery-token-ca-cert-hash") + 1]
    assert parts[parts.index("--server") + 1] == srv.url
    kc = str(tmp_path / "joiner.kubeconfig")
    asyncio.run(join(srv.url, token, "joiner", kc, ca_hash=ca_hash))
    who = json.loads(run_kubectl(kc, "auth", "whoami", "-o", "json").stdout)["status"]["userInfo"]
    assert who["username"] == "system:node:joiner"
    assert "system:nodes" in who["groups"]
    csrs = json.loads(srv.kubectl("get", "csr", "-o", "json").stdout)["items"]
    mine = [c for c in csrs if c["spec"]["username"] == f"system:bootstrap:{token.split('.')[0]}"]
    assert mine and mine[0]["status"]["conditions"][0]["type"] == "Approved"
    # the token itself can do nothing else
    code, _, _ = call(srv, "GET", "/api/v1/namespaces/default/secrets", identity=None, token=token)
    assert code == 403
    # a wrong token or a wrong CA hash cannot join
    with pytest.raises(JoinError, match="401"):
        asyncio.run(join(srv.url, "abcdef.0000000000000000", "evil", kc + "2", ca_hash=ca_hash))
    with pytest.raises(JoinError, match="does not match"):
        asyncio.run(join(srv.url, token, "evil", kc + "2", ca_hash="sha256:" + "0" * 64))


def test_manual_csr_approval_with_kubectl(srv: APIServerProcess) -> None:
    import base64

    from hyperkube.client.bootstrap import make_csr

    csr_pem, _ = make_csr("ignored")
    body = {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": "bob-csr"},
        "spec": {
            "request": base64.b64encode(csr_pem).decode(),
            "signerName": "kubernetes.io/kube-apiserver-client",
            "usages": ["client auth"],
            "username": "forged",
        },
    }
    code, csr, _ = call(srv, "POST", "/apis/certificates.k8s.io/v1/certificatesigningrequests", body)
    assert code == 201, csr
    assert csr["spec"]["username"] == "admin"  # set from the requester, never from the body
    assert not csr["status"].get("certificate")
    # approving needs "approve" on the signer: jane (a plain user) cannot
    kc = hyperkube("certs", "kubeconfig", "--data-dir", srv.data_dir, "--user", "jane")
    r = run_kubectl(kc, "certificate", "approve", "bob-csr", check=False)
    assert r.returncode != 0 and "forbidden" in r.stderr
    srv.kubectl("certificate", "approve", "bob-csr")
    code, csr, _ = call(srv, "GET", "/apis/certificates.k8s.io/v1/certificatesigningrequests/bob-csr")
    assert csr["status"]["conditions"][0]["type"] == "Approved"
    assert base64.b64decode(csr["status"]["certificate"]).startswith(b"-----BEGIN CERTIFICATE-----")


def test_audit_log_records_users_and_codes_but_no_secret_data(srv: APIServerProcess) -> None:
    call(srv, "GET", "/api/v1/namespaces/default/pods", identity=None)
    srv.kubectl(
        "-n", "default", "create", "secret", "generic", "audit-me", "--from-literal=v=sup3r-s3cret-value"
    )
    path = Path(srv.data_dir) / "audit.log"
    deadline = time.monotonic() + 10
    lines: list[dict] = []
    while time.monotonic() < deadline:
        text = path.read_text()
        lines = [json.loads(x) for x in text.splitlines() if x]
        if any(e.get("resource") == "secrets" and e.get("verb") == "create" for e in lines):
            break
        time.sleep(0.3)
    assert any(e.get("code") == 401 and e.get("resource") == "pods" for e in lines)
    created = [e for e in lines if e.get("resource") == "secrets" and e.get("verb") == "create"]
    assert created and created[-1]["user"] == "admin" and created[-1]["code"] == 201
    assert "sup3r-s3cret-value" not in path.read_text()
    assert "c3VwM3ItczNjcmV0LXZhbHVl" not in path.read_text()  # nor its base64
    assert path.stat().st_mode & 0o077 == 0


def test_secrets_encrypted_at_rest_in_a_real_server(tmp_path: Path) -> None:
    import base64
    import sqlite3

    key = base64.b64encode(b"k" * 32).decode()
    cfg = tmp_path / "enc.yaml"
    cfg.write_text(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n"
        f"- resources: [secrets]\n  providers:\n  - aesgcm:\n      keys:\n      - name: key1\n        secret: {key}\n"
        "  - identity: {}\n"
    )
    s = start_apiserver(tmp_path / "enc", secure=True, extra=["--encryption-provider-config", str(cfg)])
    try:
        s.kubectl("create", "secret", "generic", "db", "--from-literal=password=plaintext-hunter2")
        s.kubectl("create", "configmap", "cm", "--from-literal=x=visible-value")
        out = s.kubectl("get", "secret", "db", "-o", "jsonpath={.data.password}").stdout
        assert base64.b64decode(out) == b"plaintext-hunter2"
    finally:
        s.stop()
    db = sqlite3.connect(str(tmp_path / "enc" / "state.db"))
    blob = b"".join(
        bytes(v) for (v,) in db.execute("SELECT value FROM kv") if isinstance(v, bytes | memoryview)
    )
    db.close()
    assert b"visible-value" in blob  # configmaps are not encrypted
    assert b"plaintext-hunter2" not in blob and base64.b64encode(b"plaintext-hunter2") not in blob
    assert b"k8s:enc:aesgcm:v1:key1:" in blob
