"""Acceptance: the real kubectl (v1.32 on PATH, and 1.27 from the SDK folder) against a real
``hyperkube server`` subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.integration.conftest import KUBECTL, APIServerProcess, kubectl_path

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")

DEPLOY = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {ns}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: web
        image: busybox:1.36
        ports:
        - containerPort: 8080
        env:
        - {{name: MODE, value: "{mode}"}}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: {ns}
spec:
  selector: {{app: web}}
  ports:
  - port: 80
    targetPort: 8080
"""


def pod_manifest(name: str, ns: str, labels: dict[str, str] | None = None, node: str | None = None) -> str:
    spec: dict[str, object] = {"containers": [{"name": "c", "image": "busybox:1.36"}]}
    if node:
        spec["nodeName"] = node
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels or {"app": "web"}},
            "spec": spec,
        }
    )


NODE = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {"name": "node-a", "labels": {"node-role.kubernetes.io/worker": ""}},
    "status": {
        "conditions": [{"type": "Ready", "status": "True"}],
        "addresses": [{"type": "InternalIP", "address": "10.1.0.5"}],
        "nodeInfo": {
            "kubeletVersion": "v1.32.0",
            "osImage": "Debian GNU/Linux 12",
            "kernelVersion": "6.1.0",
            "containerRuntimeVersion": "runc://1.1.5",
        },
        "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
    },
}


@pytest.fixture(scope="module")
def srv(shared_apiserver: APIServerProcess) -> APIServerProcess:
    return shared_apiserver


def k(srv: APIServerProcess, *args: str, **kw: object) -> str:
    return srv.kubectl(*args, **kw).stdout  # type: ignore[arg-type]


def header(out: str) -> list[str]:
    return out.splitlines()[0].split()


def test_healthz_and_api_resources(srv: APIServerProcess) -> None:
    assert k(srv, "get", "--raw", "/healthz") == "ok"
    assert "readyz check passed" in k(srv, "get", "--raw", "/readyz?verbose")
    out = k(srv, "api-resources")
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    for name, short in [
        ("pods", "po"),
        ("nodes", "no"),
        ("services", "svc"),
        ("deployments", "deploy"),
        ("replicasets", "rs"),
        ("namespaces", "ns"),
        ("configmaps", "cm"),
        ("endpoints", "ep"),
        ("serviceaccounts", "sa"),
        ("componentstatuses", "cs"),
    ]:
        assert name in rows, out
        assert f" {short} " in rows[name], rows[name]
    assert "apps/v1" in rows["deployments"] and "rbac.authorization.k8s.io/v1" in rows["clusterroles"]
    assert "leases" in rows and "endpointslices" in rows and "priorityclasses" in rows


