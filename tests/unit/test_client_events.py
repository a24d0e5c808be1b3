"""Event recorder: creates core/v1 Events, aggregates repeats into count, filters floods."""

from __future__ import annotations

from hyperkube.client import EVENTS, Client, EventRecorder
from tests.unit import conftest_client
from tests.unit.conftest_client import FakeApiServer

fake_api = conftest_client.fake_api  # the shared fixtures
fake_client = conftest_client.fake_client  # the shared fixtures

RS = {
    "apiVersion": "apps/v1",
    "kind": "ReplicaSet",
    "metadata": {"name": "web-1", "namespace": "prod", "uid": "u-1"},
}
NODE = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "uid": "u-n"}}


async def test_events_created_and_aggregated(fake_client: Client, fake_api: FakeApiServer) -> None:
    rec = EventRecorder(fake_client, "replicaset-controller", host="")
    rec.event(RS, "Normal", "SuccessfulCreate", "Created pod: web-1-a")
    rec.event(RS, "Normal", "SuccessfulCreate", "Created pod: web-1-a")
    rec.event(RS, "Normal", "SuccessfulCreate", "Created pod: web-1-a")
    rec.eventf(RS, "Warning", "FailedCreate", "Error creating: %s", "quota")
    rec.event(NODE, "Normal", "NodeNotReady", "Node n1 status is now: NodeNotReady")
    await rec.flush()
    evs = (await fake_client.list(EVENTS))["items"]
    by_reason = {e["reason"]: e for e in evs}
    assert len(evs) == 3
    ok = by_reason["SuccessfulCreate"]
    assert ok["count"] == 3 and ok["metadata"]["namespace"] == "prod"
    assert ok["involvedObject"] == {
        "kind": "ReplicaSet",
        "apiVersion": "apps/v1",
        "name": "web-1",
        "uid": "u-1",
        "namespace": "prod",
    }
    assert ok["source"] == {"component": "replicaset-controller"} and ok["type"] == "Normal"
    assert ok["metadata"]["name"].startswith("web-1.")
    assert by_reason["FailedCreate"]["message"] == "Error creating: quota"
    assert by_reason["NodeNotReady"]["metadata"]["namespace"] == "default"
    await rec.close()


async def test_spam_filter_limits_one_object(fake_client: Client, fake_api: FakeApiServer) -> None:
    rec = EventRecorder(fake_client, "c", host="h", spam_burst=5)
    for i in range(20):
        rec.event(RS, "Normal", "Msg", f"message {i}")
    await rec.flush()
    assert len((await fake_client.list(EVENTS))["items"]) == 5
    assert rec.dropped == 15
    await rec.close()
