"""The container runtime interface the kubelet programs against, and what the runtimes share.

One async interface (:class:`Runtime`) with three implementations: ``runc`` (real OCI containers),
``process`` (the container's command as a host process, no isolation) and ``fake`` (no processes; for
hollow nodes). It is a small cousin of upstream's CRI: the kubelet creates a container from a
:class:`ContainerSpec` (image, command, env, mounts, limits, network namespace path ...), starts, stops,
kills and removes it, reads its :class:`ContainerStatus` (running/exited, exit code, OOMKilled, times),
its log (one file per container; tail and follow) and runs commands in it (exec probes).

Containers carry **labels** (pod namespace/name/uid, container name, restart count), persisted with the
container, so that :meth:`Runtime.list` after a kubelet restart returns every container the previous
kubelet left behind; the kubelet adopts them instead of starting duplicates.

Images are never pulled: a spec whose image is not in the node's store fails :meth:`Runtime.create` with
:class:`ErrImageNeverPull`, whose message is upstream's.
"""

from __future__ import annotations

import abc
import asyncio
import enum
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

# Labels the kubelet puts on containers (upstream's io.kubernetes.* names).
LABEL_POD_NAME = "io.kubernetes.pod.name"
LABEL_POD_NAMESPACE = "io.kubernetes.pod.namespace"
LABEL_POD_UID = "io.kubernetes.pod.uid"
LABEL_CONTAINER_NAME = "io.kubernetes.container.name"
LABEL_RESTART_COUNT = "io.kubernetes.container.restartCount"


class RuntimeError_(Exception):
    """A runtime operation failed; ``reason`` is the kubelet's waiting/terminated reason for it."""

    reason = "RunContainerError"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        if reason:
            self.reason = reason


class ErrImageNeverPull(RuntimeError_):
    reason = "ErrImageNeverPull"

    def __init__(self, image: str) -> None:
        super().__init__(
            f'Container image "{image}" is not present with pull policy of Never '
            f"(images are never pulled here; import it with `hyperkube image import FILE`)"
        )
        self.image = image


class CreateContainerError(RuntimeError_):
    reason = "CreateContainerError"


class ContainerNotFound(RuntimeError_):
    reason = "ContainerNotFound"


class State(enum.StrEnum):
    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"
    UNKNOWN = "unknown"


@dataclass
class Mount:
    host_path: str
    container_path: str
    read_only: bool = False


@dataclass
class ContainerSpec:
    """What to run. ``command``/``args`` follow Kubernetes: ``command`` replaces the image's Entrypoint,
    ``args`` its Cmd."""

    name: str
    image: str
    command: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    env: list[tuple[str, str]] = field(default_factory=list)
    working_dir: str = ""
    mounts: list[Mount] = field(default_factory=list)
    hostname: str = ""
    netns: str = ""  # path of the pod's network namespace ("" = a new, empty one for runc; host for process)
    memory_limit: int = 0  # bytes; 0 = unlimited
    cpu_limit_millis: int = 0  # 0 = unlimited
    cpu_request_millis: int = 0  # -> cpu shares
    pids_limit: int = 0
    run_as_user: int | None = None
    run_as_group: int | None = None
    privileged: bool = False
    read_only_rootfs: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    log_path: str = ""  # "" = <container dir>/container.log


@dataclass
class ContainerStatus:
    id: str
    name: str
    image: str
    image_id: str
    state: State
    labels: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    exit_code: int | None = None
    signal: int = 0
    oom_killed: bool = False
    reason: str = ""  # Completed / Error / OOMKilled / StartError / ContainerStatusUnknown
    message: str = ""
    pid: int = 0
    log_path: str = ""

    @property
    def running(self) -> bool:
        return self.state == State.RUNNING


@dataclass
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool = False


def terminated_reason(exit_code: int, oom_killed: bool) -> str:
    if oom_killed:
        return "OOMKilled"
    return "Completed" if exit_code == 0 else "Error"


