"""A throwaway single-member etcd on loopback, for tests, benchmarks and development.

Starts Debian's ``etcd`` binary with its data in a directory of the caller's choosing, on free
127.0.0.1 ports, waits until it answers, and stops it by PID (TERM, then KILL).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalEtcd:
    def __init__(self, data_dir: str | os.PathLike[str], binary: str = "etcd") -> None:
        self.data_dir = Path(data_dir)
        self.binary = binary
        self.proc: subprocess.Popen[bytes] | None = None
        self.client_port = 0

    @property
    def url(self) -> str:
        """The store URL for open_store()."""
        return f"etcd://127.0.0.1:{self.client_port}"

    def start(self, timeout: float = 30.0) -> LocalEtcd:
        exe = shutil.which(self.binary)
        if exe is None:
            raise FileNotFoundError(f"{self.binary} not found (Debian: apt-get install etcd-server)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for _attempt in range(3):
            self.client_port, peer = free_port(), free_port()
            client, peer_url = f"http://127.0.0.1:{self.client_port}", f"http://127.0.0.1:{peer}"
            log = open(self.data_dir / "etcd.log", "ab")  # noqa: SIM115 - handed to the child
            self.proc = subprocess.Popen(
                [
                    exe,
                    "--name=hk-storage",
                    f"--data-dir={self.data_dir / 'data'}",
                    f"--listen-client-urls={client}",
                    f"--advertise-client-urls={client}",
                    f"--listen-peer-urls={peer_url}",
                    f"--initial-advertise-peer-urls={peer_url}",
                    f"--initial-cluster=hk-storage={peer_url}",
                    "--log-level=error",
                ],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
            log.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break  # port taken meanwhile, most likely: try other ports
                try:
                    req = urllib.request.Request(
                        client + "/v3/kv/range", data=json.dumps({"key": "AA=="}).encode(), method="POST"
                    )
                    with urllib.request.urlopen(req, timeout=1) as r:
                        if r.status == 200:
                            return self
                except OSError:
                    pass
                time.sleep(0.05)
            self.stop()
        raise RuntimeError(f"etcd did not start; see {self.data_dir / 'etcd.log'}")

    def stop(self) -> None:
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def __enter__(self) -> LocalEtcd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
