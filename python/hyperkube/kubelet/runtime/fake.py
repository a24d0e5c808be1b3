"""The ``fake`` runtime: containers without processes, for hollow nodes and unit tests.

A container "runs" the moment it starts and keeps running until it is stopped or killed (SIGTERM/SIGKILL
end it at once, exit code 0 after SIGTERM and 137 after SIGKILL, as a well-behaved process would). Nothing
touches the disk; state is a dict, so thousands of hollow nodes fit in one process. Tests steer it:
``images`` limits which images exist (default: all), :meth:`FakeRuntime.exit` ends a container with a
given code (or as OOMKilled), ``exec_results`` scripts exec probe answers, ``logs_of`` holds log bytes.
"""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import replace

from hyperkube.kubelet.runtime.base import (
    ContainerNotFound,
    ContainerSpec,
    ContainerStatus,
    ErrImageNeverPull,
    ExecResult,
    Runtime,
    RuntimeError_,
    State,
    terminated_reason,
)

_ids = itertools.count(1)


class FakeRuntime(Runtime):
    name = "fake"

    def __init__(self, images: set[str] | None = None, clock: object = time) -> None:
        self.images = images
        self.clock = clock
        self.containers: dict[str, ContainerStatus] = {}
        self.specs: dict[str, ContainerSpec] = {}
        self.exec_results: dict[tuple[str, tuple[str, ...]], ExecResult] = {}
        self.logs_of: dict[str, bytes] = {}
        self.calls: list[tuple[str, str]] = []

    def _now(self) -> float:
        return self.clock.time()  # type: ignore[attr-defined, no-any-return]

    async def version(self) -> str:
        return "fake://0.1.0"

    def has_image(self, image: str) -> bool:
        if self.images is None:
            return True
        from hyperkube.kubelet.images import ImageError, normalize_ref

        try:
            return normalize_ref(image) in {normalize_ref(i) for i in self.images}
        except ImageError:
            return False

    def image_id(self, image: str) -> str:
        return "sha256:" + format(abs(hash(image)), "064x")[:64] if self.has_image(image) else ""

    def _get(self, cid: str) -> ContainerStatus:
        st = self.containers.get(cid)
        if st is None:
            raise ContainerNotFound(f"container {cid} not found")
        return st

    async def create(self, spec: ContainerSpec) -> str:
        if not self.has_image(spec.image):
            raise ErrImageNeverPull(spec.image)
        cid = f"fake{next(_ids):012x}"
        self.containers[cid] = ContainerStatus(
            id=cid,
            name=spec.name,
            image=spec.image,
            image_id=self.image_id(spec.image),
            state=State.CREATED,
            labels=dict(spec.labels),
            created_at=self._now(),
        )
        self.specs[cid] = spec
        self.calls.append(("create", cid))
        return cid

    async def start(self, cid: str) -> None:
        st = self._get(cid)
        if st.state != State.CREATED:
            raise RuntimeError_(f"container {cid} was already started")
        st.state, st.started_at, st.pid = State.RUNNING, self._now(), 1
        self.calls.append(("start", cid))

    def exit(self, cid: str, code: int = 0, oom_killed: bool = False) -> None:
        """End a running container as if its process exited with ``code`` (tests, scripted pods)."""
        st = self._get(cid)
        if st.state == State.RUNNING:
            st.state, st.exit_code, st.oom_killed = State.EXITED, code, oom_killed
            st.finished_at, st.pid = self._now(), 0
            st.reason = terminated_reason(code, oom_killed)

    async def kill(self, cid: str, sig: int) -> None:
        self.calls.append(("kill", cid))
        if sig in (signal.SIGTERM, signal.SIGKILL, signal.SIGINT):
            self.exit(cid, 0 if sig != signal.SIGKILL else 128 + int(sig))

    async def remove(self, cid: str) -> None:
        self.calls.append(("remove", cid))
        self.containers.pop(cid, None)
        self.specs.pop(cid, None)
        self.logs_of.pop(cid, None)

    async def status(self, cid: str) -> ContainerStatus:
        return replace(self._get(cid))

    async def list(self) -> list[ContainerStatus]:
        return [replace(s) for s in self.containers.values()]

    async def exec(self, cid: str, argv: list[str], timeout: float = 10.0) -> ExecResult:
        st = self._get(cid)
        if st.state != State.RUNNING:
            raise RuntimeError_(f"container {cid} is not running", reason="ContainerNotRunning")
        return (
            self.exec_results.get((cid, tuple(argv)))
            or self.exec_results.get(("*", tuple(argv)))
            or ExecResult(0, b"", b"")
        )

    async def logs(
        self, cid: str, tail: int | None = None, follow: bool = False, limit_bytes: int | None = None
    ) -> AsyncIterator[bytes]:
        self._get(cid)
        data = self.logs_of.get(cid, b"")
        if tail is not None:
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-tail:]) if tail > 0 else b""
        if limit_bytes is not None:
            data = data[:limit_bytes]
        if data:
            yield data
