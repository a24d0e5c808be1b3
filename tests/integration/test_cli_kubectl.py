"""`hyperkube kubectl` prints what real kubectl prints for the same objects, and its verbs work."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest

from tests.integration.conftest import KUBECTL, APIServerProcess

MANIFEST = textwrap.dedent(
    """
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web, labels: {app: web}}
    spec:
      replicas: 2
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec:
          containers: [{name: web, image: busybox, command: [httpd, -f]}]
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: web}
    spec:
      selector: {app: web}
      ports: [{port: 80, targetPort: 8080}]
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: solo, labels: {app: solo}}
    spec:
      containers: [{name: c, image: busybox}]
    """
)
AGE = re.compile(r"\b\d+(s|m|h|d)(\d+s)?\b")


def hk(srv: APIServerProcess, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "hyperkube")
    env = dict(os.environ, KUBECONFIG=srv.kubeconfig)
    return subprocess.run(
        [exe, "kubectl", *args], capture_output=True, text=True, env=env, timeout=60, input=input
    )


def norm(text: str) -> str:
    """Ages differ by the second between two runs (and so may the AGE column's width);
    everything else must be identical."""
    lines = [line for line in text.splitlines() if not line.startswith("Warning:")]
    return re.sub(r" {2,}", "  ", AGE.sub("AGE", "\n".join(lines)))


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_output_matches_real_kubectl(shared_apiserver: APIServerProcess, tmp_path) -> None:
    srv = shared_apiserver
    f = tmp_path / "app.yaml"
    f.write_text(MANIFEST)
    r = hk(srv, "apply", "-f", str(f))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["deployment.apps/web created", "service/web created", "pod/solo created"]
    assert hk(srv, "apply", "-f", str(f)).stdout.splitlines()[0] == "deployment.apps/web unchanged"
    srv.kubectl("create", "namespace", "other")
    for args in (
        ["get", "pods"],
        ["get", "pods", "-o", "wide"],
        ["get", "svc"],
        ["get", "svc", "-A"],
        ["get", "deploy", "-o", "wide"],
        ["get", "all"],
        ["get", "ns"],
        ["get", "cs"],
        ["get", "nodes"],
        ["get", "pods", "-l", "app=solo"],
        ["get", "deploy", "web", "-o", "name"],
        ["get", "svc", "kubernetes", "-o", "jsonpath={.spec.clusterIP}"],
        ["get", "pods", "-n", "other"],
        ["get", "pod", "solo", "-o", "yaml"],
        ["get", "svc", "web", "-o", "json"],
    ):
        ours, theirs = hk(srv, *args), srv.kubectl(*args, check=False)
        assert norm(ours.stdout) == norm(theirs.stdout), args
        assert norm(ours.stderr) == norm(theirs.stderr), args


def test_tabulate_is_kubectls_tabwriter() -> None:
    from hyperkube.cli.kubectl_cmd import tabulate

    assert tabulate([["NAME", "AGE"], ["a", "5s"], ["longer-name", "10d"]]) == (
        "NAME          AGE\na             5s\nlonger-name   10d\n"
    )
    assert tabulate([["A", "B", "C"], ["x", "", "z"]]) == "A     B     C\nx           z\n"


def test_verbs(shared_apiserver: APIServerProcess, tmp_path) -> None:
    srv = shared_apiserver
    f = tmp_path / "pod.yaml"
    f.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p1, labels: {a: b}}\nspec:\n  containers: [{name: c, image: x}]\n"
    )
    assert hk(srv, "create", "-f", str(f)).stdout == "pod/p1 created\n"
    again = hk(srv, "create", "-f", str(f))
    assert again.returncode == 1 and "AlreadyExists" in again.stderr
    assert hk(srv, "label", "pod", "p1", "tier=fe").stdout == "pod/p1 labeled\n"
    clash = hk(srv, "label", "pod", "p1", "tier=be")
    assert clash.returncode == 1 and "--overwrite is false" in clash.stderr
    assert hk(srv, "annotate", "pod/p1", "note=hi").stdout == "pod/p1 annotated\n"
    got = hk(srv, "get", "pod", "p1", "-o", "jsonpath={.metadata.labels.tier} {.metadata.annotations.note}")
    assert got.stdout == "fe hi"
    assert hk(srv, "delete", "pod", "p1").stdout == 'pod "p1" deleted\n'
    missing = hk(srv, "get", "pod", "p1")
    assert missing.returncode == 1 and 'pods "p1" not found' in missing.stderr
    node = tmp_path / "node.yaml"
    node.write_text("apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n")
    hk(srv, "apply", "-f", str(node))
    assert hk(srv, "cordon", "n1").stdout == "node/n1 cordoned\n"
    assert "true" in hk(srv, "get", "node", "n1", "-o", "jsonpath={.spec.unschedulable}").stdout
    assert hk(srv, "uncordon", "n1").stdout == "node/n1 uncordoned\n"
    bad = hk(srv, "get", "widgets")
    assert bad.returncode == 1 and 'the server doesn\'t have a resource type "widgets"' in bad.stderr
