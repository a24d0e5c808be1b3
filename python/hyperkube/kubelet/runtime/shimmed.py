"""What the ``runc`` and ``process`` runtimes share: containers as directories, each run by a shim.

Every container is a directory ``<data_dir>/containers/<id>/`` holding

- ``meta.json``: name, image, image id, labels, creation time, log path (written at create);
- ``shim.json``: what the shim (``shim.py``) runs; ``shim.pid``: the shim's pid;
- ``started.json`` / ``exit.json``: written by the shim when the container started and when it exited.

The state of a container is therefore a few file reads, no process spawned (the kubelet relists every
second): ``exit.json`` present means exited; ``started.json`` present and the shim alive means running; a
shim that died without writing ``exit.json`` leaves the container exited with reason
``ContainerStatusUnknown``. Because everything lives on disk, a second runtime instance on the same data
dir - a restarted kubelet - lists the same containers and can stop, exec into and remove them.

The shim is spawned with ``subprocess.Popen`` and reaped through a pidfd watched by the event loop (no
thread per container); after a kubelet restart the old shims are no longer our children and end on their
own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from typing import Any

from hyperkube.kubelet.runtime.base import (
    ContainerNotFound,
    ContainerSpec,
    ContainerStatus,
    Runtime,
    State,
    terminated_reason,
)

SHIM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shim.py")


def _read_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            return json.load(f)  # type: ignore[no-any-return]
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None


def write_json(path: str, obj: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def _alive(pid: int, needle: bytes = b"") -> bool:
    """A pid that exists, is not a zombie and (when given) has ``needle`` in its command line."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        state = stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3]
        if state in (b"Z", b"X"):
            return False
        if needle:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return needle in f.read()
        return True
    except (OSError, ValueError):
        return False


def _reap_later(proc: subprocess.Popen[bytes]) -> None:
    """Reap a child without a thread: wait for its pidfd to become readable in the running loop."""
    try:
        loop = asyncio.get_running_loop()
        fd = os.pidfd_open(proc.pid)
    except (RuntimeError, OSError, AttributeError):
        import threading

        threading.Thread(target=proc.wait, daemon=True).start()
        return

    def done() -> None:
        loop.remove_reader(fd)
        os.close(fd)
        proc.wait()

    loop.add_reader(fd, done)


