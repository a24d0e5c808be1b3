"""Hostile clients against a real HTTPS server: oversize and deeply nested bodies, slow clients,
in-flight and watch limits (429 + Retry-After), and a hypothesis fuzz of malformed requests
(no 500, no crash, nothing written by a rejected request)."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.conftest import APIServerProcess, start_apiserver
from tests.integration.conftest_security import call, context, hyperkube


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[APIServerProcess]:
    s = start_apiserver(
        tmp_path_factory.mktemp("lim"),
        secure=True,
        extra=[
            "--max-mutating-requests-inflight",
            "1",
            "--max-watches-per-user",
            "2",
            "--request-timeout",
            "3",
            "--idle-connection-timeout",
            "2",
        ],
    )
    try:
        call(s, "POST", "/api/v1/namespaces", {"metadata": {"name": "fuzz"}})
        call(s, "POST", "/api/v1/namespaces", {"metadata": {"name": "lim"}})
        # a new namespace gets its kube-root-ca.crt ConfigMap a moment later: wait for it, so the
        # fuzz test's before/after snapshots only see what the fuzzed requests did
        for _ in range(100):
            if call(s, "GET", "/api/v1/namespaces/fuzz/configmaps/kube-root-ca.crt")[0] == 200:
                break
            time.sleep(0.1)
        hyperkube("certs", "kubeconfig", "--data-dir", s.data_dir, "--user", "jane")
        # jane may do everything in "lim" (and is not system:masters, so limits apply)
        call(
            s,
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/namespaces/lim/rolebindings",
            {
                "metadata": {"name": "jane-admin"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
                "subjects": [{"kind": "User", "name": "jane"}],
            },
        )
        yield s
    finally:
        s.stop()


def _open_stalled_post(srv: APIServerProcess, identity: str, path: str) -> ssl.SSLSocket:
    """A POST whose body never comes: it holds a mutating slot until the request timeout."""
    raw = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s = context(srv, identity).wrap_socket(raw, server_hostname="127.0.0.1")
    s.sendall(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n{".encode()
    )
    return s


def _read_status(s: ssl.SSLSocket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1]), data


def test_max_inflight_429_and_slow_client_504(srv: APIServerProcess) -> None:
    # jane's certificate was issued by `hyperkube certs kubeconfig --user jane` as pki/user-jane.*
    stalled = _open_stalled_post(srv, "user-jane", "/api/v1/namespaces/lim/configmaps")
    try:
        time.sleep(0.5)
        code, body, headers = call(
            srv,
            "POST",
            "/api/v1/namespaces/lim/configmaps",
            {"metadata": {"name": "x"}},
            identity="user-jane",
        )
        assert code == 429, body
        assert body["reason"] == "TooManyRequests" and headers.get("Retry-After") == "1"
        # reads have their own budget, and system:masters are exempt
        assert call(srv, "GET", "/api/v1/namespaces/lim/configmaps", identity="user-jane")[0] == 200
        assert call(srv, "POST", "/api/v1/namespaces/lim/configmaps", {"metadata": {"name": "adm"}})[0] == 201
        # the slow client is answered 504 at the request timeout (3 s here), freeing the slot
        stalled.settimeout(20)
        code, data = _read_status(stalled)
        assert code == 504, data
        assert b"Timeout" in data
    finally:
        stalled.close()
    code, body, _ = call(
        srv, "POST", "/api/v1/namespaces/lim/configmaps", {"metadata": {"name": "y"}}, identity="user-jane"
    )
    assert code == 201, body
    assert call(srv, "GET", "/api/v1/namespaces/lim/configmaps/x")[0] == 404


def test_slow_loris_headers_are_cut_off(srv: APIServerProcess) -> None:
    raw = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    s = context(srv, "admin").wrap_socket(raw, server_hostname="127.0.0.1")
    try:
        s.sendall(b"GET /api/v1/namespaces HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        t0 = time.monotonic()
        data = b""
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while chunk := s.recv(1024):  # the server closes the connection, answering nothing
                data += chunk
        assert data == b"" and time.monotonic() - t0 < 25
    finally:
        s.close()
    assert call(srv, "GET", "/healthz")[0] == 200


def test_watches_are_capped_per_user(srv: APIServerProcess) -> None:
    socks = []
    try:
        for _ in range(2):
            raw = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            s = context(srv, "user-jane").wrap_socket(raw, server_hostname="127.0.0.1")
            s.sendall(b"GET /api/v1/namespaces/lim/pods?watch=true HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _read_status(s)[0] == 200
            socks.append(s)
        code, body, headers = call(srv, "GET", "/api/v1/namespaces/lim/pods?watch=true", identity="user-jane")
        assert code == 429 and "too many open watches" in body["message"]
        assert headers.get("Retry-After") == "1"
    finally:
        for s in socks:
            s.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the server notices the closed watches
        code, _, _ = call(
            srv, "GET", "/api/v1/namespaces/lim/pods?watch=true&timeoutSeconds=1", identity="user-jane"
        )
        if code == 200:
            break
        time.sleep(0.2)
    assert code == 200


def test_oversize_and_deeply_nested_bodies(srv: APIServerProcess) -> None:
    big = {"metadata": {"name": "big"}, "data": {"x": "a" * (3 * 1024 * 1024 + 10)}}
    code, body, _ = call(srv, "POST", "/api/v1/namespaces/lim/configmaps", big)
    assert code == 413 and body["reason"] == "RequestEntityTooLarge"
    deep = b'{"metadata": {"name": "deep"}, "data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    code, body, _ = call(srv, "POST", "/api/v1/namespaces/lim/configmaps", raw=deep)
    assert code == 400 and "nested" in body["message"]
    deep_yaml = b"metadata: {name: deep}\ndata: " + b"[" * 100_000 + b"]" * 100_000
    code, body, _ = call(
        srv, "POST", "/api/v1/namespaces/lim/configmaps", raw=deep_yaml, content_type="application/yaml"
    )
    assert code == 400 and "nested" in body["message"]
    laughs = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 10))
    )
    code, body, _ = call(
        srv, "POST", "/api/v1/namespaces/lim/configmaps", raw=laughs.encode(), content_type="application/yaml"
    )
    assert code == 400 and "aliases" in body["message"]
    assert call(srv, "GET", "/healthz")[0] == 200


def _snapshot(srv: APIServerProcess) -> dict[str, str]:
    out = {}
    for path in (
        "/api/v1/namespaces/fuzz/configmaps",
        "/api/v1/namespaces/fuzz/pods",
        "/api/v1/namespaces/fuzz/secrets",
        "/api/v1/namespaces/fuzz/services",
        "/apis/apps/v1/namespaces/fuzz/deployments",
    ):
        code, body, _ = call(srv, "GET", path)
        assert code == 200
        for item in body["items"]:
            out[f"{path}/{item['metadata']['name']}"] = item["metadata"]["resourceVersion"]
    return out


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=20,
)
_bodies = st.one_of(
    st.binary(max_size=200),
    _json.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {
            "apiVersion": st.sampled_from(["v1", "apps/v1", "x"]),
            "kind": st.sampled_from(["ConfigMap", "Pod", "Secret", "Deployment", "Service", "Nope"]),
            "metadata": st.one_of(_json, st.fixed_dictionaries({"name": st.text(max_size=70)})),
            "spec": _json,
            "data": _json,
        }
    ).map(lambda v: json.dumps(v).encode()),
    st.text(max_size=200).map(str.encode),
)
_paths = st.sampled_from(
    [
        "/api/v1/namespaces/fuzz/configmaps",
        "/api/v1/namespaces/fuzz/configmaps/c1",
        "/api/v1/namespaces/fuzz/pods",
        "/api/v1/namespaces/fuzz/pods/p1",
        "/api/v1/namespaces/fuzz/pods/p1/status",
        "/api/v1/namespaces/fuzz/pods/p1/binding",
        "/api/v1/namespaces/fuzz/secrets",
        "/api/v1/namespaces/fuzz/services",
        "/api/v1/namespaces/fuzz/serviceaccounts/default/token",
        "/apis/apps/v1/namespaces/fuzz/deployments",
        "/apis/apps/v1/namespaces/fuzz/deployments/d1/scale",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        "/apis/certificates.k8s.io/v1/certificatesigningrequests",
        "/apis/certificates.k8s.io/v1/certificatesigningrequests/c1/approval",
        "/api/v1/namespaces/fuzz/resourcequotas",
        "/api/v1/namespaces/fuzz/limitranges",
    ]
)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    method=st.sampled_from(["POST", "PUT", "PATCH", "DELETE", "GET"]),
    path=_paths,
    query=st.sampled_from(
        [
            "",
            "?dryRun=All",
            "?fieldSelector=%%%",
            "?labelSelector=a%20in%20(",
            "?limit=-1",
            "?watch=maybe&timeoutSeconds=x",
            "?resourceVersion=abc",
        ]
    ),
    body=_bodies,
    ctype=st.sampled_from(
        [
            "application/json",
            "application/yaml",
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
            "application/json-patch+json",
            "application/vnd.kubernetes.protobuf",
            "text/plain",
        ]
    ),
    identity=st.sampled_from(["admin", "user-jane", None]),
)
def test_fuzz_no_500_and_rejected_requests_write_nothing(
    srv: APIServerProcess, method: str, path: str, query: str, body: bytes, ctype: str, identity: str | None
) -> None:
    before = _snapshot(srv)
    code, resp, _ = call(
        srv,
        method,
        path + query,
        raw=body if method != "GET" else None,
        content_type=ctype,
        identity=identity,
    )
    assert code < 500, (method, path, query, body[:200], resp)
    if isinstance(resp, dict) and code >= 400:
        assert resp.get("kind") == "Status" and resp.get("code") == code, resp
    if code >= 400:
        assert _snapshot(srv) == before, (method, path, query, body[:200], resp)
    else:
        # whatever was accepted is cleaned up so the next example starts from the same state
        for key in set(_snapshot(srv)) - set(before):
            call(srv, "DELETE", key + "?gracePeriodSeconds=0")
