"""Store fixtures for the storage suite: memory, SQLite in a temp dir, and a real etcd."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hyperkube.storage import Store, open_store
from hyperkube.storage.etcd_local import LocalEtcd

StoreFactory = Callable[..., Awaitable[Store]]

BACKENDS = ["memory", "sqlite", "etcd"]


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real etcd (Debian's binary) on free loopback ports, shared by the session."""
    if shutil.which("etcd") is None:
        pytest.skip("etcd is not installed (apt-get install etcd-server; make setup does it)")
    with LocalEtcd(tmp_path_factory.mktemp("etcd")) as etcd:
        yield etcd.url


@pytest.fixture
async def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    backend = request.param
    opened: list[Store] = []

    async def make(**opts: Any) -> Store:
        if backend == "memory":
            url = "memory://"
        elif backend == "sqlite":
            url = f"sqlite://{tmp_path}/state.db"
        elif backend == "etcd":
            url = request.getfixturevalue("etcd_server")
        else:
            raise AssertionError(backend)
        s = open_store(url, **opts)
        await s.start()
        opened.append(s)
        return s

    yield make
    for s in opened:
        await s.close()
