"""Real OCI containers with runc and real CNI pod networking (root).

A busybox image is built from /bin/busybox and imported; the "node" is a network namespace the test
creates (hk-kl-*), in which the CNI plugins create the bridge and the veths, so the host's own network is
never touched. Everything created is removed and checked to be gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess

import pytest

from hyperkube.kubelet.cni import CNI, PodNetworks, bridge_conflist
from hyperkube.kubelet.images import ImageStore, build_busybox_image
from hyperkube.kubelet.runtime import ContainerSpec, ErrImageNeverPull, Mount, State
from hyperkube.kubelet.runtime.runc import RuncRuntime, find_runc

CNI_BIN = "/usr/lib/cni"


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (runc, network namespaces, mounts)"
    if not find_runc():
        return "runc is not installed"
    if not os.path.exists("/bin/busybox"):
        return "busybox-static is not installed (/bin/busybox)"
    if not all(
        os.path.exists(os.path.join(CNI_BIN, p)) for p in ("bridge", "host-local", "loopback", "portmap")
    ):
        return "containernetworking-plugins are not installed (/usr/lib/cni)"
    if not shutil.which("ip") or not shutil.which("nsenter"):
        return "iproute2/util-linux (ip, nsenter) are needed"
    return None


pytestmark = [pytest.mark.e2e, pytest.mark.skipif(_missing() is not None, reason=_missing() or "")]


def sh(*argv: str, check: bool = True) -> str:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=30).stdout


@pytest.fixture(scope="module")
def node(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A data dir with the busybox image, and a network namespace acting as the node."""
    data = tmp_path_factory.mktemp("hk-kl-node")
    archive = data / "busybox.tar"
    build_busybox_image(str(archive))
    ImageStore(str(data / "images")).import_archive(str(archive))
    tag = secrets.token_hex(3)
    nsname = f"hk-kl-n{tag}"
    sh("ip", "netns", "add", nsname)
    sh("ip", "-n", nsname, "link", "set", "lo", "up")
    subnet = f"10.{secrets.randbelow(200) + 20}.{secrets.randbelow(250)}.0/24"
    try:
        yield {"dir": str(data), "netns": nsname, "bridge": f"hk-kl-b{tag}", "subnet": subnet}
    finally:
        sh("ip", "netns", "delete", nsname, check=False)


@pytest.fixture
async def rt(node):  # type: ignore[no-untyped-def]
    runtime = RuncRuntime(node["dir"])
    yield runtime
    for c in await runtime.list():
        await runtime.remove(c.id)


async def _logs(rt: RuncRuntime, cid: str) -> str:
    return b"".join([c async for c in rt.logs(cid)]).decode()


async def _run_to_exit(rt: RuncRuntime, spec: ContainerSpec, timeout: float = 60) -> tuple[str, str]:
    cid = await rt.create(spec)
    await rt.start(cid)
    assert await rt.wait(cid, timeout), "container did not exit"
    return cid, await _logs(rt, cid)


async def test_own_pid_namespace_hostname_and_logs(rt: RuncRuntime) -> None:
    cid, out = await _run_to_exit(
        rt,
        ContainerSpec(
            name="c", image="busybox", command=["sh", "-c", "ps -o pid,args; hostname"], hostname="web-1"
        ),
    )
    lines = out.splitlines()
    assert lines[0].split() == ["PID", "COMMAND"]
    assert lines[1].split(None, 1) == ["1", "sh -c ps -o pid,args; hostname"]  # its command is PID 1
    assert len([ln for ln in lines[1:-1]]) == 2  # only sh and ps: nothing of the host is visible
    assert lines[-1] == "web-1"
    st = await rt.status(cid)
    assert (st.state, st.exit_code, st.reason) == (State.EXITED, 0, "Completed")
    assert st.image_id.startswith("sha256:") and st.finished_at >= st.started_at > 0


async def test_user_env_workdir_and_mounts(rt: RuncRuntime, tmp_path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    vol.chmod(0o777)
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "conf").write_text("setting=1\n")
    spec = ContainerSpec(
        name="c",
        image="busybox",
        command=["sh", "-c"],
        args=[
            "id -u; id -g; echo $GREETING; pwd; cat /config/conf; echo hi > /data/out; touch /config/x || echo ro"
        ],
        env=[("GREETING", "hello")],
        working_dir="/tmp",
        run_as_user=65534,
        mounts=[Mount(str(vol), "/data"), Mount(str(tmp_path / "ro"), "/config", read_only=True)],
    )
    _, out = await _run_to_exit(rt, spec)
    lines = out.splitlines()
    assert lines[:5] == ["65534", "65534", "hello", "/tmp", "setting=1"]
    assert lines[-1] == "ro"
    assert (vol / "out").read_text() == "hi\n"
    # the image's Cmd is used when the spec has no command
    _, out = await _run_to_exit(rt, ContainerSpec(name="d", image="busybox", args=["echo", "from-args"]))
    assert out == "from-args\n"


async def test_memory_limit_kills_a_hog_with_oomkilled(rt: RuncRuntime) -> None:
    cid, _ = await _run_to_exit(
        rt, ContainerSpec(name="hog", image="busybox", command=["tail", "/dev/zero"], memory_limit=32 << 20)
    )
    st = await rt.status(cid)
    assert st.oom_killed and st.reason == "OOMKilled" and st.exit_code == 137 and st.signal == signal.SIGKILL


async def test_missing_image_is_never_pulled(rt: RuncRuntime) -> None:
    with pytest.raises(ErrImageNeverPull, match='"nginx:1.25" is not present with pull policy of Never'):
        await rt.create(ContainerSpec(name="c", image="nginx:1.25"))
    assert await rt.list() == []


