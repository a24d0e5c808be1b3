"""Process supervision for ``hyperkube up``: each component is its own child process.

A :class:`Component` is a command line plus a readiness probe. The :class:`Supervisor` starts
components in order (each waits until the previous one is ready), writes each one's output to
``<data-dir>/logs/<name>.log``, prints one console line per component state change, restarts a
component that dies with exponential backoff (1 s doubling to 30 s, reset after 60 s of
uptime), and on stop sends SIGTERM to every child (process group), then SIGKILL after a grace
period. Only processes it started are signalled, by PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

Probe = Callable[[], Awaitable[bool]]


@dataclass
class Component:
    name: str
    argv: list[str]
    # returns True once the component serves; None means "ready as soon as it runs"
    ready: Probe | None = None
    # what the console says while waiting, e.g. "waiting for the API server on :6443"
    waiting_for: str = ""
    env: dict[str, str] = field(default_factory=dict)
    # components stop tier by tier, highest first (nodes before the control plane they report to)
    tier: int = 0
    # seconds between SIGTERM and SIGKILL (a node stops its pods' containers in that time)
    stop_grace: float | None = None
    # filled in at run time
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = 0.0


def say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


class Supervisor:
    def __init__(self, log_dir: str, ready_timeout: float = 60.0, stop_grace: float = 10.0) -> None:
        self.log_dir = log_dir
        self.components: list[Component] = []
        self.ready_timeout = ready_timeout
        self.stop_grace = stop_grace
        self._stopping = False
        self._watchers: list[asyncio.Task[None]] = []
        os.makedirs(log_dir, exist_ok=True)

    def log_path(self, c: Component) -> str:
        return os.path.join(self.log_dir, f"{c.name}.log")

    async def _spawn(self, c: Component) -> None:
        log = open(self.log_path(c), "ab", buffering=0)  # noqa: SIM115 - handed to the child
        try:
            log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(c.argv)}\n".encode())
            c.proc = await asyncio.create_subprocess_exec(
                *c.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={**os.environ, **c.env},
                start_new_session=True,  # its own process group: Ctrl-C reaches only us
            )
        finally:
            log.close()
        c.started_at = time.monotonic()

    async def start(self, c: Component) -> None:
        """Start one component and wait until it is ready (raises RuntimeError if it is not)."""
        self.components.append(c)
        await self._spawn(c)
        assert c.proc is not None
        say(f"{c.name:<20} started (pid {c.proc.pid}, log {self.log_path(c)})")
        if c.ready is not None:
            deadline = time.monotonic() + self.ready_timeout
            last_note = 0.0
            while True:
                if c.proc.returncode is not None:
                    raise RuntimeError(
                        f"{c.name} exited with code {c.proc.returncode} before it was ready; "
                        f"see {self.log_path(c)}:\n{self.tail(c)}"
                    )
                with contextlib.suppress(Exception):
                    if await c.ready():
                        break
                now = time.monotonic()
                if now > deadline:
                    raise RuntimeError(
                        f"{c.name} not ready after {self.ready_timeout:.0f}s; see {self.log_path(c)}"
                    )
                if c.waiting_for and now - last_note > 5:
                    say(f"{c.name:<20} {c.waiting_for} ...")
                    last_note = now
                await asyncio.sleep(0.2)
        say(f"{c.name:<20} ready")
        self._watchers.append(asyncio.create_task(self._watch(c)))

    def tail(self, c: Component, lines: int = 15) -> str:
        try:
            with open(self.log_path(c), "rb") as f:
                return b"".join(f.readlines()[-lines:]).decode(errors="replace")
        except OSError:
            return ""

    async def _watch(self, c: Component) -> None:
        backoff = 1.0
        while not self._stopping:
            assert c.proc is not None
            code = await c.proc.wait()
            if self._stopping:
                return
            if time.monotonic() - c.started_at > 60:
                backoff = 1.0
            c.restarts += 1
            say(f"{c.name:<20} exited with code {code}; restarting in {backoff:.0f}s (restart #{c.restarts})")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
            if self._stopping:
                return
            await self._spawn(c)
            say(f"{c.name:<20} restarted (pid {c.proc.pid})")

    async def stop(self) -> None:
        """Stop tier by tier (highest first): SIGTERM every child of the tier, then SIGKILL
        whatever is left after its grace period."""
        self._stopping = True
        for t in self._watchers:
            t.cancel()
        for tier in sorted({c.tier for c in self.components}, reverse=True):
            group = [c for c in reversed(self.components) if c.tier == tier and c.proc is not None]
            for c in group:
                if c.proc is not None and c.proc.returncode is None:
                    say(f"{c.name:<20} stopping")
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(c.proc.pid, signal.SIGTERM)
            await asyncio.gather(*(self._reap(c) for c in group))

    async def _reap(self, c: Component) -> None:
        assert c.proc is not None
        grace = c.stop_grace if c.stop_grace is not None else self.stop_grace
        try:
            await asyncio.wait_for(c.proc.wait(), grace)
        except TimeoutError:
            say(f"{c.name:<20} did not stop in {grace:.0f}s; killing")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(c.proc.pid, signal.SIGKILL)
            await c.proc.wait()
        say(f"{c.name:<20} stopped")


def hyperkube_argv(*args: str) -> list[str]:
    """The command line that runs `hyperkube ARGS` with this interpreter."""
    return [sys.executable, "-m", "hyperkube.cli.main", *args]
