"""Programming the kernel: the iptables and nftables backends of the proxy.

Both take the columnar service model (``hyperkube.proxy.model``), have the native generator write
the whole input in one call, and apply it in one transaction (one ``iptables-restore --noflush``
or one ``nft -f -``). Commands go through a ``Runner`` so that they can run inside a network
namespace (``ip netns exec NS ...``) and tests can pass a fake.

iptables (upstream-compatible): a full sync reads ``iptables-save`` once (to find stale service
chains and missing jump rules such as ``PREROUTING -j KUBE-SERVICES``) and writes every chain; a
partial sync (KEP-3453) writes the top-level chains plus the chains of rows whose fingerprint
changed, deletes chains no longer produced, and falls back to a full sync when the restore fails.

nftables (ours): a full sync replaces the ``ip hyperkube`` table in one transaction; after that a
sync sends only element and chain differences from the last applied state. A failed incremental
transaction (e.g. someone deleted the table) is followed by a full one.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hyperkube import _native
from hyperkube.proxy.model import Model


class Runner(Protocol):
    def __call__(
        self, argv: Sequence[str], input: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]: ...


class CommandRunner:
    """Runs commands on the host, or inside network namespace ``netns``."""

    def __init__(self, netns: str | None = None) -> None:
        self.prefix = ["ip", "netns", "exec", netns] if netns else []

    def __call__(self, argv: Sequence[str], input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([*self.prefix, *argv], input=input, capture_output=True, check=False)


class ApplyError(RuntimeError):
    """The kernel refused the generated input (the message carries the tool's error)."""


@dataclass
class SyncResult:
    mode: str
    full: bool
    seconds: float
    generate_seconds: float
    apply_seconds: float
    stats: dict[str, Any] = field(default_factory=dict)
    fell_back: bool = False


# Upstream's iptablesJumpChains: (table, chain, rule args) inserted at the top of built-in chains.
JUMP_RULES: tuple[tuple[str, str, str], ...] = (
    (
        "filter",
        "INPUT",
        '-m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES',
    ),
    (
        "filter",
        "FORWARD",
        '-m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES',
    ),
    ("filter", "INPUT", '-m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS'),
    (
        "filter",
        "FORWARD",
        '-m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    ),
    (
        "filter",
        "OUTPUT",
        '-m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    ),
    ("filter", "FORWARD", '-m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD'),
    (
        "filter",
        "INPUT",
        '-m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
    ),
    (
        "filter",
        "OUTPUT",
        '-m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
    ),
    (
        "filter",
        "FORWARD",
        '-m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
    ),
    ("nat", "OUTPUT", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("nat", "PREROUTING", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("nat", "POSTROUTING", '-m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING'),
)
TOP_CHAINS = {
    "filter": (
        "KUBE-SERVICES",
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-FORWARD",
        "KUBE-NODEPORTS",
        "KUBE-PROXY-FIREWALL",
    ),
    "nat": ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"),
}
SERVICE_CHAIN_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-SEP-", "KUBE-FW-", "KUBE-EXT-")


def _saved(text: str) -> tuple[set[str], set[str]]:
    """(chain names, rule lines) in one table's iptables-save output."""
    chains, rules = set(), set()
    for line in text.splitlines():
        if line.startswith(":"):
            chains.add(line[1:].split()[0])
        elif line.startswith("-A "):
            rules.add(line)
    return chains, rules


class _Base:
    mode = ""

    def __init__(
        self,
        runner: Runner | None = None,
        *,
        cluster_cidr: str | None = None,
        node_ip: str | None = None,
        masquerade_all: bool = False,
    ) -> None:
        self.run = runner or CommandRunner()
        self.opts: dict[str, Any] = {
            "cluster_cidr": cluster_cidr,
            "node_ip": node_ip,
            "masquerade_all": masquerade_all,
        }
        self.table = _native.ProxyTable(self.mode, **self.opts)

    def update(self, model: Model, removed: list[tuple[str, int]] | None = None) -> None:
        """Upsert the rows of changed services (``ModelBuilder.changes()``) for the next sync."""
        self.table.update(model, removed or [])

    def _check(self, proc: subprocess.CompletedProcess[bytes], what: str) -> None:
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            raise ApplyError(f"{what} failed (exit {proc.returncode}): {err}")


class IptablesBackend(_Base):
    """Upstream-compatible iptables rules, full and partial syncs."""

    mode = "iptables"

    def render(self, model: Model) -> bytes:
        text, _, _ = _native.proxy_render_iptables(model, **self.opts)
        return text

    def _save(self, table: str) -> str:
        proc = self.run(["iptables-save", "-t", table])
        self._check(proc, f"iptables-save -t {table}")
        return proc.stdout.decode()

    def sync(self, model: Model | None = None, full: bool = False) -> SyncResult:
        """Apply the table (replaced by ``model`` when given): partial unless ``full``."""
        t0 = time.perf_counter()
        if model is not None:
            self.table.replace(model)
        if not full:
            text, stats = self.table.render(False)
            if not stats["full"]:
                t1 = time.perf_counter()
                proc = self.run(["iptables-restore", "-w", "--noflush"], input=text)
                if proc.returncode == 0:
                    self.table.commit()
                    t2 = time.perf_counter()
                    return SyncResult(self.mode, False, t2 - t0, t1 - t0, t2 - t1, stats)
                # KEP-3453: a failed partial restore is followed by a full one.
                self.table.invalidate()
                res = self.sync(full=True)
                res.fell_back = True
                return res
        filt, nat = self._save("filter"), self._save("nat")
        _, frules = _saved(filt)
        nchains, nrules = _saved(nat)
        existing = sorted(c for c in nchains if c.startswith(SERVICE_CHAIN_PREFIXES))
        text, stats = self.table.render(True, existing)
        jumps: dict[str, list[str]] = {"filter": [], "nat": []}
        for table, chain, args in JUMP_RULES:
            have = frules if table == "filter" else nrules
            if f"-A {chain} {args}" not in have:
                jumps[table].append(f"-I {chain} {args}")
        out = text.decode()
        if jumps["filter"]:
            out = out.replace("COMMIT\n*nat\n", "\n".join(jumps["filter"]) + "\nCOMMIT\n*nat\n", 1)
        if jumps["nat"]:
            out = out[: -len("COMMIT\n")] + "\n".join(jumps["nat"]) + "\nCOMMIT\n"
        t1 = time.perf_counter()
        proc = self.run(["iptables-restore", "-w", "--noflush"], input=out.encode())
        if proc.returncode != 0:
            self.table.invalidate()
            self._check(proc, "iptables-restore")
        self.table.commit()
        t2 = time.perf_counter()
        return SyncResult(self.mode, True, t2 - t0, t1 - t0, t2 - t1, stats)

    def cleanup(self) -> None:
        """Remove every jump rule and chain of ours (upstream's CleanupLeftovers)."""
        out: list[str] = []
        for table in ("filter", "nat"):
            chains, rules = _saved(self._save(table))
            out.append(f"*{table}")
            for t, chain, args in JUMP_RULES:
                if t == table and f"-A {chain} {args}" in rules:
                    out.append(f"-D {chain} {args}")
            ours = [c for c in TOP_CHAINS[table] if c in chains]
            if table == "nat":
                ours += sorted(c for c in chains if c.startswith(SERVICE_CHAIN_PREFIXES))
            out += [f":{c} - [0:0]" for c in ours]
            out += [f"-X {c}" for c in ours]
            out.append("COMMIT")
        proc = self.run(["iptables-restore", "-w", "--noflush"], input=("\n".join(out) + "\n").encode())
        self._check(proc, "iptables-restore (cleanup)")
        self.table.invalidate()


class NftablesBackend(_Base):
    """Our nftables design: one table, element-level updates."""

    mode = "nftables"
    table_name = "hyperkube"

    def render(self, model: Model) -> bytes:
        text, _, _ = _native.proxy_render_nftables(model, **self.opts)
        return text

    def sync(self, model: Model | None = None, full: bool = False) -> SyncResult:
        """Apply the table (replaced by ``model`` when given): the difference unless ``full``."""
        t0 = time.perf_counter()
        if model is not None:
            self.table.replace(model)
        text, stats = self.table.render(full)
        t1 = time.perf_counter()
        if text:
            proc = self.run(["nft", "-f", "-"], input=text)
            if proc.returncode != 0:
                self.table.invalidate()
                if not stats["full"]:
                    res = self.sync(full=True)
                    res.fell_back = True
                    return res
                self._check(proc, "nft -f")
        self.table.commit()
        t2 = time.perf_counter()
        return SyncResult(self.mode, bool(stats["full"]), t2 - t0, t1 - t0, t2 - t1, stats)

    def cleanup(self) -> None:
        proc = self.run(["nft", "delete", "table", "ip", self.table_name])
        if proc.returncode != 0 and b"No such file or directory" not in proc.stderr:
            self._check(proc, "nft delete table")
        self.table.invalidate()


Backend = IptablesBackend | NftablesBackend


def new_backend(mode: str, runner: Runner | None = None, **kw: Any) -> Backend:
    if mode == "iptables":
        return IptablesBackend(runner, **kw)
    if mode == "nftables":
        return NftablesBackend(runner, **kw)
    raise ValueError(f'unknown proxy mode {mode!r}: supported values: "iptables", "nftables"')
