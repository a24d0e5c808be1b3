"""Informers against the fake API server: initial list, watch, indexes, re-list on 410, resync."""

from __future__ import annotations

import asyncio

import pytest

from hyperkube.client import (
    PODS,
    Client,
    SharedInformer,
    SharedInformerFactory,
    Store,
    index_by_field,
    index_by_owner_uid,
)
from tests.unit import conftest_client
from tests.unit.conftest_client import FakeApiServer, eventually

fake_api = conftest_client.fake_api  # the shared fixtures
fake_client = conftest_client.fake_client  # the shared fixtures


def pod(name: str, ns: str = "default", node: str = "", owner: str = "") -> dict:
    meta: dict = {"name": name, "namespace": ns}
    if owner:
        meta["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": owner, "controller": True}
        ]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"nodeName": node}}


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def add(self, o: dict) -> None:
        self.events.append(("add", o["metadata"]["name"]))

    def update(self, old: dict, new: dict) -> None:
        self.events.append(("update", new["metadata"]["name"]))

    async def delete(self, o: dict) -> None:  # coroutine handlers are awaited
        self.events.append(("delete", o["metadata"]["name"]))


def test_store_indexes() -> None:
    s = Store(indexers={"node": index_by_field("spec.nodeName"), "owner": index_by_owner_uid})
    s.add(pod("a", node="n1", owner="u1"))
    s.add(pod("b", node="n1"))
    s.add(pod("c", ns="other", node="n2", owner="u1"))
    assert sorted(o["metadata"]["name"] for o in s.by_index("node", "n1")) == ["a", "b"]
    assert sorted(o["metadata"]["name"] for o in s.by_index("owner", "u1")) == ["a", "c"]
    assert [o["metadata"]["name"] for o in s.list("other")] == ["c"]
    s.update(pod("a", node="n2", owner="u1"))
    assert [o["metadata"]["name"] for o in s.by_index("node", "n1")] == ["b"]
    assert sorted(o["metadata"]["name"] for o in s.by_index("node", "n2")) == ["a", "c"]
    s.delete(pod("c", ns="other"))
    assert "n2" in s.index_values("node") and s.list("other") == []
    assert s.get("default/a") is not None and s.get_by_name("a", "default") is s.get("default/a")
    s.add_indexers({"ns2": lambda o: [o["metadata"]["namespace"] * 2]})
    assert len(s.by_index("ns2", "defaultdefault")) == 2
    with pytest.raises(KeyError):
        s.by_index("nosuch", "x")
    with pytest.raises(ValueError):
        s.add_indexers({"node": index_by_owner_uid})


async def test_informer_list_then_watch(fake_client: Client, fake_api: FakeApiServer) -> None:
    await fake_client.create(PODS, pod("pre", node="n1"))
    inf = SharedInformer(fake_client, PODS, indexers={"node": index_by_field("spec.nodeName")})
    rec = Recorder()
    inf.add_event_handler(rec.add, rec.update, rec.delete)
    inf.start()
    assert await inf.wait_for_sync(5)
    assert rec.events == [("add", "pre")]
    assert inf.get("pre", "default")["kind"] == "Pod"  # list items get kind/apiVersion back
    await fake_client.create(PODS, pod("new", node="n1"))
    await fake_client.patch(PODS, "new", {"spec": {"nodeName": "n2"}}, "default")
    await fake_client.delete(PODS, "pre", "default")
    await eventually(lambda: len(rec.events) == 4)
    assert rec.events[1:] == [("add", "new"), ("update", "new"), ("delete", "pre")]
    assert [o["metadata"]["name"] for o in inf.by_index("node", "n2")] == ["new"]
    assert inf.by_index("node", "n1") == []
    assert inf.reflector.lists == 1
    await inf.stop()


async def test_relist_on_gone_reports_missed_changes(fake_client: Client, fake_api: FakeApiServer) -> None:
    await fake_client.create(PODS, pod("keep"))
    await fake_client.create(PODS, pod("gone"))
    inf = SharedInformer(fake_client, PODS)
    rec = Recorder()
    inf.add_event_handler(rec.add, rec.update, rec.delete)
    inf.start()
    await inf.wait_for_sync(5)
    # the informer is disconnected while things change and the history is compacted: on
    # reconnect its resourceVersion is gone (410), so it must re-list and diff
    await inf.stop()
    await fake_client.delete(PODS, "gone", "default")
    await fake_client.patch(PODS, "keep", {"metadata": {"labels": {"v": "2"}}}, "default")
    await fake_client.create(PODS, pod("born"))
    fake_api.compact()
    inf.start()
    await eventually(lambda: inf.reflector.lists == 2)
    await eventually(lambda: set(rec.events[2:]) == {("delete", "gone"), ("update", "keep"), ("add", "born")})
    assert sorted(inf.store.keys()) == ["default/born", "default/keep"]
    await inf.stop()


