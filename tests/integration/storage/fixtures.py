"""Store fixtures for the storage suite: memory, SQLite in a temp dir, and a real etcd."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from hyperkube.storage import Store, open_store

StoreFactory = Callable[..., Awaitable[Store]]

BACKENDS = ["memory", "sqlite"]


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
