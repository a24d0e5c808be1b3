"""The runtime interface through the ``process`` and ``fake`` runtimes (no root needed), and log reading."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from hyperkube.kubelet.runtime import (
    ContainerSpec,
    ErrImageNeverPull,
    ExecResult,
    RuntimeError_,
    State,
    new_runtime,
)
from hyperkube.kubelet.runtime.base import read_log, tail_offset
from hyperkube.kubelet.runtime.fake import FakeRuntime
from hyperkube.kubelet.runtime.process import ProcessRuntime


async def _collect(it) -> bytes:  # type: ignore[no-untyped-def]
    return b"".join([c async for c in it])


async def _wait_log(rt, cid: str, text: bytes) -> None:  # type: ignore[no-untyped-def]
    """Wait until the container printed ``text`` (e.g. after installing its signal traps)."""
    for _ in range(500):
        if text in await _collect(rt.logs(cid)):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"container never printed {text!r}")


def test_tail_offset(tmp_path) -> None:
    p = tmp_path / "log"
    p.write_bytes(b"a\nbb\nccc\n")
    assert tail_offset(str(p), 1) == 5
    assert tail_offset(str(p), 2) == 2
    assert tail_offset(str(p), 10) == 0
    assert tail_offset(str(p), 0) == 9
    p.write_bytes(b"a\nbb\npartial")
    assert tail_offset(str(p), 1) == 5
    p.write_bytes(b"x" * 20000 + b"\n" + b"y" * 9000 + b"\n")  # lines spanning the 8 KiB blocks
    assert tail_offset(str(p), 1) == 20001


async def test_read_log_follow(tmp_path) -> None:
    p = tmp_path / "log"
    p.write_bytes(b"one\n")
    running = True

    async def is_running() -> bool:
        return running

    async def writer() -> None:
        nonlocal running
        await asyncio.sleep(0.05)
        with open(p, "ab") as f:
            f.write(b"two\n")
        await asyncio.sleep(0.05)
        with open(p, "ab") as f:
            f.write(b"three\n")
        running = False

    task = asyncio.create_task(writer())
    got = await _collect(read_log(str(p), follow=True, is_running=is_running, poll=0.01))
    await task
    assert got == b"one\ntwo\nthree\n"
    assert await _collect(read_log(str(p), tail=1)) == b"three\n"
    assert await _collect(read_log(str(p), limit_bytes=5)) == b"one\nt"


@pytest.fixture
async def proc_rt(tmp_path):  # type: ignore[no-untyped-def]
    rt = ProcessRuntime(str(tmp_path / "node"))
    yield rt
    for c in await rt.list():
        await rt.remove(c.id)


async def test_process_runtime_lifecycle(proc_rt: ProcessRuntime, tmp_path) -> None:
    spec = ContainerSpec(
        name="app",
        image="busybox",
        command=["sh", "-c", 'echo "hello $GREETING"; echo err >&2; exit 3'],
        env=[("GREETING", "world")],
        labels={"io.kubernetes.pod.name": "p"},
    )
    cid = await proc_rt.create(spec)
    assert (await proc_rt.status(cid)).state == State.CREATED
    await proc_rt.start(cid)
    assert await proc_rt.wait(cid, 30)
    st = await proc_rt.status(cid)
    assert st.state == State.EXITED and st.exit_code == 3 and st.reason == "Error"
    assert st.started_at > 0 and st.finished_at >= st.started_at
    assert st.labels == {"io.kubernetes.pod.name": "p"}
    assert await _collect(proc_rt.logs(cid)) == b"hello world\nerr\n"
    assert await _collect(proc_rt.logs(cid, tail=1)) == b"err\n"
    await proc_rt.remove(cid)
    assert await proc_rt.list() == []
    await proc_rt.remove(cid)  # idempotent


async def test_process_runtime_stop_exec_and_adoption(proc_rt: ProcessRuntime) -> None:
    cid = await proc_rt.create(
        ContainerSpec(
            name="srv",
            image="x",
            command=["sh", "-c", "trap 'exit 0' TERM; echo ready; while :; do sleep 0.05; done"],
        )
    )
    await proc_rt.start(cid)
    await _wait_log(proc_rt, cid, b"ready")
    st = await proc_rt.status(cid)
    assert st.state == State.RUNNING and st.pid > 0
    r = await proc_rt.exec(cid, ["sh", "-c", "echo out; echo err >&2; exit 4"])
    assert (r.exit_code, r.stdout, r.stderr) == (4, b"out\n", b"err\n")
    slow = await proc_rt.exec(cid, ["sleep", "5"], timeout=0.2)
    assert slow.timed_out
    # A second runtime on the same data dir (a restarted kubelet) sees the running container, not a new one.
    again = ProcessRuntime(proc_rt.data_dir)
    [adopted] = await again.list()
    assert adopted.id == cid and adopted.state == State.RUNNING and adopted.pid == st.pid
    await again.stop(cid, timeout=10)  # SIGTERM is trapped: exits 0 without needing SIGKILL
    st = await proc_rt.status(cid)
    assert st.state == State.EXITED and st.exit_code == 0 and st.reason == "Completed"
    with pytest.raises(RuntimeError_, match="not running"):
        await proc_rt.exec(cid, ["true"])


async def test_process_runtime_sigkill_after_grace(proc_rt: ProcessRuntime) -> None:
    cid = await proc_rt.create(
        ContainerSpec(
            name="stubborn",
            image="x",
            command=["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"],
        )
    )
    await proc_rt.start(cid)
    await _wait_log(proc_rt, cid, b"ready")
    await proc_rt.stop(cid, timeout=0.3)
    st = await proc_rt.status(cid)
    assert st.state == State.EXITED and st.exit_code == 128 + signal.SIGKILL and st.signal == signal.SIGKILL


async def test_process_runtime_start_error(proc_rt: ProcessRuntime) -> None:
    cid = await proc_rt.create(ContainerSpec(name="bad", image="x", command=["/nonexistent/binary"]))
    await proc_rt.start(cid)
    st = await proc_rt.status(cid)
    assert st.state == State.EXITED and st.reason == "StartError" and "nonexistent" in st.message


async def test_process_runtime_shim_killed(proc_rt: ProcessRuntime) -> None:
    cid = await proc_rt.create(ContainerSpec(name="c", image="x", command=["sleep", "0.3"]))
    await proc_rt.start(cid)
    with open(os.path.join(proc_rt.cdir(cid), "shim.pid")) as f:
        os.kill(int(f.read()), signal.SIGKILL)
    await asyncio.sleep(0.6)
    st = await proc_rt.status(cid)
    assert st.state == State.EXITED and st.reason == "ContainerStatusUnknown"


async def test_fake_runtime() -> None:
    rt = FakeRuntime(images={"busybox"})
    with pytest.raises(ErrImageNeverPull, match='"nginx" is not present with pull policy of Never'):
        await rt.create(ContainerSpec(name="c", image="nginx"))
    cid = await rt.create(ContainerSpec(name="c", image="docker.io/library/busybox:latest"))
    await rt.start(cid)
    assert (await rt.status(cid)).running
    rt.exec_results[(cid, ("check",))] = ExecResult(1, b"", b"bad")
    assert (await rt.exec(cid, ["check"])).exit_code == 1
    assert (await rt.exec(cid, ["other"])).exit_code == 0
    rt.exit(cid, 137, oom_killed=True)
    st = await rt.status(cid)
    assert st.state == State.EXITED and st.reason == "OOMKilled"
    cid2 = await rt.create(ContainerSpec(name="d", image="busybox"))
    await rt.start(cid2)
    await rt.stop(cid2, 30)
    assert (await rt.status(cid2)).exit_code == 0
    assert {c.id for c in await rt.list()} == {cid, cid2}
    await rt.remove(cid)
    assert [c.id for c in await rt.list()] == [cid2]


def test_new_runtime_names(tmp_path) -> None:
    assert new_runtime("fake", str(tmp_path)).name == "fake"
    assert new_runtime("process", str(tmp_path)).name == "process"
    with pytest.raises(ValueError, match="unknown runtime"):
        new_runtime("docker", str(tmp_path))
