"""Pod networking through CNI: one network namespace per pod, wired by the standard plugins.

For every pod the kubelet creates a named network namespace (``ip netns add``, i.e. a bind mount under
``/run/netns``), then runs, per the CNI spec (https://www.cni.dev/docs/spec/):

- the ``loopback`` plugin on ``lo``;
- the node's network configuration list in order - by default ``bridge`` (with ``host-local`` IPAM over the
  node's podCIDR, the bridge as the pods' gateway) and ``portmap`` (hostPort DNAT, only when the pod asks
  for host ports) - each plugin executed with ``CNI_COMMAND``/``CNI_CONTAINERID``/``CNI_NETNS``/
  ``CNI_IFNAME``/``CNI_ARGS``/``CNI_PATH`` in its environment and its configuration (with ``name``,
  ``cniVersion``, ``runtimeConfig`` and the previous plugin's ``prevResult``) on stdin.

The ADD result is cached under ``<cache_dir>/results/`` (as libcni does) because DEL must be given the same
configuration and ``prevResult``; DEL runs the list in reverse, then loopback, and the namespace is deleted,
so nothing stays behind: the veth pair goes with the namespace's end, host-local releases the lease file.

The plugins run in the network namespace the kubelet itself runs in (the node's), or - ``host_netns`` -
in a namespace named by path (``nsenter --net=PATH``), which is how tests and ``hyperkube up`` give each
node a simulated host of its own without touching the machine's real network.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

CNI_VERSION = "1.0.0"
DEFAULT_BIN_DIRS = ("/opt/cni/bin", "/usr/lib/cni", "/usr/libexec/cni")
NETNS_DIR = "/run/netns"


class CNIError(Exception):
    """A plugin failed; ``code``/``msg``/``details`` are the CNI error fields."""

    def __init__(self, plugin: str, command: str, code: int, msg: str, details: str = "") -> None:
        self.plugin, self.command, self.code, self.msg, self.details = plugin, command, code, msg, details
        super().__init__(
            f"CNI plugin {plugin} {command} failed (code {code}): {msg}{': ' + details if details else ''}"
        )


def bridge_conflist(
    name: str,
    bridge: str,
    subnet: str,
    data_dir: str,
    mtu: int = 1500,
    ip_masq: bool = False,
    hairpin: bool = True,
) -> dict[str, Any]:
    """The default node network: a bridge (the pods' gateway), host-local IPAM on ``subnet``, portmap."""
    net = ipaddress.ip_network(subnet, strict=False)
    return {
        "cniVersion": CNI_VERSION,
        "name": name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipMasq": ip_masq,
                "hairpinMode": hairpin,
                "mtu": mtu,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": str(net)}]],
                    "routes": [{"dst": "0.0.0.0/0" if net.version == 4 else "::/0"}],
                    "dataDir": data_dir,
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
        ],
    }


@dataclass
class PodNetwork:
    """What the kubelet needs back from a pod's network setup."""

    netns: str  # path of the namespace
    ip: str
    ips: list[str] = field(default_factory=list)
    gateway: str = ""
    interface: str = "eth0"
    mac: str = ""
    result: dict[str, Any] = field(default_factory=dict)


def netns_path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


async def _run(
    argv: list[str], stdin: bytes | None = None, env: dict[str, str] | None = None
) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    out, err = await proc.communicate(stdin)
    return proc.returncode or 0, out, err


async def create_netns(name: str) -> str:
    """Create a named network namespace (``ip netns add``) with its loopback down; returns its path."""
    rc, _, err = await _run(["ip", "netns", "add", name])
    if rc != 0 and b"File exists" not in err:
        raise OSError(f"ip netns add {name}: {err.decode(errors='replace').strip()}")
    return netns_path(name)


async def delete_netns(name_or_path: str) -> None:
    name = os.path.basename(name_or_path)
    if not os.path.exists(netns_path(name)):
        return
    rc, _, err = await _run(["ip", "netns", "delete", name])
    if rc != 0 and os.path.exists(netns_path(name)):
        raise OSError(f"ip netns delete {name}: {err.decode(errors='replace').strip()}")


