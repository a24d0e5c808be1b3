"""Prometheus metrics in the text exposition format, with upstream's metric names:
``apiserver_request_total{verb,resource,code}``, ``apiserver_request_duration_seconds`` (histogram
by verb and resource), ``apiserver_registered_watchers{resource}``,
``etcd_request_duration_seconds{operation}`` (store latency, whatever the backend)."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable

REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Histogram:
    __slots__ = ("buckets", "counts", "sum", "count")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, v: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, v)] += 1
        self.sum += v
        self.count += 1


def _labels(d: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in d.items())


class Metrics:
    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self.latency: dict[tuple[str, str], Histogram] = {}
        self.store: dict[str, Histogram] = {}
        self.watchers: Callable[[], dict[str, int]] = dict

    def observe_request(self, verb: str, resource: str, code: int, seconds: float) -> None:
        self.requests[(verb, resource, str(code))] += 1
        h = self.latency.get((verb, resource))
        if h is None:
            h = self.latency[(verb, resource)] = Histogram(REQUEST_BUCKETS)
        h.observe(seconds)

    def observe_store(self, op: str, seconds: float) -> None:
        h = self.store.get(op)
        if h is None:
            h = self.store[op] = Histogram(STORE_BUCKETS)
        h.observe(seconds)

    @staticmethod
    def _hist(name: str, labels: dict[str, str], h: Histogram, out: list[str]) -> None:
        acc = 0
        for b, c in zip(h.buckets, h.counts, strict=False):
            acc += c
            out.append(f'{name}_bucket{{{_labels(labels)},le="{b}"}} {acc}')
        acc += h.counts[-1]
        out.append(f'{name}_bucket{{{_labels(labels)},le="+Inf"}} {acc}')
        out.append(f"{name}_sum{{{_labels(labels)}}} {h.sum}")
        out.append(f"{name}_count{{{_labels(labels)}}} {h.count}")

    def render(self) -> str:
        out = [
            "# HELP apiserver_request_total Counter of apiserver requests broken out for each verb, resource and HTTP response code.",
            "# TYPE apiserver_request_total counter",
        ]
        for (verb, res, code), n in sorted(self.requests.items()):
            out.append(
                f"apiserver_request_total{{{_labels({'verb': verb, 'resource': res, 'code': code})}}} {n}"
            )
        out += [
            "# HELP apiserver_request_duration_seconds Response latency distribution in seconds for each verb and resource.",
            "# TYPE apiserver_request_duration_seconds histogram",
        ]
        for (verb, res), h in sorted(self.latency.items()):
            self._hist("apiserver_request_duration_seconds", {"verb": verb, "resource": res}, h, out)
        out += [
            "# HELP apiserver_registered_watchers Number of currently registered watchers for a given resource.",
            "# TYPE apiserver_registered_watchers gauge",
        ]
        for res, n in sorted(self.watchers().items()):
            out.append(f'apiserver_registered_watchers{{resource="{res}"}} {n}')
        out += [
            "# HELP etcd_request_duration_seconds Storage request latency in seconds for each operation.",
            "# TYPE etcd_request_duration_seconds histogram",
        ]
        for op, h in sorted(self.store.items()):
            self._hist("etcd_request_duration_seconds", {"operation": op}, h, out)
        return "\n".join(out) + "\n"
