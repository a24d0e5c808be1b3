"""Helpers for the security tests: HTTPS requests with a chosen identity to a real server.

Imported explicitly by tests/integration/test_security_*.py (the server fixture itself comes from
tests/integration/conftest.py: ``start_apiserver(..., secure=True)``).
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.integration.conftest import APIServerProcess


def context(srv: APIServerProcess, identity: str | None = None) -> ssl.SSLContext:
    """TLS context trusting the cluster CA, presenting DATA_DIR/pki/<identity>.crt if given."""
    pki = Path(srv.data_dir) / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if identity:
        ctx.load_cert_chain(str(pki / f"{identity}.crt"), str(pki / f"{identity}.key"))
    return ctx


def call(
    srv: APIServerProcess,
    method: str,
    path: str,
    body: Any = None,
    *,
    identity: str | None = "admin",
    token: str | None = None,
    ctx: ssl.SSLContext | None = None,
    content_type: str = "application/json",
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, dict[str, str]]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(srv.url + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", content_type)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30, context=ctx or context(srv, identity)) as r:
            text = r.read()
            code, hdrs = r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        text = e.read()
        code, hdrs = e.code, dict(e.headers)
    try:
        return code, json.loads(text), hdrs
    except ValueError:
        return code, text.decode(errors="replace"), hdrs


def hyperkube(*args: str) -> str:
    p = subprocess.run(
        [sys.executable, "-m", "hyperkube.cli.main", *args], capture_output=True, text=True, timeout=60
    )
    if p.returncode != 0:
        raise AssertionError(f"hyperkube {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p.stdout.strip()
