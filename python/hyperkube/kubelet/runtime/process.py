"""The ``process`` runtime: each container is its command run as a plain host process. NO ISOLATION.

For machines without runc (or without root). The container's command runs on the host, as the kubelet's
user unless ``runAsUser`` is set (needs root), in its own process group, with the container's env (the
image's env when the image is in the store, then the spec's), its working dir (default: a per-container
directory) and stdout/stderr appended to its log file. It shares the host's filesystem, PID and network
namespaces: hostname, mounts, cgroup limits and the pod network namespace are NOT applied (the pod IP is
the host's). The command must exist on the host (``sh``, ``sleep`` ...); images are optional: when the
image is in the node's store its Entrypoint/Cmd/Env are used, otherwise the spec's command is required.

Like ``runc`` it runs each container under the shim (``shim.py``), so exit codes survive a kubelet
restart and a second instance on the same data dir adopts the running containers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess

from hyperkube.kubelet.images import ImageNotFound, ImageStore
from hyperkube.kubelet.runtime.base import (
    ContainerSpec,
    CreateContainerError,
    ExecResult,
    RuntimeError_,
    State,
)
from hyperkube.kubelet.runtime.runc import merge_env
from hyperkube.kubelet.runtime.shimmed import ShimRuntime, write_json

HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ProcessRuntime(ShimRuntime):
    name = "process"
    mode = "process"

    def __init__(self, data_dir: str, images: ImageStore | None = None) -> None:
        super().__init__(data_dir)
        self.images = images or ImageStore(os.path.join(self.data_dir, "images"))

    async def version(self) -> str:
        from hyperkube import __version__ as v

        return f"process://{v}"

    def has_image(self, image: str) -> bool:
        return True  # images are optional: the command runs on the host

    def image_id(self, image: str) -> str:
        try:
            return self.images.get(image).id
        except (ImageNotFound, Exception):
            return ""

    async def create(self, spec: ContainerSpec) -> str:
        entry: list[str] = []
        cmd: list[str] = []
        image_env = [f"PATH={HOST_PATH}"]
        image_id = ""
        with contextlib.suppress(ImageNotFound, Exception):
            img = self.images.get(spec.image)
            entry, cmd, image_id = img.entrypoint, img.cmd, img.id
            image_env = [e for e in img.env if not e.startswith("PATH=")] + [f"PATH={HOST_PATH}"]
        argv = list(spec.command) + list(spec.args) if spec.command else entry + (list(spec.args) or cmd)
        if not argv:
            raise CreateContainerError(f"container {spec.name!r}: no command specified and image has no Cmd")
        cid, d = self.new_container_dir(spec, spec.image, image_id)
        cwd = spec.working_dir or os.path.join(d, "work")
        os.makedirs(cwd, exist_ok=True)
        env = dict(kv.partition("=")[::2] for kv in merge_env(image_env, spec.env, spec.hostname))
        if spec.run_as_user is not None and os.geteuid() != 0 and spec.run_as_user != os.geteuid():
            raise CreateContainerError("runAsUser needs the process runtime to run as root")
        for m in spec.mounts:
            env.setdefault("HK_MOUNT_" + m.container_path.strip("/").replace("/", "_").upper(), m.host_path)
        write_json(
            os.path.join(d, "shim.json"),
            {
                "mode": "process",
                "argv": argv,
                "env": env,
                "cwd": cwd,
                "uid": spec.run_as_user,
                "gid": spec.run_as_group if spec.run_as_group is not None else None,
                "log": os.path.join(d, "container.log") if not spec.log_path else spec.log_path,
            },
        )
        return cid

    async def kill(self, cid: str, sig: int) -> None:
        st = self.status_sync(cid)
        if st.state != State.RUNNING or not st.pid:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(st.pid, sig)

    async def exec(self, cid: str, argv: list[str], timeout: float = 10.0) -> ExecResult:
        st = self.status_sync(cid)
        if st.state != State.RUNNING:
            raise RuntimeError_(f"container {cid} is not running", reason="ContainerNotRunning")
        import json

        with open(os.path.join(self.cdir(cid), "shim.json")) as f:
            cfg = json.load(f)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cfg.get("cwd") or None,
            env=cfg.get("env") or None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
            return ExecResult(proc.returncode or 0, out, err)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = await proc.communicate()
            return ExecResult(-1, out, err, timed_out=True)
