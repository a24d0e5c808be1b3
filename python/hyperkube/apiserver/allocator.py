"""Service ClusterIP and NodePort allocation (upstream's ipallocator / portallocator).

The allocated sets are rebuilt from the stored Services at start and kept in memory; allocation
is sequential from the start of the range (so the first Service, ``kubernetes``, gets the first
address, 10.96.0.1 in the default 10.96.0.0/12), and released when a Service is deleted or its
type no longer needs it.
"""

from __future__ import annotations

import ipaddress


class RangeFull(Exception):
    pass


class InvalidAddress(Exception):
    pass


class IPAllocator:
    def __init__(self, cidr: str) -> None:
        self.net = ipaddress.ip_network(cidr, strict=False)
        self.first = int(self.net.network_address) + 1
        self.last = int(self.net.broadcast_address) - 1
        self.used: set[int] = set()
        self.cursor = self.first

    def allocate(self, ip: str | None = None) -> str:
        if ip:
            try:
                v = int(ipaddress.ip_address(ip))
            except ValueError:
                raise InvalidAddress(f"{ip} is not a valid IP address") from None
            if not self.first <= v <= self.last:
                raise InvalidAddress(
                    f"the provided IP ({ip}) is not in the valid range. The range of valid IPs is {self.net}"
                )
            if v in self.used:
                raise InvalidAddress(f"the provided IP ({ip}) is already allocated")
            self.used.add(v)
            return ip
        size = self.last - self.first + 1
        for i in range(size):
            v = self.first + (self.cursor - self.first + i) % size
            if v not in self.used:
                self.used.add(v)
                self.cursor = v + 1 if v < self.last else self.first
                return str(ipaddress.ip_address(v))
        raise RangeFull(f"range is full: no more IPs available in {self.net}")

    def mark(self, ip: str) -> None:
        try:
            self.used.add(int(ipaddress.ip_address(ip)))
        except ValueError:
            pass

    def release(self, ip: str | None) -> None:
        if not ip or ip == "None":
            return
        try:
            self.used.discard(int(ipaddress.ip_address(ip)))
        except ValueError:
            pass


class PortAllocator:
    def __init__(self, lo: int = 30000, hi: int = 32767) -> None:
        self.lo, self.hi = lo, hi
        self.used: set[int] = set()
        self.cursor = lo

    def allocate(self, port: int | None = None) -> int:
        if port:
            if not self.lo <= port <= self.hi:
                raise InvalidAddress(
                    f"provided port is not in the valid range. The range of valid ports is {self.lo}-{self.hi}"
                )
            if port in self.used:
                raise InvalidAddress("provided port is already allocated")
            self.used.add(port)
            return port
        size = self.hi - self.lo + 1
        for i in range(size):
            p = self.lo + (self.cursor - self.lo + i) % size
            if p not in self.used:
                self.used.add(p)
                self.cursor = p + 1 if p < self.hi else self.lo
                return p
        raise RangeFull(f"range is full: no more ports available in {self.lo}-{self.hi}")

    def mark(self, port: int) -> None:
        self.used.add(port)

    def release(self, port: int | None) -> None:
        if port:
            self.used.discard(port)
