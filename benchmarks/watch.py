"""Watch fan-out: 10,000 watchers × 1,000 pod events, as one resource's watch cache sees them.

Watchers: 5,000 kubelets (all namespaces, `spec.nodeName=<own node>`), 4,000 namespaced
watchers with label selectors over 100 namespaces (equality, `in`, and `!=`-only selectors that
no index can serve), 1,000 all-namespace watchers (800 informers with no selector, 200 with a
label equality). Events: pod creations (pending), bindings and phase changes (MODIFIED, some
relabelled), deletions; objects are ~1 KB of JSON.

Native paths: `WatchFanout.dispatch` (rows only) and `WatchFanout.fanout` (rows, each line framed
once, one payload per watcher), the latter also with the Python delivery loop a watch cache runs
(`queue.append(payload)` per watcher), in batches of 1 and of 100 events. Baseline: the plain-Python
reference (tests/reference/watch.py: every watcher tested per event, lines framed once per
(event, type)) on a slice of the same events, in the same run.
"""

from __future__ import annotations

import json
import random
import time
from collections import deque

from benchmarks._common import best_of, parser, report
from hyperkube import _native
from tests.reference import watch as ref

NAMESPACES = 100
NODES = 5000
APPS = 40


def watchers(rnd: random.Random) -> list[tuple[int, str | None, str, str]]:
    out: list[tuple[int, str | None, str, str]] = []
    for n in range(NODES):
        out.append((len(out), None, "", f"spec.nodeName=node-{n}"))
    for i in range(4000):
        ns = f"ns-{i % NAMESPACES}"
        a, b = rnd.randrange(APPS), rnd.randrange(APPS)
        lsel = rnd.choice(
            [
                f"app=app-{a}",
                f"app=app-{a},!canary",
                f"app in (app-{a},app-{b}),tier=frontend",
                f"tier!=cache,app notin (app-{a})",
            ]
        )
        out.append((len(out), ns, lsel, ""))
    for i in range(1000):
        lsel = f"app=app-{rnd.randrange(APPS)}" if i % 5 == 0 else ""
        out.append((len(out), None, lsel, ""))
    return out


def pod(name: str, ns: str, labels: dict[str, str], node: str, phase: str, rv: int) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": f"{hash(name) & 0xFFFFFFFF:08x}-0000-4000-8000-000000000000",
            "resourceVersion": str(rv),
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": labels,
        },
        "spec": {
            "nodeName": node,
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "containers": [
                {
                    "name": "app",
                    "image": "registry.local/app:1.0",
                    "imagePullPolicy": "IfNotPresent",
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                    "env": [{"name": f"VAR_{k}", "value": "x" * 20} for k in range(6)],
                }
            ],
        },
        "status": {"phase": phase, "podIP": "10.0.0.1" if node else "", "qosClass": "Burstable"},
    }


def fields_of(p: dict) -> dict[str, str]:
    return {
        "metadata.name": p["metadata"]["name"],
        "metadata.namespace": p["metadata"]["namespace"],
        "spec.nodeName": p["spec"]["nodeName"],
        "status.phase": p["status"]["phase"],
    }


def events(n: int, rnd: random.Random) -> tuple[list[ref.Event], list[bytes], list[bytes | None]]:
    """Event tuples, object JSON, previous-object JSON (for MODIFIED, with the event's RV)."""
    live: dict[str, dict] = {}
    evs: list[ref.Event] = []
    objs: list[bytes] = []
    prevs: list[bytes | None] = []

    def enc(p: dict) -> bytes:
        return json.dumps(p, separators=(",", ":")).encode()

    for rv in range(1, n + 1):
        r = rnd.random()
        if r < 0.3 or len(live) < 20:
            ns = f"ns-{rnd.randrange(NAMESPACES)}"
            labels = {
                "app": f"app-{rnd.randrange(APPS)}",
                "tier": rnd.choice(["frontend", "backend", "cache"]),
                "pod-template-hash": f"{rnd.randrange(16**8):08x}",
            }
            if rnd.random() < 0.1:
                labels["canary"] = "true"
            p = pod(f"pod-{rv}", ns, labels, "", "Pending", rv)
            live[f"{ns}/pod-{rv}"] = p
            evs.append((ref.ADDED, ns, p["metadata"]["labels"], fields_of(p), None, None))
            objs.append(enc(p))
            prevs.append(None)
        elif r < 0.9:
            key = rnd.choice(list(live))
            old = live[key]
            new = json.loads(json.dumps(old))
            new["metadata"]["resourceVersion"] = str(rv)
            if not new["spec"]["nodeName"]:
                new["spec"]["nodeName"] = f"node-{rnd.randrange(NODES)}"
            elif new["status"]["phase"] == "Pending":
                new["status"]["phase"] = "Running"
            if rnd.random() < 0.1:
                new["metadata"]["labels"]["app"] = f"app-{rnd.randrange(APPS)}"
            live[key] = new
            old_at_rv = json.loads(json.dumps(old))
            old_at_rv["metadata"]["resourceVersion"] = str(rv)
            evs.append(
                (
                    ref.MODIFIED,
                    new["metadata"]["namespace"],
                    new["metadata"]["labels"],
                    fields_of(new),
                    old["metadata"]["labels"],
                    fields_of(old),
                )
            )
            objs.append(enc(new))
            prevs.append(enc(old_at_rv))
        else:
            key = rnd.choice(list(live))
            p = live.pop(key)
            p["metadata"]["resourceVersion"] = str(rv)
            evs.append(
                (ref.DELETED, p["metadata"]["namespace"], p["metadata"]["labels"], fields_of(p), None, None)
            )
            objs.append(enc(p))
            prevs.append(None)
    return evs, objs, prevs


