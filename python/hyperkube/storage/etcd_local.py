"""A throwaway single-member etcd on loopback, for tests, benchmarks and development.

Starts Debian's ``etcd`` binary with its data in a directory of the caller's choosing, on free
127.0.0.1 ports, waits until it answers, and stops it by PID (TERM, then KILL); it also gets
SIGTERM if its parent dies without stopping it. With ``tls=True``
it makes a throwaway CA, server and client certificate with ``openssl`` and serves HTTPS that
requires a client certificate (``url`` then carries ``ca``, ``cert`` and ``key``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the parent dies (Linux PR_SET_PDEATHSIG), so
    a test run or benchmark that is killed leaves no etcd behind."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except OSError:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalEtcd:
    def __init__(self, data_dir: str | os.PathLike[str], binary: str = "etcd", tls: bool = False) -> None:
        self.data_dir = Path(data_dir)
        self.binary = binary
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None
        self.client_port = 0

    @property
    def url(self) -> str:
        """The store URL for open_store()."""
        if self.tls:
            d = self.data_dir / "pki"
            return (
                f"etcds://127.0.0.1:{self.client_port}?ca={d}/ca.crt&cert={d}/client.crt&key={d}/client.key"
            )
        return f"etcd://127.0.0.1:{self.client_port}"

    def _make_pki(self) -> list[str]:
        d = self.data_dir / "pki"
        d.mkdir(parents=True, exist_ok=True)
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

        def run(*args: str) -> None:
            subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

        run(
            "req",
            "-x509",
            *ec,
            "-days",
            "2",
            "-subj",
            "/CN=hk-storage-test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        )
        for name, usage in (("server", "serverAuth,clientAuth"), ("client", "clientAuth")):
            (d / f"{name}.ext").write_text(f"subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n")
            run("req", *ec, "-subj", f"/CN=hk-{name}", "-keyout", f"{name}.key", "-out", f"{name}.csr")
            run(
                "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt",
            )  # fmt: skip
        return [
            f"--cert-file={d}/server.crt",
            f"--key-file={d}/server.key",
            f"--trusted-ca-file={d}/ca.crt",
            "--client-cert-auth",
        ]

    def _probe_ctx(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        d = self.data_dir / "pki"
        ctx = ssl.create_default_context(cafile=str(d / "ca.crt"))
        ctx.load_cert_chain(str(d / "client.crt"), str(d / "client.key"))
        return ctx

    def start(self, timeout: float = 30.0) -> LocalEtcd:
        exe = shutil.which(self.binary)
        if exe is None:
            raise FileNotFoundError(f"{self.binary} not found (Debian: apt-get install etcd-server)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        tls_args = self._make_pki() if self.tls else []
        ctx = self._probe_ctx()
        for _attempt in range(3):
            self.client_port, peer = free_port(), free_port()
            scheme = "https" if self.tls else "http"
            client, peer_url = f"{scheme}://127.0.0.1:{self.client_port}", f"http://127.0.0.1:{peer}"
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
                    *tls_args,
                ],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
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
                    with urllib.request.urlopen(req, timeout=1, context=ctx) as r:
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
