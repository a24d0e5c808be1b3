"""Acceptance: the official ``kubernetes`` Python client, and bad input, against a real
``hyperkube server`` subprocess."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from tests.integration.conftest import APIServerProcess, start_apiserver


@pytest.fixture(scope="module")
def srv(shared_apiserver: APIServerProcess) -> APIServerProcess:
    return shared_apiserver


@pytest.fixture(scope="module")
def api(srv: APIServerProcess) -> Iterator[client.ApiClient]:
    c = config.new_client_from_config(config_file=srv.kubeconfig)
    try:
        yield c
    finally:
        c.close()


def raw(
    srv: APIServerProcess,
    method: str,
    path: str,
    body: bytes | None = None,
    content_type: str = "application/json",
) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        srv.url + path,
        data=body,
        method=method,
        headers={"Content-Type": content_type, "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def pod(name: str, labels: dict[str, str] | None = None) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels or {"app": "c"}),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox:1.36")]),
    )


def ensure_ns(api: client.ApiClient, name: str) -> None:
    try:
        client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    except ApiException as e:
        if e.status != 409:
            raise


def test_create_list_patch_delete(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    ensure_ns(api, "py")
    created = core.create_namespaced_pod("py", pod("a"))
    assert created.metadata.uid and created.metadata.resource_version and created.status.phase == "Pending"
    assert created.spec.restart_policy == "Always" and created.spec.termination_grace_period_seconds == 30
    core.create_namespaced_pod("py", pod("b", {"app": "other"}))
    names = sorted(p.metadata.name for p in core.list_namespaced_pod("py").items)
    assert names == ["a", "b"]
    assert [p.metadata.name for p in core.list_namespaced_pod("py", label_selector="app=c").items] == ["a"]
    assert [
        p.metadata.name for p in core.list_namespaced_pod("py", field_selector="metadata.name=b").items
    ] == ["b"]
    assert "a" in [p.metadata.name for p in core.list_pod_for_all_namespaces().items]
    page = core.list_namespaced_pod("py", limit=1)
    assert len(page.items) == 1 and page.metadata._continue
    rest = core.list_namespaced_pod("py", limit=1, _continue=page.metadata._continue)
    assert [p.metadata.name for p in page.items + rest.items] == ["a", "b"] and not rest.metadata._continue
    patched = core.patch_namespaced_pod("a", "py", {"metadata": {"labels": {"x": "1"}}})
    assert patched.metadata.labels == {"app": "c", "x": "1"}
    # strategic merge: containers merge by name
    apps = client.AppsV1Api(api)
    dep = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="d"),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels={"app": "d"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "d"}),
                spec=client.V1PodSpec(
                    containers=[
                        client.V1Container(name="a", image="busybox:1"),
                        client.V1Container(name="b", image="busybox:1"),
                    ]
                ),
            ),
        ),
    )
    apps.create_namespaced_deployment("py", dep)
    d = apps.patch_namespaced_deployment(
        "d", "py", {"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "busybox:2"}]}}}}
    )
    assert [(c.name, c.image) for c in d.spec.template.spec.containers] == [
        ("a", "busybox:1"),
        ("b", "busybox:2"),
    ]
    assert d.metadata.generation == 2
    scale = apps.read_namespaced_deployment_scale("d", "py")
    assert scale.spec.replicas == 1 and scale.status.selector == "app=d"
    apps.patch_namespaced_deployment_scale("d", "py", {"spec": {"replicas": 3}})
    assert apps.read_namespaced_deployment("d", "py").spec.replicas == 3
    core.delete_namespaced_pod("a", "py")
    with pytest.raises(ApiException) as ei:
        core.read_namespaced_pod("a", "py")
    assert ei.value.status == 404
    # dry run writes nothing
    core.create_namespaced_pod("py", pod("dry"), dry_run="All")
    with pytest.raises(ApiException):
        core.read_namespaced_pod("dry", "py")


def test_services_allocate_and_release(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    ensure_ns(api, "svc")
    body = client.V1Service(
        metadata=client.V1ObjectMeta(name="np"),
        spec=client.V1ServiceSpec(
            type="NodePort", selector={"a": "b"}, ports=[client.V1ServicePort(port=80, target_port=8080)]
        ),
    )
    s = core.create_namespaced_service("svc", body)
    ip, port = s.spec.cluster_ip, s.spec.ports[0].node_port
    assert ip.startswith("10.") and 30000 <= port <= 32767
    core.delete_namespaced_service("np", "svc")
    s2 = core.create_namespaced_service(
        "svc",
        client.V1Service(
            metadata=client.V1ObjectMeta(name="np2"),
            spec=client.V1ServiceSpec(
                type="NodePort", cluster_ip=ip, ports=[client.V1ServicePort(port=80, node_port=port)]
            ),
        ),
    )
    assert s2.spec.cluster_ip == ip and s2.spec.ports[0].node_port == port  # released on delete, reusable
    with pytest.raises(ApiException) as ei:
        core.create_namespaced_service(
            "svc",
            client.V1Service(
                metadata=client.V1ObjectMeta(name="np3"),
                spec=client.V1ServiceSpec(
                    type="NodePort", ports=[client.V1ServicePort(port=80, node_port=port)]
                ),
            ),
        )
    assert ei.value.status == 422 and "already allocated" in ei.value.body


def test_watch_added_modified_deleted(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    ensure_ns(api, "pyw")
    rv = core.list_namespaced_pod("pyw").metadata.resource_version
    seen: list[tuple[str, str]] = []

    def consume() -> None:
        w = watch.Watch()
        for ev in w.stream(core.list_namespaced_pod, "pyw", resource_version=rv, timeout_seconds=10):
            seen.append((ev["type"], ev["object"].metadata.name))
            if ev["type"] == "DELETED":
                w.stop()

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.5)
    core.create_namespaced_pod("pyw", pod("w"))
    core.patch_namespaced_pod("w", "pyw", {"metadata": {"labels": {"v": "2"}}})
    core.delete_namespaced_pod("w", "pyw")
    t.join(15)
    assert seen == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


def test_watch_and_list_from_compacted_revision_is_410(tmp_path: Path) -> None:
    db = tmp_path / "c" / "state.db"
    srv = start_apiserver(tmp_path / "c", storage=f"sqlite://{db}?history=1&compact_interval=1")
    try:
        c = config.new_client_from_config(config_file=srv.kubeconfig)
        core = client.CoreV1Api(c)
        for i in range(3):
            core.create_namespaced_config_map(
                "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"c{i}"))
            )
        deadline = time.monotonic() + 20
        gone = None
        while time.monotonic() < deadline:
            try:
                core.list_namespaced_config_map(
                    "default", resource_version="2", resource_version_match="Exact"
                )
            except ApiException as e:
                gone = e
                break
            time.sleep(0.3)
        assert gone is not None and gone.status == 410 and "too old resource version" in gone.body
        with pytest.raises(ApiException) as ei:
            for _ in watch.Watch().stream(
                core.list_namespaced_config_map, "default", resource_version="2", timeout_seconds=5
            ):
                pass
        assert ei.value.status == 410
        c.close()
    finally:
        srv.stop()


def store_snapshot(srv: APIServerProcess, path: str) -> Any:
    status, body = raw(srv, "GET", path)
    assert status == 200
    return body


def test_bad_input(srv: APIServerProcess, api: client.ApiClient) -> None:
    ensure_ns(api, "bad")
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(
        "bad", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="keep"), data={"a": "1"})
    )
    before = store_snapshot(srv, "/api/v1/namespaces/bad/configmaps")["items"]
    # malformed JSON
    code, st = raw(srv, "POST", "/api/v1/namespaces/bad/configmaps", b'{"metadata": {"name": "x"')
    assert code == 400 and st["kind"] == "Status" and st["reason"] == "BadRequest" and "json" in st["message"]
    # wrong kind for the URL
    body = json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}}).encode()
    code, st = raw(srv, "POST", "/api/v1/namespaces/bad/configmaps", body)
    assert code == 400 and "cannot be handled as a ConfigMap" in st["message"]
    # invalid names: 422 with field causes
    body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Not_Valid"}}).encode()
    code, st = raw(srv, "POST", "/api/v1/namespaces/bad/configmaps", body)
    assert code == 422 and st["reason"] == "Invalid"
    assert st["details"]["causes"][0]["field"] == "metadata.name"
    assert 'ConfigMap "Not_Valid" is invalid: metadata.name: Invalid value: "Not_Valid"' in st["message"]
    body = json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c"}]},
        }
    ).encode()
    code, st = raw(srv, "POST", "/api/v1/namespaces/bad/pods", body)
    assert code == 422 and st["details"]["causes"] == [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.containers[0].image"}
    ]
    # stale resourceVersion
    cm = store_snapshot(srv, "/api/v1/namespaces/bad/configmaps/keep")
    stale = dict(cm, data={"a": "2"})
    stale["metadata"] = dict(cm["metadata"], resourceVersion="1")
    code, st = raw(srv, "PUT", "/api/v1/namespaces/bad/configmaps/keep", json.dumps(stale).encode())
    assert code == 409 and st["reason"] == "Conflict" and "the object has been modified" in st["message"]
    # already exists
    code, st = raw(
        srv, "POST", "/api/v1/namespaces/bad/configmaps", json.dumps({"metadata": {"name": "keep"}}).encode()
    )
    assert (
        code == 409
        and st["reason"] == "AlreadyExists"
        and st["message"] == 'configmaps "keep" already exists'
    )
    # unsupported media type, too large, unknown path, method not allowed
    code, st = raw(srv, "POST", "/api/v1/namespaces/bad/configmaps", b"x", content_type="text/plain")
    assert code == 415 and st["reason"] == "UnsupportedMediaType"
    big = json.dumps({"metadata": {"name": "big"}, "data": {"a": "x" * (3 * 1024 * 1024 + 10)}}).encode()
    code, st = raw(srv, "POST", "/api/v1/namespaces/bad/configmaps", big)
    assert code == 413 and st["kind"] == "Status"
    code, st = raw(srv, "GET", "/api/v1/namespaces/bad/widgets")
    assert code == 404 and st["reason"] == "NotFound"
    code, st = raw(srv, "PUT", "/api/v1/namespaces/bad/configmaps", b"{}")
    assert code == 405 and st["reason"] == "MethodNotAllowed"
    code, st = raw(srv, "GET", "/api/v1/namespaces/bad/configmaps/missing")
    assert code == 404 and st["message"] == 'configmaps "missing" not found'
    # nothing was written by any of the rejected requests
    after = store_snapshot(srv, "/api/v1/namespaces/bad/configmaps")["items"]
    assert after == before
    assert store_snapshot(srv, "/api/v1/namespaces/bad/pods")["items"] == []


def test_metrics_and_version(srv: APIServerProcess) -> None:
    with urllib.request.urlopen(srv.url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    assert "apiserver_request_total{" in text and "apiserver_request_duration_seconds_bucket{" in text
    assert "etcd_request_duration_seconds_bucket{" in text
    code, v = raw(srv, "GET", "/version")
    assert code == 200 and v["major"] == "1" and v["gitVersion"].startswith("v1.")


def test_watch_selector_moves_in_and_out(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    ensure_ns(api, "pysel")
    core.create_namespaced_pod("pysel", pod("s", {"app": "no"}))
    rv = core.list_namespaced_pod("pysel").metadata.resource_version
    seen: list[tuple[str, str]] = []

    def consume() -> None:
        w = watch.Watch()
        for ev in w.stream(
            core.list_namespaced_pod,
            "pysel",
            label_selector="app=yes",
            resource_version=rv,
            timeout_seconds=10,
        ):
            seen.append((ev["type"], ev["object"].metadata.labels["app"]))
            if len(seen) == 3:
                w.stop()

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.5)
    core.patch_namespaced_pod("s", "pysel", {"metadata": {"labels": {"app": "yes"}}})
    core.patch_namespaced_pod("s", "pysel", {"metadata": {"labels": {"v": "2"}}})
    core.patch_namespaced_pod("s", "pysel", {"metadata": {"labels": {"app": "no"}}})
    t.join(15)
    # moved into the selection: ADDED; changed inside it: MODIFIED; moved out: DELETED (last state inside)
    assert seen == [("ADDED", "yes"), ("MODIFIED", "yes"), ("DELETED", "yes")]
