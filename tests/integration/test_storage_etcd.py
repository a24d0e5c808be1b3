"""etcd-only behaviour: TLS with client certificates (etcds://), endpoint failover, and a clear
error when etcd cannot be reached."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hyperkube.storage import StorageError, open_store
from hyperkube.storage.etcd_local import LocalEtcd, free_port
from tests.integration.storage import fixtures

etcd_server = fixtures.etcd_server

pytestmark = pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd is not installed (etcd-server)")


async def test_tls_with_client_certificates(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the test certificates")
    with LocalEtcd(tmp_path, tls=True) as etcd:
        assert etcd.url.startswith("etcds://")
        async with open_store(etcd.url) as s:  # ca, cert and key from the URL query
            kv = await s.create("/registry/tls/a", b"secret")
            assert (await s.get("/registry/tls/a")).mod_revision == kv.mod_revision
        pki = tmp_path / "pki"
        bare = f"etcd://127.0.0.1:{etcd.client_port}"
        async with open_store(
            bare, ca=str(pki / "ca.crt"), cert=str(pki / "client.crt"), key=str(pki / "client.key")
        ) as s:
            assert (await s.get("/registry/tls/a")).value == b"secret"  # keyword arguments select https
        # without a client certificate the server refuses us, and we say so
        with pytest.raises(StorageError):
            await open_store(f"etcds://127.0.0.1:{etcd.client_port}", ca=str(pki / "ca.crt")).start()


async def test_failover_to_a_live_endpoint_and_unreachable_error(etcd_server: str) -> None:
    dead = f"127.0.0.1:{free_port()}"
    live = etcd_server.removeprefix("etcd://")
    async with open_store(f"etcd://{dead},{live}") as s:
        kv = await s.create(f"/registry/failover/{free_port()}", b"x")
        assert kv.mod_revision > 0
    with pytest.raises(StorageError, match="cannot reach etcd"):
        await open_store(f"etcd://{dead}").start()