class Runtime(abc.ABC):
    """The interface. All methods are coroutines; ids are opaque strings unique on the node."""

    name: str = "?"

    @abc.abstractmethod
    async def version(self) -> str:
        """``<name>://<version>``, for nodeInfo.containerRuntimeVersion."""

    @abc.abstractmethod
    def has_image(self, image: str) -> bool: ...

    def image_id(self, image: str) -> str:
        return ""

    @abc.abstractmethod
    async def create(self, spec: ContainerSpec) -> str:
        """Prepare a container (rootfs, config); raises ErrImageNeverPull / CreateContainerError."""

    @abc.abstractmethod
    async def start(self, cid: str) -> None:
        """Start it and return once its process runs (or has already failed: see status)."""

    @abc.abstractmethod
    async def kill(self, cid: str, sig: int) -> None: ...

    async def stop(self, cid: str, timeout: float) -> None:
        """SIGTERM, then SIGKILL when still running after ``timeout`` seconds; returns once it exited."""
        import signal

        st = await self.status(cid)
        if st.state != State.RUNNING:
            return
        await self.kill(cid, signal.SIGTERM)
        if not await self.wait(cid, timeout):
            await self.kill(cid, signal.SIGKILL)
            await self.wait(cid, 30.0)

    async def wait(self, cid: str, timeout: float | None = None) -> bool:
        """Wait until the container is no longer running; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.01
        while True:
            st = await self.status(cid)
            if st.state not in (State.RUNNING, State.UNKNOWN):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    @abc.abstractmethod
    async def remove(self, cid: str) -> None:
        """Delete an exited container and everything it holds (rootfs, mounts, state); idempotent."""

    @abc.abstractmethod
    async def status(self, cid: str) -> ContainerStatus: ...

    @abc.abstractmethod
    async def list(self) -> list[ContainerStatus]:
        """Every container of this runtime's data dir, including those a previous process created."""

    @abc.abstractmethod
    async def exec(self, cid: str, argv: list[str], timeout: float = 10.0) -> ExecResult: ...

    async def logs(
        self, cid: str, tail: int | None = None, follow: bool = False, limit_bytes: int | None = None
    ) -> AsyncIterator[bytes]:
        st = await self.status(cid)
        path = st.log_path

        async def running() -> bool:
            return (await self.status(cid)).state == State.RUNNING

        async for chunk in read_log(
            path, tail=tail, follow=follow, is_running=running, limit_bytes=limit_bytes
        ):
            yield chunk

    async def close(self) -> None:
        return None


# ---------------------------------------------------------------------------------------------------------
# Log files


def tail_offset(path: str, lines: int) -> int:
    """Byte offset where the last ``lines`` lines of the file start (a trailing partial line counts)."""
    if lines <= 0:
        return os.path.getsize(path)
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        pos = end
        count = 0
        block = 8192
        skip_last_nl = True
        while pos > 0:
            n = min(block, pos)
            pos -= n
            f.seek(pos)
            buf = f.read(n)
            i = len(buf)
            while True:
                i = buf.rfind(b"\n", 0, i)
                if i < 0:
                    break
                if skip_last_nl and pos + i == end - 1:
                    skip_last_nl = False
                    continue
                skip_last_nl = False
                count += 1
                if count == lines:
                    return pos + i + 1
        return 0


async def read_log(
    path: str,
    tail: int | None = None,
    follow: bool = False,
    is_running: Callable[[], Any] | None = None,
    limit_bytes: int | None = None,
    poll: float = 0.1,
) -> AsyncIterator[bytes]:
    """Yield the log file's bytes (the last ``tail`` lines when given); with ``follow``, keep yielding what
    is appended until ``is_running()`` turns False (then drain and stop)."""
    if not path or not os.path.exists(path):
        return
    start = tail_offset(path, tail) if tail is not None else 0
    sent = 0
    with open(path, "rb") as f:
        f.seek(start)
        while True:
            chunk = f.read(65536)
            if chunk:
                if limit_bytes is not None:
                    chunk = chunk[: max(0, limit_bytes - sent)]
                    if not chunk:
                        return
                sent += len(chunk)
                yield chunk
                continue
            if not follow:
                return
            alive = await is_running() if is_running is not None else False
            if not alive:
                rest = f.read()
                if rest:
                    yield rest[: None if limit_bytes is None else max(0, limit_bytes - sent)]
                return
            await asyncio.sleep(poll)