def deliver_native(fan, evs, objs, prevs, batch: int, queues) -> int:
    """The watch cache's loop: fanout per batch, one append per watcher per batch."""
    n = 0
    for s in range(0, len(evs), batch):
        ids, payloads = fan.fanout(evs[s : s + batch], objs[s : s + batch], prevs[s : s + batch])
        for wid, payload in zip(ids, payloads, strict=True):
            queues[wid].append(payload)
        n += len(ids)
    return n


def deliver_rows(fan, evs, objs, prevs, batch: int, queues) -> int:
    """Alternative: rows + a Python loop per delivery over shared per-(event, type) lines."""
    n = 0
    for s in range(0, len(evs), batch):
        ids, eidx, types = fan.dispatch(evs[s : s + batch])
        keys = (eidx.astype("int64") * 3 + types).tolist()
        lines: dict[int, bytes] = {}
        for k in set(keys):
            e, t = divmod(k, 3)
            obj = prevs[s + e] if t == ref.DELETED and prevs[s + e] is not None else objs[s + e]
            lines[k] = ref.frame(t, obj)  # type: ignore[arg-type]
        for wid, k in zip(ids.tolist(), keys, strict=True):
            queues[wid].append(lines[k])
        n += len(keys)
    return n


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    n_events = 200 if args.quick else 1000
    n_ref = 20 if args.quick else 60
    rnd = random.Random(7)
    specs = watchers(rnd)
    evs, objs, prevs = events(n_events, rnd)

    fan = _native.WatchFanout()
    t0 = time.perf_counter()
    for wid, ns, lsel, fsel in specs:
        fan.add(wid, ns, lsel, fsel)
    t_add = time.perf_counter() - t0
    ref_watchers = [ref.Watcher(wid, ns, lsel, fsel) for wid, ns, lsel, fsel in specs]

    # baseline: the reference on a slice of the events (it tests every watcher on every event)
    t_ref, ref_rows = best_of(lambda: ref.dispatch(ref_watchers, evs[:n_ref]), repeat=1)
    t_ref_group, ref_grouped = best_of(
        lambda: ref.group_frames(ref_rows, objs[:n_ref], prevs[:n_ref]), repeat=1
    )
    ids, eidx, types = fan.dispatch(evs[:n_ref])
    assert list(zip(ids.tolist(), eidx.tolist(), types.tolist(), strict=True)) == ref_rows, (
        "native != reference"
    )
    assert fan.fanout(evs[:n_ref], objs[:n_ref], prevs[:n_ref]) == ref_grouped, "native != reference"
    ref_rate = len(ref_rows) / (t_ref + t_ref_group)

    t_dispatch, rows = best_of(lambda: fan.dispatch(evs))
    deliveries = len(rows[0])

    # per-watcher queues; maxlen=1 stands for a writer task that takes each payload at once
    queues = [deque(maxlen=1) for _ in specs]
    rows_out = []
    for batch in (1, 100):
        t_fan, n = best_of(lambda b=batch: deliver_native(fan, evs, objs, prevs, b, queues))
        assert n > 0
        rows_out.append((batch, t_fan))
    t_rows, n_rows = best_of(lambda: deliver_rows(fan, evs, objs, prevs, 100, queues))
    assert n_rows == deliveries

    per = deliveries / n_events
    results = [
        {
            "metric": "python reference (dispatch + frame)",
            "value": ref_rate,
            "unit": "deliveries/s",
            "ratio": None,
        },
        {
            "metric": "native dispatch (rows)",
            "value": deliveries / t_dispatch,
            "unit": "deliveries/s",
            "ratio": deliveries / t_dispatch / ref_rate,
            "baseline": "python",
        },
        {
            "metric": "native dispatch, time per event",
            "value": t_dispatch / n_events * 1e6,
            "unit": "us",
            "ratio": (t_ref + t_ref_group) / n_ref / (t_dispatch / n_events),
            "baseline": "python",
        },
    ]
    for batch, t in rows_out:
        results.append(
            {
                "metric": f"native fanout + Python delivery, batches of {batch}",
                "value": deliveries / t,
                "unit": "deliveries/s",
                "ratio": deliveries / t / ref_rate,
                "baseline": "python",
            }
        )
    results += [
        {
            "metric": "native dispatch + Python loop per delivery, batches of 100",
            "value": deliveries / t_rows,
            "unit": "deliveries/s",
            "ratio": deliveries / t_rows / ref_rate,
            "baseline": "python",
        },
        {"metric": "deliveries per event", "value": per, "unit": "", "ratio": None},
        {"metric": "watcher registration", "value": len(specs) / t_add, "unit": "watchers/s", "ratio": None},
    ]
    report(
        f"watch fan-out ({len(specs):,} watchers x {n_events:,} events, {deliveries:,} deliveries)",
        results,
        args.json,
    )


if __name__ == "__main__":
    main()
