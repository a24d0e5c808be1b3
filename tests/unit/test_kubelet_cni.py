"""The CNI driver against recording fake plugins: the spec's env, stdin config, chaining and DEL order.

The real plugins (bridge, host-local, portmap) run in tests/e2e/test_kubelet_runc.py."""

from __future__ import annotations

import json
import os
import stat

import pytest

from hyperkube.kubelet.cni import CNI, CNIError, bridge_conflist

PLUGIN = """#!/bin/sh
d={rec}
n=$(ls $d | wc -l)
n=$(printf %03d $n)
env | grep '^CNI_' | sort > $d/$n-$CNI_COMMAND-{name}.env
cat > $d/$n-$CNI_COMMAND-{name}.json
if [ "{name}" = failing ] && [ "$CNI_COMMAND" = ADD ]; then
  echo '{{"cniVersion":"1.0.0","code":11,"msg":"no addresses left","details":"range full"}}'
  exit 1
fi
if [ "$CNI_COMMAND" = ADD ]; then
  echo '{{"cniVersion":"1.0.0","ips":[{{"address":"10.1.0.5/24","gateway":"10.1.0.1"}}],"interfaces":[{{"name":"eth0","mac":"aa:bb:cc:dd:ee:ff","sandbox":"'$CNI_NETNS'"}}],"by":"{name}"}}'
fi
"""


@pytest.fixture
def plugins(tmp_path):  # type: ignore[no-untyped-def]
    bindir, rec = tmp_path / "bin", tmp_path / "rec"
    bindir.mkdir()
    rec.mkdir()
    for name in ("loopback", "fakebridge", "portmap", "failing"):
        p = bindir / name
        p.write_text(PLUGIN.format(rec=rec, name=name))
        p.chmod(p.stat().st_mode | stat.S_IEXEC)
    return bindir, rec


def _calls(rec) -> list[tuple[str, dict[str, str], dict]]:  # type: ignore[no-untyped-def]
    out = []
    for f in sorted(os.listdir(rec)):
        if f.endswith(".json"):
            env = dict(
                line.split("=", 1) for line in (rec / f.replace(".json", ".env")).read_text().splitlines()
            )
            out.append((f.split("-", 1)[1][:-5], env, json.loads((rec / f).read_text())))
    return out


CONF = {
    "cniVersion": "1.0.0",
    "name": "testnet",
    "plugins": [
        {"type": "fakebridge", "bridge": "br-x"},
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ],
}


async def test_add_and_del_follow_the_spec(plugins, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bindir, rec = plugins
    cni = CNI(CONF, str(tmp_path / "cache"), bin_dirs=[str(bindir)])
    ports = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]
    net = await cni.add("pod-1", "/run/netns/x", args={"K8S_POD_NAME": "web"}, port_mappings=ports)
    assert (net.ip, net.gateway, net.mac) == ("10.1.0.5", "10.1.0.1", "aa:bb:cc:dd:ee:ff")
    calls = _calls(rec)
    assert [c[0] for c in calls] == ["ADD-loopback", "ADD-fakebridge", "ADD-portmap"]
    lo, br, pm = calls
    assert lo[1]["CNI_IFNAME"] == "lo" and br[1]["CNI_IFNAME"] == "eth0"
    for _, env, conf in calls:
        assert env["CNI_CONTAINERID"] == "pod-1" and env["CNI_NETNS"] == "/run/netns/x"
        assert env["CNI_PATH"] == str(bindir) and env["CNI_ARGS"] == "K8S_POD_NAME=web"
        assert conf["cniVersion"] == "1.0.0"
    assert br[2] == {"type": "fakebridge", "bridge": "br-x", "name": "testnet", "cniVersion": "1.0.0"}
    assert pm[2]["prevResult"]["by"] == "fakebridge"  # chained: the previous plugin's result
    assert pm[2]["runtimeConfig"] == {"portMappings": ports}  # only to plugins with the capability
    assert (await cni.status("pod-1")).ip == "10.1.0.5"  # type: ignore[union-attr]

    for f in os.listdir(rec):
        os.unlink(rec / f)
    await cni.delete("pod-1", "/run/netns/x")
    calls = _calls(rec)
    # DEL in reverse order with the cached result; netns is gone here, so CNI_NETNS is empty (allowed)
    assert [c[0] for c in calls] == ["DEL-portmap", "DEL-fakebridge"]
    assert calls[0][2]["prevResult"]["by"] == "portmap" and calls[0][1].get("CNI_NETNS", "") == ""
    assert await cni.status("pod-1") is None


async def test_portmap_skipped_without_ports(plugins, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bindir, rec = plugins
    cni = CNI(CONF, str(tmp_path / "cache"), bin_dirs=[str(bindir)], loopback=False)
    await cni.add("pod-2", "/run/netns/y")
    assert [c[0] for c in _calls(rec)] == ["ADD-fakebridge"]


async def test_failed_add_is_undone(plugins, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bindir, rec = plugins
    conf = {"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "fakebridge"}, {"type": "failing"}]}
    cni = CNI(conf, str(tmp_path / "cache"), bin_dirs=[str(bindir)], loopback=False)
    with pytest.raises(CNIError, match=r"failing ADD failed \(code 11\): no addresses left: range full"):
        await cni.add("pod-3", "/run/netns/z")
    assert [c[0] for c in _calls(rec)] == ["ADD-fakebridge", "ADD-failing", "DEL-failing", "DEL-fakebridge"]
    assert await cni.status("pod-3") is None


async def test_missing_plugin(tmp_path) -> None:
    cni = CNI(
        {"name": "n", "plugins": [{"type": "nope"}]}, str(tmp_path), bin_dirs=[str(tmp_path)], loopback=False
    )
    with pytest.raises(CNIError, match="plugin 'nope' not found"):
        await cni.add("pod-4", "/run/netns/q")


def test_bridge_conflist() -> None:
    c = bridge_conflist("hk", "hk0", "10.244.1.0/24", "/data/ipam")
    bridge, portmap = c["plugins"]
    assert bridge["type"] == "bridge" and bridge["isGateway"] and bridge["bridge"] == "hk0"
    assert bridge["ipam"] == {
        "type": "host-local",
        "ranges": [[{"subnet": "10.244.1.0/24"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "/data/ipam",
    }
    assert portmap["capabilities"] == {"portMappings": True}