async def test_watch_error_410_relists_and_errors_back_off(
    fake_client: Client, fake_api: FakeApiServer
) -> None:
    inf = SharedInformer(fake_client, PODS)
    inf.reflector.backoff.initial = 0.01
    inf.reflector.backoff.reset()
    inf.start()
    await inf.wait_for_sync(5)
    await eventually(lambda: fake_api.watchers)
    fake_api.send_watch_error(410, "Expired")
    await eventually(lambda: inf.reflector.lists == 2)
    # a server error on the next watch: retried after backoff, from the last resourceVersion
    fake_api.fail_next(500, "InternalError", method="GET", times=2)
    fake_api.close_watches()
    await fake_client.create(PODS, pod("after-errors"))
    await eventually(lambda: inf.get("after-errors", "default") is not None)
    assert inf.reflector.lists == 2  # errors other than 410 do not re-list
    await inf.stop()


async def test_watch_resumes_from_last_rv_and_bookmarks(fake_client: Client, fake_api: FakeApiServer) -> None:
    fake_api.bookmark_interval = 0.05
    inf = SharedInformer(fake_client, PODS)
    inf.start()
    await inf.wait_for_sync(5)
    await fake_client.create(PODS, pod("x"))
    await eventually(lambda: inf.get("x", "default"))
    rv_before = int(inf.reflector.last_resource_version)
    # a change in another resource moves the global rv; a bookmark carries it to the informer
    await fake_client.create("configmaps", {"metadata": {"name": "cm", "namespace": "default"}})
    await eventually(lambda: int(inf.reflector.last_resource_version) > rv_before)
    fake_api.close_watches()
    await eventually(lambda: inf.reflector.watches >= 2)
    watch_rvs = [q.get("resourceVersion") for m, p, q in fake_api.requests if q.get("watch")]
    assert int(watch_rvs[-1]) > rv_before
    assert inf.reflector.lists == 1
    await inf.stop()


async def test_late_handler_gets_replay_and_resync(fake_client: Client, fake_api: FakeApiServer) -> None:
    await fake_client.create(PODS, pod("a"))
    inf = SharedInformer(fake_client, PODS)
    inf.start()
    await inf.wait_for_sync(5)
    rec = Recorder()
    inf.add_event_handler(rec.add, rec.update, rec.delete, resync_period=0.05)
    await eventually(lambda: rec.events.count(("update", "a")) >= 2)
    assert rec.events[0] == ("add", "a")
    await inf.stop()


async def test_factory_shares_one_watch_per_resource(fake_client: Client, fake_api: FakeApiServer) -> None:
    f = SharedInformerFactory(fake_client)
    a = f.informer(PODS, indexers={"node": index_by_field("spec.nodeName")})
    b = f.informer("pods", indexers={"owner": index_by_owner_uid})
    assert a is b
    nodes = f.informer("nodes")
    f.start()
    assert await f.wait_for_sync(5)
    await eventually(lambda: len(fake_api.watchers) == 2)
    late = f.informer("services")  # created after start: starts at once
    assert await late.wait_for_sync(5)
    assert nodes.has_synced
    await f.stop()
    await asyncio.sleep(0)


async def test_managed_fields_are_not_cached(fake_client: Client, fake_api: FakeApiServer) -> None:
    p = pod("mf")
    p["metadata"]["managedFields"] = [
        {"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:spec": {}}}
    ]
    await fake_client.create(PODS, p)
    inf = SharedInformer(fake_client, PODS)
    inf.start()
    await inf.wait_for_sync(5)
    assert "managedFields" not in inf.get("mf", "default")["metadata"]
    p2 = pod("mf2")
    p2["metadata"]["managedFields"] = [{"manager": "x"}]
    await fake_client.create(PODS, p2)
    await eventually(lambda: inf.get("mf2", "default"))
    assert "managedFields" not in inf.get("mf2", "default")["metadata"]
    kept = SharedInformer(fake_client, PODS, transform=None)  # opting out keeps them
    kept.start()
    await kept.wait_for_sync(5)
    assert "managedFields" in kept.get("mf", "default")["metadata"]
    await inf.stop()
    await kept.stop()
