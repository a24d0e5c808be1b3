"""`hyperkube store get|list|watch` against a SQLite store held open by a writer, and real etcd."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hyperkube.storage import open_store
from hyperkube.storage.codec import decode, encode
from tests.integration.storage import fixtures

etcd_server = fixtures.etcd_server

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "default"}, "spec": {}}


def hk(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hyperkube.cli.main", *args], capture_output=True, text=True, timeout=timeout
    )


def test_codec_round_trip_and_refuses_garbage() -> None:
    obj = {"a": [1, "x", b"\x00\xff", None, 1.5, {"n": True}]}
    assert decode(encode(obj)) == obj
    from hyperkube.storage import Corrupt

    with pytest.raises(Corrupt):
        decode(encode(obj) + b"trailing")


@pytest.mark.parametrize("backend", ["sqlite", "etcd"])
async def test_get_list_watch(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = f"sqlite://{tmp_path}/state.db" if backend == "sqlite" else request.getfixturevalue("etcd_server")
    ns = f"/registry/pods/cli-{os.getpid()}-{backend}/"
    store = open_store(url)
    await store.start()  # stays open: for SQLite it holds the writer lock, as a running server does
    try:
        kv = await store.create(ns + "web-0", encode(POD))
        await store.create(ns + "web-1", encode({**POD, "metadata": {"name": "web-1"}}))
        await store.create(ns + "raw", b"\xc1 not msgpack")

        r = await asyncio.to_thread(hk, "store", "get", ns + "web-0", "--storage", url)
        assert r.returncode == 0, r.stderr
        head, body = r.stdout.split("\n", 1)
        assert head.startswith(ns + "web-0") and f"modified at {kv.mod_revision}" in head
        assert json.loads(body) == POD

        r = await asyncio.to_thread(hk, "store", "list", ns, "--storage", url, "-o", "json")
        assert r.returncode == 0, r.stderr
        docs = [json.loads(line) for line in r.stdout.splitlines()]
        assert [d["key"] for d in docs] == [ns + "raw", ns + "web-0", ns + "web-1"]
        assert docs[1]["value"] == POD and docs[1]["modRevision"] == kv.mod_revision
        assert "$undecodable" in docs[0]["value"]

        r = await asyncio.to_thread(hk, "store", "get", ns + "missing", "--storage", url)
        assert r.returncode == 1 and "key not found" in r.stderr

        watch = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hyperkube.cli.main",
            "store",
            "watch",
            ns,
            "--storage",
            url,
            "-o",
            "json",
            "--revision",
            str(kv.mod_revision),
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert watch.stdout is not None
            first = json.loads(await asyncio.wait_for(watch.stdout.readline(), 30))
            assert (first["type"], first["key"]) == ("ADDED", ns + "web-1")
            await asyncio.wait_for(watch.stdout.readline(), 30)  # the raw key
            await store.delete(ns + "web-0")
            ev = json.loads(await asyncio.wait_for(watch.stdout.readline(), 30))
            assert (ev["type"], ev["key"], ev["value"], ev["prevValue"]) == (
                "DELETED",
                ns + "web-0",
                None,
                POD,
            )
        finally:
            watch.kill()
            await watch.wait()
    finally:
        await store.close()


def test_bad_storage_url_is_a_clear_error() -> None:
    r = hk("store", "get", "/registry/x", "--storage", "sqlite://relative.db")
    assert r.returncode == 1 and "three slashes" in r.stderr
    r = hk("store", "get", "/registry/x", "--storage", "sqlite:///nonexistent/dir/state.db")
    assert r.returncode == 1 and "no such store" in r.stderr
