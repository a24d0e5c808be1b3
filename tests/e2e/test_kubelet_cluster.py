"""The kubelet as a daemon against the real ``hyperkube server``, driven by the real kubectl (root).

One API server, one kubelet (runc runtime, CNI inside a node network namespace made by the test), the
busybox image built from /bin/busybox. Pods are bound with spec.nodeName (no scheduler needed).
Checks: Running + Ready through a readiness probe, ``kubectl logs`` (own PID namespace, hostname), pod to
pod traffic on pod IPs, OOMKilled, a failing liveness probe restarting its container, a killed kubelet
adopting its containers on restart, and deletion leaving no process, mount, veth or IPAM lease.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hyperkube.kubelet.images import ImageStore, build_busybox_image
from tests.e2e.test_kubelet_runc import _missing, sh
from tests.integration.conftest import KUBECTL, free_port, start_apiserver

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(_missing() is not None, reason=_missing() or ""),
    pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed"),
]

NODE = "hk-kl-node"


def wait_for(pred, timeout: float = 60, interval: float = 0.2, what: str = ""):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what or pred}: last={last!r}")


class Kubelet:
    def __init__(self, srv, data: Path, netns: str, bridge: str, cidr: str) -> None:  # type: ignore[no-untyped-def]
        self.srv, self.data, self.netns, self.bridge, self.cidr = srv, data, netns, bridge, cidr
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "hyperkube.cli.main", "kubelet", "--kubeconfig", self.srv.kubeconfig,
               "--node-name", NODE, "--data-dir", str(self.data), "--runtime", "runc", "--netns", self.netns,
               "--node-ip", "127.0.0.1", "--pod-cidr", self.cidr, "--bridge", self.bridge,
               "--port", str(self.port), "--address", "127.0.0.1", "--cleanup-on-exit"]  # fmt: skip
        with open(self.data / "kubelet.log", "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(30)

    def log(self) -> str:
        return (self.data / "kubelet.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):  # type: ignore[no-untyped-def]
    data = tmp_path_factory.mktemp("hk-kl-cluster")
    srv = start_apiserver(data / "api")
    tag = secrets.token_hex(3)
    netns = f"hk-kl-c{tag}"
    sh("ip", "netns", "add", netns)
    sh("ip", "-n", netns, "link", "set", "lo", "up")
    build_busybox_image(str(data / "bb.tar"))
    ImageStore(str(data / "images")).import_archive(str(data / "bb.tar"))
    kl = Kubelet(
        srv, data, netns, f"hk-kl-cb{tag}", f"10.{secrets.randbelow(200) + 20}.{secrets.randbelow(250)}.0/24"
    )
    kl.start()
    try:
        wait_for(
            lambda: srv.kubectl("get", "node", NODE, check=False).returncode == 0, 30, what="node registered"
        )
        yield srv, kl
    finally:
        srv.kubectl("delete", "pods", "--all", "--grace-period=0", "--force", "--wait=false", check=False)
        try:
            wait_for(
                lambda: "No resources" in srv.kubectl("get", "pods", check=False).stderr, 60, what="pods gone"
            )
        finally:
            kl.kill(signal.SIGTERM)
            srv.stop()
            # anything the kubelet left (it should have left nothing) goes with the test's namespaces
            for c in (
                os.listdir(data / "kubelet" / NODE / "containers")
                if (data / "kubelet" / NODE / "containers").exists()
                else []
            ):
                subprocess.run(
                    ["runc", "--root", str(data / "kubelet" / NODE / "runc"), "delete", "--force", c],
                    capture_output=True,
                )
            for ns in sh("ip", "netns", "list").split():
                if ns.startswith(f"hk-{NODE}"):
                    sh("ip", "netns", "delete", ns, check=False)
            sh("ip", "netns", "delete", netns, check=False)


def apply(srv, manifest: dict) -> None:  # type: ignore[no-untyped-def]
    srv.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def pod(name: str, container: dict, **spec) -> dict:  # type: ignore[no-untyped-def]
    container = {"name": "c", "image": "busybox", "imagePullPolicy": "Never", **container}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 2, "containers": [container], **spec}}  # fmt: skip


def get(srv, name: str) -> dict:  # type: ignore[no-untyped-def]
    p = srv.kubectl("get", "pod", name, "-o", "json", check=False)
    return json.loads(p.stdout) if p.returncode == 0 else {}


def cstatus(srv, name: str) -> dict:  # type: ignore[no-untyped-def]
    return ((get(srv, name).get("status") or {}).get("containerStatuses") or [{}])[0]


def test_pods_run_log_talk_restart_and_clean_up(cluster) -> None:  # type: ignore[no-untyped-def]
    srv, kl = cluster
    web_cmd = (
        "ps -o pid,args; hostname; mkdir -p /www; hostname > /www/index.html; exec httpd -f -p 8080 -h /www"
    )
    apply(srv, pod("web", {"command": ["sh", "-c", web_cmd], "ports": [{"containerPort": 8080}],
                           "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}}))  # fmt: skip
    apply(srv, pod("hog", {"command": ["tail", "/dev/zero"], "resources": {"limits": {"memory": "32Mi"}}},
                   restartPolicy="Never"))  # fmt: skip
    live_cmd = "touch /tmp/healthy; sleep 2; rm /tmp/healthy; sleep 600"
    apply(srv, pod("live", {"command": ["sh", "-c", live_cmd],
                            "livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]}, "periodSeconds": 1,
                                              "failureThreshold": 1}}))  # fmt: skip

    web = wait_for(
        lambda: get(srv, "web") if cstatus(srv, "web").get("ready") else None,
        60,
        what=f"web ready\n{kl.log()}",
    )
    assert web["status"]["phase"] == "Running"
    assert {c["type"]: c["status"] for c in web["status"]["conditions"]}["Ready"] == "True"
    web_ip = web["status"]["podIP"]
    assert web_ip and web_ip != "127.0.0.1"
    logs = srv.kubectl("logs", "web").stdout.splitlines()
    assert logs[1].split(None, 1) == ["1", "sh -c " + web_cmd] and logs[-1] == "web"

    apply(
        srv,
        pod("client", {"command": ["wget", "-q", "-O-", f"http://{web_ip}:8080/"]}, restartPolicy="Never"),
    )
    wait_for(lambda: get(srv, "client").get("status", {}).get("phase") == "Succeeded", 60, what="client done")
    assert srv.kubectl("logs", "client").stdout == "web\n"

    hog = wait_for(lambda: cstatus(srv, "hog").get("state", {}).get("terminated"), 60, what="hog killed")
    assert hog["reason"] == "OOMKilled" and hog["exitCode"] == 137
    assert get(srv, "hog")["status"]["phase"] == "Failed"

    live = wait_for(lambda: cstatus(srv, "live") if cstatus(srv, "live").get("restartCount", 0) >= 1 else None, 60,
                    what="liveness restart")  # fmt: skip
    assert live["lastState"]["terminated"]["exitCode"] in (137, 143)

    # a killed kubelet comes back and adopts its running containers
    web_cid = cstatus(srv, "web")["containerID"]
    kl.kill(signal.SIGKILL)
    kl.start()
    time.sleep(3)
    wait_for(
        lambda: cstatus(srv, "web").get("ready"),
        30,
        what=f"web ready after kubelet restart {cstatus(srv, 'web')}\n{kl.log()[-3000:]}",
    )
    assert cstatus(srv, "web")["containerID"] == web_cid and cstatus(srv, "web")["restartCount"] == 0
    assert len(os.listdir(kl.data / "kubelet" / NODE / "containers")) <= 6

    srv.kubectl("delete", "pod", "web", "client", "hog", "live", "--wait=false")
    wait_for(
        lambda: "No resources" in srv.kubectl("get", "pods", check=False).stderr,
        60,
        what=f"pods deleted\n{kl.log()}",
    )
    root = kl.data / "kubelet" / NODE
    wait_for(
        lambda: not [c for c in os.listdir(root / "containers") if not c.startswith(".")],
        30,
        what="containers gone",
    )
    with open("/proc/self/mountinfo") as f:
        assert str(root) not in f.read()
    assert sh("ip", "-n", kl.netns, "-o", "link", "show", "type", "veth") == ""
    ipam = root / "cni" / "ipam" / "hyperkube"
    assert not [f for f in os.listdir(ipam) if f[0].isdigit()]
    assert not [ns for ns in sh("ip", "netns", "list").split() if ns.startswith(f"hk-{NODE}")]


def test_cleanup_on_exit_leaves_nothing(cluster) -> None:  # type: ignore[no-untyped-def]
    srv, kl = cluster
    apply(srv, pod("stay", {"command": ["sleep", "600"]}))
    wait_for(lambda: cstatus(srv, "stay").get("ready"), 60, what="stay running")
    pid = int(
        open(next((kl.data / "kubelet" / NODE / "containers").glob("*/started.json")))
        .read()
        .split('"pid": ')[1]
        .split(",")[0]
    )
    kl.kill(signal.SIGTERM)  # --cleanup-on-exit: the node releases everything, the pod object stays
    root = kl.data / "kubelet" / NODE
    assert not os.path.exists(f"/proc/{pid}")
    assert not [c for c in os.listdir(root / "containers") if not c.startswith(".")]
    with open("/proc/self/mountinfo") as f:
        assert str(root) not in f.read()
    assert sh("ip", "-n", kl.netns, "-o", "link", "show", "type", "veth") == ""
    assert not [f for f in os.listdir(root / "cni" / "ipam" / "hyperkube") if f[0].isdigit()]
    assert not [ns for ns in sh("ip", "netns", "list").split() if ns.startswith(f"hk-{NODE}")]
    assert get(srv, "stay")["metadata"]["name"] == "stay"
