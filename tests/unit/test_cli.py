"""The hyperkube command: version, help, and the process supervisor behind `hyperkube up`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

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