class CNI:
    """Runs a network configuration list against pod namespaces (see the module docstring)."""

    def __init__(
        self,
        conflist: dict[str, Any],
        cache_dir: str,
        bin_dirs: tuple[str, ...] | list[str] = DEFAULT_BIN_DIRS,
        host_netns: str | None = None,
        loopback: bool = True,
    ) -> None:
        if not conflist.get("plugins"):
            raise ValueError("CNI configuration list has no plugins")
        self.conflist = conflist
        self.name = conflist.get("name", "hyperkube")
        self.version = conflist.get("cniVersion", CNI_VERSION)
        self.cache_dir = cache_dir
        self.bin_dirs = [d for d in bin_dirs if os.path.isdir(d)]
        self.host_netns = host_netns
        self.loopback = loopback
        os.makedirs(os.path.join(cache_dir, "results"), exist_ok=True)

    def find_plugin(self, ptype: str) -> str:
        for d in self.bin_dirs:
            p = os.path.join(d, ptype)
            if os.access(p, os.X_OK):
                return p
        raise CNIError(
            ptype, "FIND", 0, f"plugin {ptype!r} not found in {':'.join(self.bin_dirs) or '(no dirs)'}"
        )

    def _cache_path(self, container_id: str, ifname: str) -> str:
        return os.path.join(self.cache_dir, "results", f"{self.name}-{container_id}-{ifname}.json")

    async def exec_plugin(
        self,
        conf: dict[str, Any],
        command: str,
        container_id: str,
        netns: str,
        ifname: str,
        args: dict[str, str],
    ) -> dict[str, Any]:
        ptype = conf["type"]
        path = self.find_plugin(ptype)
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": netns,
            "CNI_IFNAME": ifname,
            "CNI_PATH": ":".join(self.bin_dirs),
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        }
        if args:
            env["CNI_ARGS"] = ";".join(f"{k}={v}" for k, v in args.items())
        argv = [path]
        if self.host_netns:
            argv = [shutil.which("nsenter") or "nsenter", f"--net={self.host_netns}", "--", path]
        rc, out, err = await _run(argv, json.dumps(conf).encode(), env)
        if rc != 0:
            try:
                e = json.loads(out or err)
                raise CNIError(ptype, command, int(e.get("code", rc)), e.get("msg", ""), e.get("details", ""))
            except (ValueError, AttributeError):
                raise CNIError(ptype, command, rc, (err or out).decode(errors="replace").strip()) from None
        if command == "ADD":
            try:
                return json.loads(out) if out.strip() else {}
            except ValueError:
                raise CNIError(ptype, command, 999, f"invalid result: {out[:200]!r}") from None
        return {}

    def _plugin_conf(
        self, plugin: dict[str, Any], runtime_config: dict[str, Any], prev: dict[str, Any] | None
    ) -> dict[str, Any]:
        conf = dict(plugin)
        conf["name"] = self.name
        conf["cniVersion"] = self.version
        caps = plugin.get("capabilities") or {}
        rc = {k: v for k, v in runtime_config.items() if caps.get(k)}
        conf.pop("runtimeConfig", None)
        if rc:
            conf["runtimeConfig"] = rc
        if prev is not None:
            conf["prevResult"] = prev
        return conf

    async def add(
        self,
        container_id: str,
        netns: str,
        ifname: str = "eth0",
        args: dict[str, str] | None = None,
        port_mappings: list[dict[str, Any]] | None = None,
    ) -> PodNetwork:
        """ADD the pod to the network; on failure everything done so far is undone (DEL)."""
        args = args or {}
        runtime_config: dict[str, Any] = {}
        if port_mappings:
            runtime_config["portMappings"] = port_mappings
        try:
            if self.loopback:
                lo = {"cniVersion": self.version, "name": "cni-loopback", "type": "loopback"}
                await self.exec_plugin(lo, "ADD", container_id, netns, "lo", args)
            prev: dict[str, Any] | None = None
            for plugin in self.conflist["plugins"]:
                if plugin.get("type") == "portmap" and not port_mappings:
                    continue  # portmap without mappings is a no-op that still costs iptables calls
                conf = self._plugin_conf(plugin, runtime_config, prev)
                prev = await self.exec_plugin(conf, "ADD", container_id, netns, ifname, args) or prev
        except BaseException:
            with contextlib.suppress(Exception):
                await self._delete(container_id, netns, ifname, args, runtime_config, None)
            raise
        cached = {"kind": "cniCacheV1", "containerId": container_id, "ifName": ifname, "netns": netns,
                  "args": args, "runtimeConfig": runtime_config, "result": prev or {}}  # fmt: skip
        path = self._cache_path(container_id, ifname)
        with open(path + ".tmp", "w") as f:
            json.dump(cached, f)
        os.replace(path + ".tmp", path)
        return self._pod_network(netns, ifname, prev or {})

    @staticmethod
    def _pod_network(netns: str, ifname: str, result: dict[str, Any]) -> PodNetwork:
        ips = [ip["address"].split("/")[0] for ip in result.get("ips", [])]
        gw = next((ip.get("gateway", "") for ip in result.get("ips", [])), "")
        mac = ""
        for itf in result.get("interfaces", []):
            if itf.get("name") == ifname and itf.get("sandbox"):
                mac = itf.get("mac", "")
        return PodNetwork(netns, ips[0] if ips else "", ips, gw, ifname, mac, result)

    async def delete(
        self, container_id: str, netns: str, ifname: str = "eth0", args: dict[str, str] | None = None
    ) -> None:
        """DEL: idempotent; works with the cached ADD result, or without one (the plugins tolerate it)."""
        path = self._cache_path(container_id, ifname)
        cached: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError), open(path) as f:
            cached = json.load(f)
        await self._delete(
            container_id,
            netns if os.path.exists(netns) else "",
            ifname,
            args if args is not None else cached.get("args", {}),
            cached.get("runtimeConfig", {}),
            cached.get("result"),
        )
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    async def _delete(
        self,
        container_id: str,
        netns: str,
        ifname: str,
        args: dict[str, str],
        runtime_config: dict[str, Any],
        prev: dict[str, Any] | None,
    ) -> None:
        errors: list[Exception] = []
        for plugin in reversed(self.conflist["plugins"]):
            if plugin.get("type") == "portmap" and not runtime_config.get("portMappings"):
                continue
            conf = self._plugin_conf(plugin, runtime_config, prev)
            try:
                await self.exec_plugin(conf, "DEL", container_id, netns, ifname, args)
            except CNIError as e:
                errors.append(e)
        if self.loopback and netns:
            lo = {"cniVersion": self.version, "name": "cni-loopback", "type": "loopback"}
            with contextlib.suppress(CNIError):
                await self.exec_plugin(lo, "DEL", container_id, netns, "lo", args)
        if errors:
            raise errors[0]

    async def status(self, container_id: str, ifname: str = "eth0") -> PodNetwork | None:
        """The cached ADD result (after a kubelet restart: the pod's IP without running ADD again)."""
        try:
            with open(self._cache_path(container_id, ifname)) as f:
                cached = json.load(f)
        except (OSError, ValueError):
            return None
        return self._pod_network(cached.get("netns", ""), ifname, cached.get("result", {}))


