"""Fixtures for integration tests: a REAL ``hyperkube server`` subprocess and real kubectl.

``apiserver`` starts ``hyperkube server`` on a free loopback port with a temporary data dir
(SQLite storage), waits for ``/readyz``, yields an :class:`APIServerProcess` (``url``,
``kubeconfig``, ``data_dir``, ``pid``, ``kubectl(*args)``) and stops it by PID. ``kubectl`` is a
helper that runs the real kubectl with that kubeconfig. Other areas reuse both after merging.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

KUBECTL = shutil.which("kubectl")


def kubectl_path(version: str | None = None) -> str | None:
    """The real kubectl on PATH, or a versioned one beside it (``kubectl.1.27``)."""
    if KUBECTL is None:
        return None
    if version is None:
        return KUBECTL
    p = Path(os.path.realpath(KUBECTL)).parent / f"kubectl.{version}"
    return str(p) if p.exists() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class APIServerProcess:
    url: str
    kubeconfig: str
    data_dir: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        binary: str | None = None,
        timeout: float = 60,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return run_kubectl(self.kubeconfig, *args, check=check, binary=binary, timeout=timeout, input=input)

    def log(self) -> str:
        try:
            return Path(self.log_path).read_text()
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def run_kubectl(
    kubeconfig: str,
    *args: str,
    check: bool = True,
    binary: str | None = None,
    timeout: float = 60,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    exe = binary or KUBECTL
    if exe is None:
        pytest.skip("kubectl is not installed")
    env = dict(os.environ, KUBECONFIG=kubeconfig, HOME=str(Path(kubeconfig).parent))
    p = subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=timeout, input=input)
    if check and p.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def start_apiserver(
    data_dir: Path, storage: str | None = None, extra: list[str] | None = None, secure: bool = False
) -> APIServerProcess:
    """``secure=False`` runs the development mode (``--insecure-http``: plain HTTP, no
    authentication) that the tests written before TLS use; ``secure=True`` serves HTTPS with
    the cluster PKI and the kubeconfig carries the administrator's client certificate."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "apiserver.log"
    cmd = [
        sys.executable,
        "-m",
        "hyperkube.cli.main",
        "server",
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
        "--bind-address",
        "127.0.0.1",
    ]
    if storage:
        cmd += ["--storage", storage]
    if not secure:
        cmd.append("--insecure-http")
    cmd += extra or []
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT)
    url = f"{'https' if secure else 'http'}://127.0.0.1:{port}"
    srv = APIServerProcess(url, str(data_dir / "kubeconfig"), str(data_dir), port, proc, str(log_path))
    deadline = time.monotonic() + 30
    ca = data_dir / "pki" / "ca.crt"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"hyperkube server exited with {proc.returncode}:\n{srv.log()}")
        try:
            ctx = ssl.create_default_context(cafile=str(ca)) if secure and ca.exists() else None
            with urllib.request.urlopen(url + "/readyz", timeout=1, context=ctx) as r:
                if r.status == 200 and Path(srv.kubeconfig).exists():
                    return srv
        except OSError:
            pass
        time.sleep(0.1)
    srv.stop()
    raise RuntimeError(f"hyperkube server did not become ready:\n{srv.log()}")


@pytest.fixture
def apiserver(tmp_path: Path) -> Iterator[APIServerProcess]:
    srv = start_apiserver(tmp_path / "hk")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def shared_apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[APIServerProcess]:
    """One server for a whole test module (tests use distinct namespaces)."""
    srv = start_apiserver(tmp_path_factory.mktemp("hk"))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def kubectl(apiserver: APIServerProcess) -> Callable[..., subprocess.CompletedProcess[str]]:
    return apiserver.kubectl
