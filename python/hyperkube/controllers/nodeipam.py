"""Node IPAM: each Node gets ``spec.podCIDR`` (and ``podCIDRs``) from the cluster CIDR.

The range allocator of upstream's nodeipam controller: the cluster CIDR (``--cluster-cidr``,
default 10.244.0.0/16) is cut into subnets of ``--node-cidr-mask-size`` (default /24). After the
node cache syncs, the subnets already on Nodes are marked used; a Node without one gets the
lowest free subnet with a patch; a deleted Node's subnet goes back to the pool. A full pool
leaves the Node without a CIDR and records a ``CIDRNotAvailable`` event. A CIDR set by someone
else (inside or outside the range) is respected.
"""

from __future__ import annotations

import ipaddress

from hyperkube.client import NODES, WARNING, NotFound
from hyperkube.controllers.base import ControllerContext, Obj, QueueController, name_of


class CidrSet:
    """Bitmap of the node subnets of one cluster CIDR."""

    def __init__(self, cluster_cidr: str, mask: int):
        self.net = ipaddress.ip_network(cluster_cidr, strict=False)
        if mask < self.net.prefixlen:
            raise ValueError(f"node CIDR mask /{mask} is larger than the cluster CIDR {self.net}")
        if mask - self.net.prefixlen > 24:
            raise ValueError(f"cluster CIDR {self.net} with /{mask} per node has too many subnets")
        self.mask = mask
        self.size = 1 << (mask - self.net.prefixlen)
        self.used: set[int] = set()
        self._next = 0

    def _index(self, cidr: str) -> int | None:
        try:
            sub = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            return None
        if sub.version != self.net.version or sub.prefixlen != self.mask or not sub.subnet_of(self.net):  # type: ignore[arg-type]
            return None
        return (int(sub.network_address) - int(self.net.network_address)) >> (
            self.net.max_prefixlen - self.mask
        )

    def _cidr(self, i: int) -> str:
        base = int(self.net.network_address) + (i << (self.net.max_prefixlen - self.mask))
        return str(ipaddress.ip_network((base, self.mask)))

    def occupy(self, cidr: str) -> bool:
        i = self._index(cidr)
        if i is None:
            return False
        self.used.add(i)
        return True

    def release(self, cidr: str) -> None:
        i = self._index(cidr)
        if i is not None:
            self.used.discard(i)

    def allocate(self) -> str | None:
        for k in range(self.size):
            i = (self._next + k) % self.size
            if i not in self.used:
                self.used.add(i)
                self._next = (i + 1) % self.size
                return self._cidr(i)
        return None


class NodeIpamController(QueueController):
    name = "nodeipam"
    component = "node-ipam-controller"

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.workers = 1  # one allocator: no two nodes get the same subnet
        self.cidrs = CidrSet(ctx.options.cluster_cidr, ctx.options.node_cidr_mask_size)
        self.node_informer = ctx.factory.informer(NODES)
        self.informers = (self.node_informer,)
        self.recorder = ctx.recorder(self.component)
        self._occupied_initial = False
        self.node_informer.add_event_handler(self._node, lambda o, n: self._node(n), self._deleted)

    def _node(self, node: Obj) -> None:
        cidr = (node.get("spec") or {}).get("podCIDR")
        if cidr:
            self.cidrs.occupy(cidr)
        else:
            self.queue.add(name_of(node))

    def _deleted(self, node: Obj) -> None:
        for cidr in (node.get("spec") or {}).get("podCIDRs") or [(node.get("spec") or {}).get("podCIDR")]:
            if cidr:
                self.cidrs.release(cidr)

    async def reconcile(self, key: str) -> None:
        if not self.options.allocate_node_cidrs:
            return
        node = self.node_informer.get(key)
        if node is None or (node.get("spec") or {}).get("podCIDR"):
            return
        cidr = self.cidrs.allocate()
        if cidr is None:
            self.recorder.event(
                node, WARNING, "CIDRNotAvailable", f"Node {key} status is now: CIDRNotAvailable"
            )
            return
        try:
            await self.client.patch(NODES, key, {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})
        except NotFound:
            self.cidrs.release(cidr)
        except Exception:
            self.cidrs.release(cidr)
            raise
