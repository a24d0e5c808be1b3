"""Leader election on a Lease, against the fake API server."""

from __future__ import annotations

import asyncio

import pytest

from hyperkube.client import LEASES, Client, LeaderElector
from tests.unit import conftest_client
from tests.unit.conftest_client import FakeApiServer, eventually

fake_api = conftest_client.fake_api  # the shared fixtures
fake_client = conftest_client.fake_client  # the shared fixtures


def elector(client: Client, ident: str, started: list, stopped: list, **kw) -> LeaderElector:
    async def lead() -> None:
        started.append(ident)
        await asyncio.Event().wait()

    return LeaderElector(
        client,
        "kube-controller-manager",
        identity=ident,
        lease_duration=kw.pop("lease_duration", 1.0),
        renew_deadline=kw.pop("renew_deadline", 0.6),
        retry_period=kw.pop("retry_period", 0.1),
        on_started_leading=lead,
        on_stopped_leading=lambda: stopped.append(ident),
        **kw,
    )


def test_rejects_inconsistent_timings() -> None:
    c = Client("http://127.0.0.1:1")
    with pytest.raises(ValueError):
        LeaderElector(c, "x", lease_duration=10, renew_deadline=10)
    with pytest.raises(ValueError):
        LeaderElector(c, "x", renew_deadline=2, retry_period=2)


async def _stop(*tasks: asyncio.Task) -> None:
    """Cancel and reap, bounded: a stuck elector fails the test instead of hanging the run."""
    for t in tasks:
        t.cancel()
    await asyncio.wait(tasks, timeout=10)


async def test_one_leader_and_failover(fake_client: Client, fake_api: FakeApiServer) -> None:
    started: list[str] = []
    stopped: list[str] = []
    a = elector(fake_client, "a", started, stopped)
    b = elector(fake_client, "b", started, stopped, release_on_cancel=False)
    ta = asyncio.create_task(a.run())
    tb: asyncio.Task | None = None
    try:
        await eventually(lambda: started == ["a"])
        tb = asyncio.create_task(b.run())
        await asyncio.sleep(0.5)
        assert started == ["a"] and not b.is_leader and b.leader == "a"
        lease = await fake_client.get(LEASES, "kube-controller-manager", "kube-system")
        spec = lease["spec"]
        assert (
            spec["holderIdentity"] == "a"
            and spec["leaseTransitions"] == 0
            and spec["leaseDurationSeconds"] == 1
        )
        assert spec["renewTime"].endswith("Z") and "." in spec["renewTime"]
        # a stops cleanly: it releases the lease and b takes over quickly
        ta.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(ta, 10)
        assert stopped == ["a"]
        await eventually(lambda: started == ["a", "b"], timeout=15)
        lease = await fake_client.get(LEASES, "kube-controller-manager", "kube-system")
        assert lease["spec"]["holderIdentity"] == "b" and lease["spec"]["leaseTransitions"] == 1
    finally:
        await _stop(ta, *([tb] if tb is not None else []))


async def test_crashed_leader_is_replaced_after_lease_duration(
    fake_client: Client, fake_api: FakeApiServer
) -> None:
    started: list[str] = []
    stopped: list[str] = []
    a = elector(fake_client, "a", started, stopped, release_on_cancel=False)
    ta = asyncio.create_task(a.run())
    await eventually(lambda: started == ["a"])
    ta.cancel()  # "crash": no release
    with pytest.raises(asyncio.CancelledError):
        await ta
    b = elector(fake_client, "b", started, stopped)
    tb = asyncio.create_task(b.run())
    await asyncio.sleep(0.3)
    assert started == ["a"]  # a's lease still looks alive
    await eventually(lambda: started == ["a", "b"], timeout=5)
    tb.cancel()
    with pytest.raises(asyncio.CancelledError):
        await tb


async def test_leader_steps_down_when_it_cannot_renew(fake_client: Client, fake_api: FakeApiServer) -> None:
    started: list[str] = []
    stopped: list[str] = []
    a = elector(fake_client, "a", started, stopped)
    ta = asyncio.create_task(a.run())
    await eventually(lambda: started == ["a"])
    fake_api.fail_next(503, "ServiceUnavailable", times=1000)
    await asyncio.wait_for(ta, 5)  # run() returns once leadership is lost
    assert stopped == ["a"] and not a.is_leader
    fake_api.failures.clear()
