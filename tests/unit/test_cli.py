"""The hyperkube command: version, help, and the process supervisor behind `hyperkube up`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from hyperkube.cli.main import main
from hyperkube.cli.supervisor import Component, Supervisor


def test_version_reports_native(capsys) -> None:
    assert main(["version", "-o", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["native"] is True and data["version"] == data["nativeVersion"]


def test_console_script_help() -> None:
    exe = os.path.join(os.path.dirname(sys.executable), "hyperkube")
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "up" in r.stdout and "version" in r.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not alive for our purpose
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


async def test_supervisor_restarts_and_stops(tmp_path) -> None:
    marker = tmp_path / "ready"
    script = f"import pathlib, time; pathlib.Path({str(marker)!r}).touch(); time.sleep(60)"

    async def ready() -> bool:
        return marker.exists()

    sup = Supervisor(str(tmp_path / "logs"), ready_timeout=20, stop_grace=5)
    c = Component("sleeper", [sys.executable, "-c", script], ready=ready)
    await sup.start(c)
    assert c.proc is not None
    first = c.proc.pid
    os.kill(first, 9)
    for _ in range(100):  # restarted after a 1 s backoff
        await asyncio.sleep(0.1)
        if c.proc.pid != first:
            break
    assert c.proc.pid != first and c.restarts == 1
    second = c.proc.pid
    await sup.stop()
    assert not _alive(first) and not _alive(second)
    assert (tmp_path / "logs" / "sleeper.log").exists()


async def test_supervisor_reports_early_exit(tmp_path) -> None:
    async def never() -> bool:
        return False

    sup = Supervisor(str(tmp_path / "logs"), ready_timeout=20)
    c = Component("crasher", [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], ready=never)
    try:
        await sup.start(c)
    except RuntimeError as e:
        assert "exited with code 3" in str(e) and "boom" in str(e)
    else:
        raise AssertionError("start() should fail when the component exits")
    finally:
        await sup.stop()


def _server_args(tmp_path, config: str, *flags: str):
    import argparse

    from hyperkube.cli.config import apply_config
    from hyperkube.cli.main import build_parser

    f = tmp_path / "server.yaml"
    f.write_text(config)
    parser = build_parser()
    argv = ["server", "--config", str(f), *flags]
    args = parser.parse_args(argv)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    apply_config(sub.choices["server"], args, argv[1:])
    return args


def test_component_config_file_flags_win(tmp_path) -> None:
    args = _server_args(
        tmp_path,
        "apiVersion: hyperkube.io/v1\nkind: ServerConfiguration\nport: 7443\ndataDir: /srv/hk\nstorage: memory://\n",
        "--port",
        "8443",
    )
    assert args.port == 8443 and args.data_dir == "/srv/hk" and args.storage == "memory://"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("prot: 1\n", 'unknown field "prot" (valid fields:'),
        ("port: many\n", "field \"port\": invalid value 'many'"),
        ("port: [1, 2]\n", 'field "port": must be a single value'),
        ("- a\n", "expected a mapping"),
    ],
)
def test_component_config_errors_name_the_field(tmp_path, config: str, message: str) -> None:
    from hyperkube.cli.config import ConfigError

    with pytest.raises(ConfigError) as err:
        _server_args(tmp_path, config)
    assert message in str(err.value)


def test_component_config_through_the_command(tmp_path, capsys) -> None:
    f = tmp_path / "cm.yaml"
    f.write_text("leaderElect: maybe\n")
    assert main(["controller-manager", "--config", str(f)]) == 2
    assert 'field "leaderElect"' in capsys.readouterr().err


def test_install_kubeconfig_merges_a_context(tmp_path) -> None:
    import stat

    import yaml

    from hyperkube.cli.up_cmd import install_kubeconfig

    src = tmp_path / "kubeconfig"
    src.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "admin", "user": {"client-certificate-data": "Y2VydA=="}}],
                "contexts": [{"name": "hk", "context": {"cluster": "c", "user": "admin"}}],
                "current-context": "hk",
            }
        )
    )
    target = tmp_path / "home" / ".kube" / "config"
    target.parent.mkdir(parents=True)
    target.write_text(
        yaml.safe_dump(
            {
                "clusters": [{"name": "other", "cluster": {"server": "https://example.invalid"}}],
                "contexts": [{"name": "other", "context": {"cluster": "other", "user": "u"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "current-context": "other",
            }
        )
    )
    install_kubeconfig(str(src), str(target))
    install_kubeconfig(str(src), str(target))  # idempotent
    doc = yaml.safe_load(target.read_text())
    assert doc["current-context"] == "hyperkube"
    assert [c["name"] for c in doc["contexts"]] == ["other", "hyperkube"]
    assert (
        next(c for c in doc["clusters"] if c["name"] == "hyperkube")["cluster"]["server"]
        == "https://127.0.0.1:6443"
    )
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