def test_create_namespace_apply_and_reapply(srv: APIServerProcess, tmp_path: Path) -> None:
    assert "namespace/acc created" in k(srv, "create", "namespace", "acc")
    f = tmp_path / "app.yaml"
    f.write_text(DEPLOY.format(ns="acc", replicas=2, mode="one"))
    out = k(srv, "apply", "-f", str(f))
    assert "deployment.apps/web created" in out and "service/web created" in out
    f.write_text(DEPLOY.format(ns="acc", replicas=3, mode="two"))
    out = k(srv, "apply", "-f", str(f))
    assert "deployment.apps/web configured" in out and "service/web unchanged" in out
    d = json.loads(k(srv, "-n", "acc", "get", "deploy", "web", "-o", "json"))
    assert d["spec"]["replicas"] == 3
    assert d["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "MODE", "value": "two"}]
    assert d["metadata"]["generation"] == 2
    # defaulting as upstream
    c = d["spec"]["template"]["spec"]["containers"][0]
    assert c["imagePullPolicy"] == "IfNotPresent" and c["ports"][0]["protocol"] == "TCP"
    assert d["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": "25%"}
    svc = json.loads(k(srv, "-n", "acc", "get", "svc", "web", "-o", "json"))
    assert svc["spec"]["clusterIP"].startswith("10.9") and svc["spec"]["ports"][0]["targetPort"] == 8080
    kube = json.loads(k(srv, "-n", "default", "get", "svc", "kubernetes", "-o", "json"))
    assert kube["spec"]["clusterIP"] == "10.96.0.1"


def test_get_pods_wide_nodes_and_all(srv: APIServerProcess) -> None:
    k(srv, "create", "namespace", "wide")
    k(srv, "create", "-f", "-", input=json.dumps(NODE))
    k(srv, "create", "-f", "-", input=pod_manifest("p-bound", "wide", node="node-a"))
    k(srv, "create", "-f", "-", input=pod_manifest("p-pending", "wide"))
    out = k(srv, "-n", "wide", "get", "pods", "-o", "wide")
    assert header(out) == [
        "NAME",
        "READY",
        "STATUS",
        "RESTARTS",
        "AGE",
        "IP",
        "NODE",
        "NOMINATED",
        "NODE",
        "READINESS",
        "GATES",
    ]
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["p-bound"][1:4] == ["0/1", "Pending", "0"] and rows["p-bound"][6] == "node-a"
    assert rows["p-pending"][6] == "<none>"
    nodes = k(srv, "get", "nodes")
    assert header(nodes) == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert nodes.splitlines()[1].split()[:3] == ["node-a", "Ready", "worker"]
    assert "v1.32.0" in nodes
    assert "10.1.0.5" in k(srv, "get", "nodes", "-o", "wide")
    k(srv, "-n", "wide", "create", "deployment", "d1", "--image=busybox:1.36", "--replicas=2")
    k(srv, "-n", "wide", "create", "service", "clusterip", "s1", "--tcp=80:8080")
    all_ = k(srv, "-n", "wide", "get", "all")
    assert "pod/p-bound" in all_ and "service/s1" in all_ and "deployment.apps/d1" in all_
    assert "TYPE" in all_ and "CLUSTER-IP" in all_ and "UP-TO-DATE" in all_


def test_label_annotate_scale(srv: APIServerProcess) -> None:
    k(srv, "create", "namespace", "lab")
    k(srv, "create", "-f", "-", input=pod_manifest("p1", "lab"))
    assert "pod/p1 labeled" in k(srv, "-n", "lab", "label", "pod", "p1", "tier=front")
    assert "pod/p1 annotated" in k(srv, "-n", "lab", "annotate", "pod", "p1", "note=hello")
    p = json.loads(k(srv, "-n", "lab", "get", "pod", "p1", "-o", "json"))
    assert (
        p["metadata"]["labels"] == {"app": "web", "tier": "front"}
        and p["metadata"]["annotations"]["note"] == "hello"
    )
    assert k(srv, "-n", "lab", "get", "pods", "-l", "tier=front", "-o", "name").split() == ["pod/p1"]
    assert k(srv, "-n", "lab", "get", "pods", "-l", "tier=back", "-o", "name").strip() == ""
    k(srv, "-n", "lab", "create", "deployment", "d", "--image=busybox:1.36")
    assert "deployment.apps/d scaled" in k(srv, "-n", "lab", "scale", "deployment", "d", "--replicas=4")
    assert json.loads(k(srv, "-n", "lab", "get", "deploy", "d", "-o", "json"))["spec"]["replicas"] == 4
    out = k(srv, "-n", "lab", "get", "deploy", "d")
    assert header(out) == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"] and "0/4" in out


def test_get_pods_watch_sees_changes(srv: APIServerProcess) -> None:
    k(srv, "create", "namespace", "wat")
    env = dict(os.environ, KUBECONFIG=srv.kubeconfig)
    proc = subprocess.Popen(
        [KUBECTL or "kubectl", "-n", "wat", "get", "pods", "-w"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: list[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        time.sleep(1.0)
        k(srv, "create", "-f", "-", input=pod_manifest("w1", "wat"))
        k(srv, "-n", "wat", "label", "pod", "w1", "x=y")
        k(srv, "-n", "wat", "delete", "pod", "w1")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and sum("w1" in ln for ln in lines) < 3:
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(5)
    w1 = [ln.split() for ln in lines if ln.startswith("w1")]
    assert len(w1) >= 3, lines
    assert w1[0][2] == "Pending"


def test_delete_with_and_without_wait(srv: APIServerProcess) -> None:
    k(srv, "create", "namespace", "del")
    k(srv, "create", "-f", "-", input=pod_manifest("gone-now", "del"))
    assert 'pod "gone-now" deleted' in k(srv, "-n", "del", "delete", "pod", "gone-now")
    assert k(srv, "-n", "del", "get", "pod", "gone-now", check=False).returncode != 0 if False else True
    r = srv.kubectl("-n", "del", "get", "pod", "gone-now", check=False)
    assert r.returncode == 1 and 'pods "gone-now" not found' in r.stderr
    # a pod on a node is only marked for deletion: its kubelet finishes it
    node = dict(NODE, metadata={"name": "node-del"})
    k(srv, "create", "-f", "-", input=json.dumps(node))
    k(srv, "create", "-f", "-", input=pod_manifest("graceful", "del", node="node-del"))
    assert 'pod "graceful" deleted' in k(srv, "-n", "del", "delete", "pod", "graceful", "--wait=false")
    p = json.loads(k(srv, "-n", "del", "get", "pod", "graceful", "-o", "json"))
    assert p["metadata"]["deletionTimestamp"] and p["metadata"]["deletionGracePeriodSeconds"] == 30
    assert "Terminating" in k(srv, "-n", "del", "get", "pod", "graceful")
    # what the kubelet does once the containers are gone: delete with grace 0
    k(srv, "-n", "del", "delete", "pod", "graceful", "--grace-period=0", "--force")
    assert srv.kubectl("-n", "del", "get", "pod", "graceful", check=False).returncode == 1
    k(srv, "-n", "del", "create", "configmap", "cm1", "--from-literal=a=b")
    assert 'configmap "cm1" deleted' in k(srv, "-n", "del", "delete", "configmap", "cm1", "--wait=true")


def test_get_componentstatuses(srv: APIServerProcess) -> None:
    r = srv.kubectl("get", "cs")
    out = r.stdout
    assert header(out) == ["NAME", "STATUS", "MESSAGE", "ERROR"]
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert set(rows) == {"scheduler", "controller-manager", "etcd-0"}
    assert "Healthy" in rows["etcd-0"] and '{"health":"true"}' in rows["etcd-0"]
    assert "Unhealthy" in rows["scheduler"] and "connection refused" in rows["scheduler"]
    assert "ComponentStatus is deprecated" in r.stderr


def test_namespace_lifecycle(srv: APIServerProcess) -> None:
    k(srv, "create", "namespace", "doomed")
    k(srv, "-n", "doomed", "create", "configmap", "c", "--from-literal=a=b")
    k(srv, "delete", "namespace", "doomed")
    assert srv.kubectl("get", "namespace", "doomed", check=False).returncode == 1
    r = srv.kubectl("-n", "nowhere", "create", "configmap", "c", "--from-literal=a=b", check=False)
    assert r.returncode == 1 and 'namespaces "nowhere" not found' in r.stderr


@pytest.mark.skipif(kubectl_path("1.27") is None, reason="kubectl.1.27 is not installed beside kubectl")
def test_kubectl_127(srv: APIServerProcess, tmp_path: Path) -> None:
    old = kubectl_path("1.27")
    assert srv.kubectl("get", "--raw", "/healthz", binary=old).stdout == "ok"
    assert "deployments" in srv.kubectl("api-resources", binary=old).stdout
    srv.kubectl("create", "namespace", "old", binary=old)
    f = tmp_path / "app.yaml"
    f.write_text(DEPLOY.format(ns="old", replicas=1, mode="a"))
    assert "created" in srv.kubectl("apply", "-f", str(f), binary=old).stdout
    f.write_text(DEPLOY.format(ns="old", replicas=2, mode="b"))
    assert "configured" in srv.kubectl("apply", "-f", str(f), binary=old).stdout
    srv.kubectl("create", "-f", "-", input=pod_manifest("p", "old"), binary=old)
    out = srv.kubectl("-n", "old", "get", "pods", "-o", "wide", binary=old).stdout
    assert out.split()[0] == "NAME" and "p " in out
    assert "scaled" in srv.kubectl("-n", "old", "scale", "deploy", "web", "--replicas=3", binary=old).stdout
    assert "deleted" in srv.kubectl("-n", "old", "delete", "pod", "p", binary=old).stdout


def test_explain_pod_spec(srv: APIServerProcess) -> None:
    out = k(srv, "explain", "pod.spec")
    assert "KIND:       Pod" in out and "FIELD: spec <PodSpec>" in out
    assert "containers\t<[]Container> -required-" in out
    assert "Number of desired pods" in k(srv, "explain", "deployment.spec.replicas")


def test_unknown_fields_strict_warn_ignore(srv: APIServerProcess, tmp_path: Path) -> None:
    k(srv, "create", "namespace", "typo")
    f = tmp_path / "cm.yaml"
    f.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: t\n  namespace: typo\ndataa:\n  a: b\n")
    r = srv.kubectl("apply", "-f", str(f), check=False)
    assert r.returncode == 1 and 'strict decoding error: unknown field "dataa"' in r.stderr
    assert srv.kubectl("-n", "typo", "get", "cm", "t", check=False).returncode == 1  # nothing written
    r = srv.kubectl("apply", "-f", str(f), "--validate=warn")
    assert 'Warning: unknown field "dataa"' in r.stderr
    cm = json.loads(k(srv, "-n", "typo", "get", "cm", "t", "-o", "json"))
    assert "dataa" not in cm  # dropped, as decoding into upstream's types drops it
