"""Cost of security on the request path: pod creates through the admission chain, and RBAC
authorization decisions.

- pod creates/s through the real Registry over the in-memory store with the admission chain
  (ServiceAccount, DefaultTolerationSeconds, LimitRanger, Priority, NodeRestriction,
  ResourceQuota), against the same Registry without admission (baseline, same run);
- RBAC decisions/s for a user bound in one namespace among N namespaces with a RoleBinding each,
  upstream's default ClusterRoles and bindings loaded (allowed and denied requests alternate).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import types

from benchmarks._common import parser, report
from hyperkube.api.registry import resource
from hyperkube.apiserver.admission import Chain
from hyperkube.apiserver.auth import policy
from hyperkube.apiserver.auth.pki import PKI
from hyperkube.apiserver.auth.rbac import Attributes, RBACAuthorizer, UserInfo
from hyperkube.apiserver.rest import Registry
from hyperkube.storage.memory import MemoryStore


async def pod_creates(n: int, with_admission: bool) -> float:
    store = MemoryStore()
    await store.start()
    reg = Registry(store)
    await reg.start()
    chain = None
    with tempfile.TemporaryDirectory() as d:
        if with_admission:
            chain = Chain(reg, types.SimpleNamespace(pki=PKI(d).ensure()))  # type: ignore[arg-type]
            reg.admission = chain.admit
            await chain.start()
        await reg.create(resource("namespaces"), None, {"metadata": {"name": "bench"}})
        pods = resource("pods")
        t0 = time.perf_counter()
        for i in range(n):
            await reg.create(
                pods,
                "bench",
                {"metadata": {"name": f"p{i}"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
            )
        dt = time.perf_counter() - t0
        if chain is not None:
            await chain.stop()
    await reg.stop()
    await store.close()
    return n / dt


def rbac_decisions(namespaces: int, n: int) -> float:
    a = RBACAuthorizer()
    bindings = [
        {
            "metadata": {"name": f"b{i}", "namespace": f"ns{i}"},
            "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": f"user{i}"}],
        }
        for i in range(namespaces)
    ]
    a.set_objects(policy.cluster_roles(), [], policy.cluster_role_bindings(), bindings)
    u = UserInfo("user7", ("system:authenticated",))
    reqs = [
        Attributes(u, "get", namespace="ns7", resource="pods", name="x"),
        Attributes(u, "create", namespace="ns7", resource="pods"),
    ]
    t0 = time.perf_counter()
    allowed = 0
    for i in range(n):
        allowed += a.authorize(reqs[i & 1]).allowed
    assert allowed == n // 2
    return n / (time.perf_counter() - t0)


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    n = 500 if args.quick else 5000
    base = asyncio.run(pod_creates(n, False))
    adm = asyncio.run(pod_creates(n, True))
    decisions = rbac_decisions(1000 if args.quick else 10_000, 20_000 if args.quick else 200_000)
    report(
        f"security ({n:,} pod creates; RBAC with {'1,000' if args.quick else '10,000'} namespaced bindings)",
        [
            {"metric": "pod creates without admission", "value": base, "unit": "pods/s", "ratio": None},
            {
                "metric": "pod creates with the admission chain",
                "value": adm,
                "unit": "pods/s",
                "ratio": adm / base,
                "baseline": "without admission",
            },
            {"metric": "RBAC decisions", "value": decisions, "unit": "decisions/s", "ratio": None},
        ],
        args.json,
    )


if __name__ == "__main__":
    main()