class PodNetworks:
    """Pod network lifecycle for the kubelet: a named namespace per pod plus CNI ADD/DEL on it."""

    def __init__(self, cni: CNI | None, netns_prefix: str = "hk-pod-") -> None:
        self.cni = cni
        self.prefix = netns_prefix

    def netns_name(self, pod_uid: str) -> str:
        return self.prefix + pod_uid

    async def setup(
        self, pod_uid: str, namespace: str, name: str, port_mappings: list[dict[str, Any]] | None = None
    ) -> PodNetwork:
        nsname = self.netns_name(pod_uid)
        if self.cni is not None:
            cached = await self.cni.status(pod_uid)
            if cached is not None and os.path.exists(netns_path(nsname)):
                return cached  # set up by a previous kubelet: adopt it
        path = await create_netns(nsname)
        if self.cni is None:
            return PodNetwork(path, "")
        args = {
            "IgnoreUnknown": "1",
            "K8S_POD_NAMESPACE": namespace,
            "K8S_POD_NAME": name,
            "K8S_POD_INFRA_CONTAINER_ID": pod_uid,
            "K8S_POD_UID": pod_uid,
        }
        try:
            return await self.cni.add(pod_uid, path, "eth0", args, port_mappings)
        except BaseException:
            with contextlib.suppress(Exception):
                await delete_netns(nsname)
            raise

    async def teardown(self, pod_uid: str) -> None:
        nsname = self.netns_name(pod_uid)
        try:
            if self.cni is not None:
                await self.cni.delete(pod_uid, netns_path(nsname))
        finally:
            await delete_netns(nsname)