async def test_adoption_by_a_second_runtime(rt: RuncRuntime, node) -> None:  # type: ignore[no-untyped-def]
    cid = await rt.create(
        ContainerSpec(name="long", image="busybox", command=["sleep", "300"], labels={"k": "v"})
    )
    await rt.start(cid)
    first = await rt.status(cid)
    assert first.state == State.RUNNING
    restarted = RuncRuntime(node["dir"])  # e.g. the kubelet restarted
    [adopted] = await restarted.list()
    assert (adopted.id, adopted.state, adopted.pid, adopted.labels) == (
        cid,
        State.RUNNING,
        first.pid,
        {"k": "v"},
    )
    r = await restarted.exec(cid, ["sh", "-c", "echo $$; exit 7"])
    assert r.exit_code == 7 and r.stdout.strip() != b"1"
    await restarted.stop(cid, timeout=1)  # sleep as PID 1 ignores SIGTERM: SIGKILL after the grace period
    st = await rt.status(cid)
    assert st.state == State.EXITED and st.exit_code == 137
    assert not os.path.exists(f"/proc/{first.pid}")


async def test_pod_network_exec_and_clean_teardown(rt: RuncRuntime, node) -> None:  # type: ignore[no-untyped-def]
    ns = node["netns"]
    ipam_dir = os.path.join(node["dir"], "ipam")
    conf = bridge_conflist("hk-kl-net", node["bridge"], node["subnet"], ipam_dir)
    pods = PodNetworks(CNI(conf, os.path.join(node["dir"], "cni"), host_netns=f"/run/netns/{ns}"), "hk-kl-p")
    uid1, uid2 = "a" + secrets.token_hex(4), "b" + secrets.token_hex(4)
    cids: list[str] = []
    try:
        net1 = await pods.setup(
            uid1, "default", "server", [{"hostPort": 18080, "containerPort": 8080, "protocol": "tcp"}]
        )
        net2 = await pods.setup(uid2, "default", "client")
        assert net1.ip and net2.ip and net1.ip != net2.ip and net1.gateway
        server = await rt.create(
            ContainerSpec(
                name="server",
                image="busybox",
                command=[
                    "sh",
                    "-c",
                    "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www",
                ],
                hostname="server",
                netns=net1.netns,
            )
        )
        cids.append(server)
        await rt.start(server)
        r = await rt.exec(server, ["sh", "-c", "ip -4 -o addr show eth0"])
        assert r.exit_code == 0 and f" {net1.ip}/" in r.stdout.decode()

        # from the node, to the pod IP, and through the hostPort on the node's bridge address
        for url in (f"http://{net1.ip}:8080/", f"http://{net1.gateway}:18080/"):
            for _ in range(50):
                got = subprocess.run(
                    ["ip", "netns", "exec", ns, "busybox", "wget", "-q", "-O-", url],
                    capture_output=True,
                    text=True,
                )
                if got.returncode == 0:
                    break
                await asyncio.sleep(0.1)
            assert got.stdout == "server\n", (url, got)

        # from another pod, to the pod IP
        client, out = await _run_to_exit(
            rt,
            ContainerSpec(
                name="client",
                image="busybox",
                command=["wget", "-q", "-O-", f"http://{net1.ip}:8080/"],
                netns=net2.netns,
            ),
        )
        cids.append(client)
        assert out == "server\n"

        st = await rt.status(server)
        await rt.stop(server, timeout=2)
        for cid in cids:
            await rt.remove(cid)
        await pods.teardown(uid1)
        await pods.teardown(uid2)

        # nothing left: process, shim, mount, runc state, cgroup, veth, lease, namespace
        assert not os.path.exists(f"/proc/{st.pid}")
        assert await rt.list() == []
        with open("/proc/self/mountinfo") as f:
            assert node["dir"] not in f.read()
        assert not any(c in sh(rt.runc, "--root", rt.state_root, "list") for c in cids)
        for line in open("/proc/self/cgroup").read().splitlines():
            _, ctrls, path = line.split(":", 2)
            if "memory" in ctrls.split(","):
                for cid in cids:
                    assert not os.path.exists(f"/sys/fs/cgroup/memory{path}/hyperkube/{cid}")
        assert sh("ip", "-n", ns, "-o", "link", "show", "type", "veth") == ""
        leases = [f for f in os.listdir(os.path.join(ipam_dir, "hk-kl-net")) if f[0].isdigit()]
        assert leases == []
        assert not os.path.exists(f"/run/netns/hk-kl-p{uid1}") and not os.path.exists(
            f"/run/netns/hk-kl-p{uid2}"
        )
        assert "CNI-DN-" not in sh("ip", "netns", "exec", ns, "iptables-save", "-t", "nat")
    finally:
        for cid in cids:
            with contextlib.suppress(Exception):
                await rt.remove(cid)
        for uid in (uid1, uid2):
            with contextlib.suppress(Exception):
                await pods.teardown(uid)


def test_kubelet_server_listens_inside_the_node_netns(node) -> None:  # type: ignore[no-untyped-def]
    """With --netns the kubelet serves on the node IP inside the node's namespace (server.py)."""
    from hyperkube.kubelet.server import listen_in_netns

    ns = node["netns"]
    sock = listen_in_netns(f"/run/netns/{ns}", "127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        sock.setblocking(True)
        got = subprocess.Popen(["ip", "netns", "exec", ns, "busybox", "nc", "127.0.0.1", str(port)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
        conn, _ = sock.accept()  # the connection made inside the namespace reaches our socket
        conn.sendall(b"hello\n")
        conn.close()
        out, _ = got.communicate(b"", timeout=10)
        assert out == b"hello\n"
        # and this thread is back in its own namespace
        assert os.readlink("/proc/thread-self/ns/net") == os.readlink("/proc/self/ns/net")
    finally:
        sock.close()
