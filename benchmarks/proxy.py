"""kube-proxy: rule generation (Rust vs the Python reference) and kernel programming (iptables vs nftables).

For N services x 10 endpoints (N = 1,000, 5,000, 10,000; --quick: 200, 1,000): the time to
generate the iptables-restore and nft input in Rust and with the plain-Python reference, the time
for `nft -f` to load the whole nftables table and (up to --iptables-max services, default 1,000:
upstream-style iptables rules take many minutes in iptables-restore at 10,000) for
`iptables-restore` to load the iptables rules; then, at the largest N, the time from one changed
EndpointSlice to the kernel in each mode (ModelBuilder -> ProxyTable -> one transaction; iptables:
a partial sync, at the largest N it was loaded for). Everything is applied in a scratch network
namespace (hk-prx-bench-*), which is deleted at the end. Needs root for the apply figures.

    python -m benchmarks.proxy [--quick] [--iptables-max N] [--json FILE]
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import time
from typing import Any

from benchmarks._common import best_of, parser, report
from hyperkube import _native
from hyperkube.proxy.backends import CommandRunner, IptablesBackend, NftablesBackend
from hyperkube.proxy.model import ModelBuilder, build_model
from tests.reference import proxy as ref

CIDR = "10.128.0.0/9"


def cluster(n: int, per: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    svcs, slices = [], []
    for i in range(n):
        svcs.append(
            {
                "metadata": {"namespace": "bench", "name": f"svc{i}"},
                "spec": {
                    "type": "NodePort",
                    "clusterIP": f"10.96.{i // 256}.{i % 256}",
                    "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30000 + i % 2768}]
                    if i < 2768
                    else [{"name": "http", "port": 80, "protocol": "TCP"}],
                },
            }
        )
        slices.append(
            {
                "metadata": {
                    "namespace": "bench",
                    "name": f"svc{i}-abc",
                    "labels": {"kubernetes.io/service-name": f"svc{i}"},
                },
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": [
                    {
                        "addresses": [
                            f"10.{128 + (i * per + j) // 65536}.{(i * per + j) // 256 % 256}.{(i * per + j) % 256}"
                        ]
                    }
                    for j in range(per)
                ],
            }
        )
    return svcs, slices


def child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cpu_best(fn: Any, repeat: int = 3) -> float:
    """Fastest process CPU time of fn (all threads): unlike wall time, not inflated by other load."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def one_change(backend: Any, builder: ModelBuilder, slices: list[dict[str, Any]], repeat: int = 7) -> float:
    """Median seconds from an EndpointSlice update to the kernel (one endpoint replaced)."""
    times = []
    for r in range(repeat):
        sl = dict(slices[len(slices) // 2])
        eps = [dict(e) for e in sl["endpoints"]]
        eps[0] = {"addresses": [f"10.255.{r}.{len(times) + 1}"]}
        sl["endpoints"] = eps
        t0 = time.perf_counter()
        builder.set_slice(sl)
        m, removed = builder.changes()
        backend.update(m, removed)
        res = backend.sync()
        times.append(time.perf_counter() - t0)
        assert not res.full, "expected an incremental sync"
    return statistics.median(times)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--iptables-max", type=int, default=1000, help="largest N applied with iptables-restore")
    args = p.parse_args()
    sizes = [200, 1000] if args.quick else [1000, 5000, 10000]
    per = 10
    rows: list[dict[str, Any]] = []
    root = os.geteuid() == 0
    ns = f"hk-prx-bench-{os.getpid()}"
    if root:
        subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for n in sizes:
            svcs, slices = cluster(n, per)
            t_model, m = best_of(lambda svcs=svcs, slices=slices: build_model(svcs, slices), 1)
            rows.append({"metric": f"model {n}x{per} (Python, full)", "value": t_model * 1e3, "unit": "ms"})
            t_ipt, out = best_of(lambda m=m: _native.proxy_render_iptables(m, cluster_cidr=CIDR))
            t_ipt_py, _ = best_of(lambda m=m: ref.render_iptables(m, cluster_cidr=CIDR), 1)
            lines = out[0].count(b"\n")
            rows.append(
                {
                    "metric": f"iptables generate {n}x{per} ({lines:,} lines), Rust",
                    "value": t_ipt * 1e3,
                    "unit": "ms",
                    "ratio": t_ipt_py / t_ipt,
                    "baseline": f"faster than the Python reference, {t_ipt_py * 1e3:,.0f} ms",
                }
            )
            c_ipt = cpu_best(lambda m=m: _native.proxy_render_iptables(m, cluster_cidr=CIDR))
            rows.append(
                {
                    "metric": f"iptables generate {n}x{per}, Rust, CPU time (all threads)",
                    "value": c_ipt * 1e3,
                    "unit": "ms",
                }
            )
            t_nft, nout = best_of(lambda m=m: _native.proxy_render_nftables(m, cluster_cidr=CIDR))
            t_nft_py, _ = best_of(lambda m=m: ref.render_nftables(m, cluster_cidr=CIDR), 1)
            rows.append(
                {
                    "metric": f"nftables generate {n}x{per} ({nout[2]['elements']:,} elements, {nout[2]['rules']} rules), Rust",
                    "value": t_nft * 1e3,
                    "unit": "ms",
                    "ratio": t_nft_py / t_nft,
                    "baseline": f"faster than the Python reference, {t_nft_py * 1e3:,.0f} ms",
                }
            )
            c_nft = cpu_best(lambda m=m: _native.proxy_render_nftables(m, cluster_cidr=CIDR))
            rows.append(
                {
                    "metric": f"nftables generate {n}x{per}, Rust, CPU time (all threads)",
                    "value": c_nft * 1e3,
                    "unit": "ms",
                }
            )
            if not root:
                continue
            runner = CommandRunner(ns)
            nft = NftablesBackend(runner, cluster_cidr=CIDR)
            c0 = child_cpu()
            res = nft.sync(m)
            c_apply = child_cpu() - c0
            t_nft_apply = res.apply_seconds
            rows.append(
                {
                    "metric": f"nftables apply {n}x{per}, CPU time of nft (user+sys)",
                    "value": c_apply * 1e3,
                    "unit": "ms",
                }
            )
            rows.append(
                {
                    "metric": f"nftables apply {n}x{per} (nft -f, full)",
                    "value": t_nft_apply * 1e3,
                    "unit": "ms",
                }
            )
            if n == sizes[-1]:
                b = ModelBuilder()
                for s in svcs:
                    b.set_service(s)
                for s in slices:
                    b.set_slice(s)
                b.changes()  # the backend already holds these rows
                t = one_change(nft, b, slices)
                rows.append(
                    {
                        "metric": f"nftables one endpoint change at {n} services (slice -> kernel)",
                        "value": t * 1e3,
                        "unit": "ms",
                    }
                )
            nft.cleanup()
            if n <= args.iptables_max:
                ipt = IptablesBackend(runner, cluster_cidr=CIDR)
                c0 = child_cpu()
                res = ipt.sync(m)
                c_ipt_apply = child_cpu() - c0
                rows.append(
                    {
                        "metric": f"iptables apply {n}x{per} (iptables-restore, full)",
                        "value": res.apply_seconds * 1e3,
                        "unit": "ms",
                        "ratio": res.apply_seconds / t_nft_apply,
                        "baseline": "slower than nft -f",
                    }
                )
                rows.append(
                    {
                        "metric": f"iptables apply {n}x{per}, CPU time of iptables-save/restore (user+sys)",
                        "value": c_ipt_apply * 1e3,
                        "unit": "ms",
                    }
                )
                if n == max(s for s in sizes if s <= args.iptables_max):
                    b = ModelBuilder()
                    for s in svcs:
                        b.set_service(s)
                    for s in slices:
                        b.set_slice(s)
                    b.changes()
                    t = one_change(ipt, b, slices, repeat=3)
                    rows.append(
                        {
                            "metric": f"iptables one endpoint change at {n} services (partial sync)",
                            "value": t * 1e3,
                            "unit": "ms",
                        }
                    )
                ipt.cleanup()
    finally:
        if root:
            subprocess.run(["ip", "netns", "del", ns], check=False)
    report("proxy", rows, args.json)


if __name__ == "__main__":
    main()