class ShimRuntime(Runtime):
    """Base of the runtimes whose containers are directories run by a shim (see the module docstring)."""

    mode = "?"

    def __init__(self, data_dir: str) -> None:
        self.data_dir = os.path.abspath(data_dir)
        self.containers_dir = os.path.join(self.data_dir, "containers")
        os.makedirs(self.containers_dir, exist_ok=True)
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    # -- helpers for subclasses ------------------------------------------------------------------------------

    def cdir(self, cid: str) -> str:
        if not cid or "/" in cid or cid.startswith("."):
            raise ContainerNotFound(f"invalid container id {cid!r}")
        return os.path.join(self.containers_dir, cid)

    def _meta(self, cid: str) -> dict[str, Any]:
        meta = _read_json(os.path.join(self.cdir(cid), "meta.json"))
        if meta is None:
            raise ContainerNotFound(f"container {cid} not found")
        return meta

    def new_container_dir(
        self, spec: ContainerSpec, image: str, image_id: str, **extra: Any
    ) -> tuple[str, str]:
        cid = uuid.uuid4().hex
        d = self.cdir(cid)
        os.makedirs(d, mode=0o700)
        log = spec.log_path or os.path.join(d, "container.log")
        os.makedirs(os.path.dirname(log), exist_ok=True)
        with open(log, "ab"):
            pass
        meta = {
            "id": cid,
            "name": spec.name,
            "image": image,
            "imageId": image_id,
            "labels": dict(spec.labels),
            "createdAt": time.time(),
            "log": log,
            **extra,
        }
        write_json(os.path.join(d, "meta.json"), meta)
        return cid, d

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self, cid: str) -> None:
        d = self.cdir(cid)
        self._meta(cid)
        if os.path.exists(os.path.join(d, "shim.pid")):
            raise ContainerNotFound(f"container {cid} was already started")
        with open(os.path.join(d, "shim.log"), "ab") as shim_log:
            proc = subprocess.Popen(
                [sys.executable, "-S", "-I", SHIM, d],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=shim_log,
                start_new_session=True,
                close_fds=True,
            )
        with open(os.path.join(d, "shim.pid"), "w") as f:
            f.write(str(proc.pid))
        self._children[cid] = proc
        _reap_later(proc)
        delay = 0.002
        deadline = time.monotonic() + 120
        while not (
            os.path.exists(os.path.join(d, "started.json")) or os.path.exists(os.path.join(d, "exit.json"))
        ):
            if proc.poll() is not None and not os.path.exists(os.path.join(d, "exit.json")):
                if os.path.exists(os.path.join(d, "started.json")):
                    break
                err = ""
                with contextlib.suppress(OSError), open(os.path.join(d, "shim.log"), "rb") as f:
                    err = f.read().decode(errors="replace").strip()[-500:]
                write_json(
                    os.path.join(d, "exit.json"),
                    {
                        "exitCode": 128,
                        "signal": 0,
                        "finishedAt": time.time(),
                        "reason": "StartError",
                        "message": f"shim failed: {err}",
                    },
                )
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"container {cid} did not start within 120 s")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.05)
        self._children.pop(cid, None)

    def _shim_pid(self, d: str) -> int:
        try:
            with open(os.path.join(d, "shim.pid")) as f:
                return int(f.read())
        except (OSError, ValueError):
            return 0

    def status_sync(self, cid: str) -> ContainerStatus:
        d = self.cdir(cid)
        meta = self._meta(cid)
        st = ContainerStatus(
            id=cid,
            name=meta["name"],
            image=meta["image"],
            image_id=meta.get("imageId", ""),
            state=State.CREATED,
            labels=meta.get("labels", {}),
            created_at=meta.get("createdAt", 0.0),
            log_path=meta.get("log", ""),
        )
        started = _read_json(os.path.join(d, "started.json"))
        ex = _read_json(os.path.join(d, "exit.json"))
        if started:
            st.started_at = started.get("startedAt", 0.0)
            st.pid = started.get("pid", 0)
        if ex:
            st.state = State.EXITED
            st.exit_code = ex.get("exitCode", 255)
            st.signal = ex.get("signal", 0)
            st.finished_at = ex.get("finishedAt", 0.0)
            st.oom_killed = bool(ex.get("oomKilled"))
            st.reason = ex.get("reason") or terminated_reason(st.exit_code or 0, st.oom_killed)
            st.message = ex.get("message", "")
            st.pid = 0
            return st
        shim_pid = self._shim_pid(d)
        if not shim_pid:
            return st  # created, never started
        if _alive(shim_pid, b"shim.py"):
            st.state = State.RUNNING if started else State.CREATED
            return st
        if _read_json(os.path.join(d, "exit.json")) is not None:
            return self.status_sync(cid)  # the shim finished between our two reads
        if started and st.pid and _alive(st.pid):
            st.state = State.RUNNING  # the container outlived its shim
            return st
        st.state = State.EXITED
        st.exit_code = 255
        st.reason = "ContainerStatusUnknown"
        st.message = "The container's shim ended without recording how the container exited"
        st.finished_at = time.time()
        st.pid = 0
        return st

    async def status(self, cid: str) -> ContainerStatus:
        return self.status_sync(cid)

    async def list(self) -> list[ContainerStatus]:
        out = []
        for cid in sorted(os.listdir(self.containers_dir)):
            if cid.startswith("."):
                continue
            with contextlib.suppress(ContainerNotFound):
                out.append(self.status_sync(cid))
        return out

    async def cleanup(self, cid: str, d: str) -> None:
        """Subclass hook: release what the container holds (runc state, mounts) before its dir goes."""

    async def remove(self, cid: str) -> None:
        d = self.cdir(cid)
        if not os.path.isdir(d):
            return
        with contextlib.suppress(ContainerNotFound):
            st = self.status_sync(cid)
            if st.state == State.RUNNING:
                import signal

                await self.kill(cid, signal.SIGKILL)
                await self.wait(cid, 30)
        await self.cleanup(cid, d)
        # Rename first so that a concurrent list() never sees a half-removed container.
        trash = os.path.join(self.containers_dir, f".rm-{cid}")
        with contextlib.suppress(FileNotFoundError):
            os.rename(d, trash)
        await asyncio.to_thread(shutil.rmtree, trash, True)
