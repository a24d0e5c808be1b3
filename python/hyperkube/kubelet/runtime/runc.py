"""The ``runc`` runtime: real OCI containers from the node's image store.

create
    looks the image up in the :class:`~hyperkube.kubelet.images.ImageStore` (missing ->
    :class:`ErrImageNeverPull`), gives the container a copy-on-write root filesystem - an **overlay mount**
    (lower = the image's flattened tree, upper/work in the container dir), or a full copy of the tree when
    the kernel refuses the overlay (recorded as ``rootfsMode`` in ``meta.json``) - and writes the OCI
    bundle's ``config.json`` from the image config and the :class:`ContainerSpec`: process args
    (Kubernetes rules: ``command`` replaces Entrypoint, ``args`` replaces Cmd), env (image env, then the
    spec's), working dir, user (``runAsUser`` or the image's ``User``, names looked up in the image's
    ``/etc/passwd``), hostname (the pod name), namespaces (its own pid, ipc, uts and mount namespaces; the
    pod's network namespace by path, or a new one), bind mounts, docker's default capability set, cgroup
    limits (memory limit with swap equal to it, cpu quota/period from the limit, cpu shares from the
    request, pids). The cgroup path is relative (``hyperkube/<id>``), i.e. below the kubelet's own cgroup
    in each hierarchy; on this host's hybrid v1/v2 layout runc uses the v1 controllers.
start
    spawns the shim (``shim.py``), which runs ``runc run -d`` with the log file as stdout/stderr and stays
    the container's parent (child subreaper) to record its exit code and OOM kill.
kill / exec
    ``runc kill``; ``runc exec`` (the process inherits env, cwd and user from config.json) with a timeout
    after which the exec'd process is SIGKILLed by pid.
remove
    ``runc delete --force``, unmount the rootfs, delete the directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import os
import resource
import shutil
import signal
import subprocess
from typing import Any

from hyperkube.kubelet.images import Image, ImageNotFound, ImageStore
from hyperkube.kubelet.runtime.base import (
    ContainerSpec,
    CreateContainerError,
    ErrImageNeverPull,
    ExecResult,
    RuntimeError_,
    State,
)
from hyperkube.kubelet.runtime.shimmed import ShimRuntime, write_json

DEFAULT_CAPS = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]
ALL_CAPS = DEFAULT_CAPS + [
    "CAP_DAC_READ_SEARCH",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_LEASE",
    "CAP_AUDIT_CONTROL",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
]
MASKED_PATHS = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)


def mount_overlay(lower: str, upper: str, work: str, target: str) -> None:
    opts = f"lowerdir={lower},upperdir={upper},workdir={work}".encode()
    if _libc.mount(b"overlay", target.encode(), b"overlay", 0, opts) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount overlay on {target}: {os.strerror(e)}")


def umount(target: str) -> None:
    if _libc.umount2(target.encode(), MNT_DETACH) != 0:
        e = ctypes.get_errno()
        if e not in (errno.EINVAL, errno.ENOENT):  # EINVAL: not a mount point
            raise OSError(e, f"umount {target}: {os.strerror(e)}")


def is_mounted(target: str) -> bool:
    target = os.path.realpath(target)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


def lookup_user(rootfs: str, user: str) -> tuple[int, int]:
    """``uid[:gid]`` or ``name[:group]`` -> (uid, gid), names resolved in the image's /etc files."""
    name, _, group = user.partition(":")

    def find(path: str, key: str) -> list[str] | None:
        with contextlib.suppress(OSError), open(os.path.join(rootfs, path)) as f:
            for line in f:
                parts = line.rstrip("\n").split(":")
                if parts and parts[0] == key:
                    return parts
        return None

    if name.isdigit():
        uid = int(name)
        pw = None
        with contextlib.suppress(OSError), open(os.path.join(rootfs, "etc/passwd")) as f:
            pw = next((ln.split(":") for ln in f if ln.split(":")[2:3] == [name]), None)
        gid = int(pw[3]) if pw and len(pw) > 3 and pw[3].isdigit() else 0
    else:
        pw = find("etc/passwd", name)
        if pw is None or len(pw) < 4:
            raise CreateContainerError(f"unable to find user {name}: no matching entries in passwd file")
        uid, gid = int(pw[2]), int(pw[3])
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            gr = find("etc/group", group)
            if gr is None:
                raise CreateContainerError(f"unable to find group {group}: no matching entries in group file")
            gid = int(gr[2])
    return uid, gid


def process_args(spec: ContainerSpec, image: Image) -> list[str]:
    """Kubernetes: ``command`` replaces the image Entrypoint (and drops its Cmd); ``args`` replaces Cmd."""
    if spec.command:
        return list(spec.command) + list(spec.args)
    return image.entrypoint + (list(spec.args) if spec.args else image.cmd)


def merge_env(image_env: list[str], spec_env: list[tuple[str, str]], hostname: str = "") -> list[str]:
    env: dict[str, str] = {}
    for kv in image_env:
        k, _, v = kv.partition("=")
        env[k] = v
    if hostname:
        env.setdefault("HOSTNAME", hostname)
    for k, v in spec_env:
        env[k] = v
    return [f"{k}={v}" for k, v in env.items()]


def oci_config(spec: ContainerSpec, image: Image, rootfs: str) -> dict[str, Any]:
    args = process_args(spec, image)
    if not args:
        raise CreateContainerError(f"container {spec.name!r}: no command specified and image has no Cmd")
    if spec.run_as_user is not None:
        uid = spec.run_as_user
        gid = spec.run_as_group if spec.run_as_group is not None else lookup_user(rootfs, str(uid))[1]
    elif image.user:
        uid, gid = lookup_user(rootfs, image.user)
        if spec.run_as_group is not None:
            gid = spec.run_as_group
    else:
        uid, gid = 0, spec.run_as_group or 0
    caps = ALL_CAPS if spec.privileged else DEFAULT_CAPS
    # As many open files as the kubelet may have (containerd's default is its own limit too).
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = 1048576 if nofile == resource.RLIM_INFINITY else nofile
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
    ]  # fmt: skip
    for m in spec.mounts:
        if not os.path.exists(m.host_path):
            raise CreateContainerError(
                f"mount source {m.host_path!r} for {m.container_path!r} does not exist"
            )
        opts = ["rbind", "rprivate", "ro" if m.read_only else "rw"]
        mounts.append(
            {"destination": m.container_path, "type": "bind", "source": m.host_path, "options": opts}
        )
    namespaces: list[dict[str, str]] = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    namespaces.append({"type": "network", "path": spec.netns} if spec.netns else {"type": "network"})
    resources: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    if spec.memory_limit > 0:
        resources["memory"] = {"limit": spec.memory_limit, "swap": spec.memory_limit}
    cpu: dict[str, Any] = {}
    if spec.cpu_limit_millis > 0:
        cpu["period"] = 100000
        cpu["quota"] = max(1000, spec.cpu_limit_millis * 100)
    if spec.cpu_request_millis > 0:
        cpu["shares"] = max(2, spec.cpu_request_millis * 1024 // 1000)
    if cpu:
        resources["cpu"] = cpu
    if spec.pids_limit > 0:
        resources["pids"] = {"limit": spec.pids_limit}
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": uid, "gid": gid},
            "args": args,
            "env": merge_env(image.env, spec.env, spec.hostname),
            "cwd": spec.working_dir or image.working_dir,
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
            "noNewPrivileges": False,
        },
        "root": {"path": rootfs, "readonly": spec.read_only_rootfs},
        "hostname": spec.hostname or spec.name,
        "mounts": mounts,
        "linux": {
            "cgroupsPath": "hyperkube/" + os.path.basename(os.path.dirname(rootfs)),
            "resources": resources,
            "namespaces": namespaces,
            "maskedPaths": [] if spec.privileged else MASKED_PATHS,
            "readonlyPaths": [] if spec.privileged else READONLY_PATHS,
        },
    }


def find_runc() -> str | None:
    return shutil.which("runc") or next(
        (p for p in ("/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc") if os.access(p, os.X_OK)),
        None,
    )


class RuncRuntime(ShimRuntime):
    name = "runc"
    mode = "runc"

    def __init__(
        self, data_dir: str, images: ImageStore | None = None, runc: str | None = None, overlay: bool = True
    ) -> None:
        super().__init__(data_dir)
        self.images = images or ImageStore(os.path.join(self.data_dir, "images"))
        self.runc = runc or find_runc() or "runc"
        self.state_root = os.path.join(self.data_dir, "runc")
        os.makedirs(self.state_root, mode=0o700, exist_ok=True)
        self.overlay = overlay
        self._version = ""

    async def version(self) -> str:
        if not self._version:
            proc = await asyncio.create_subprocess_exec(
                self.runc, "--version", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
            )
            out, _ = await proc.communicate()
            first = out.decode().split("\n", 1)[0].split()
            self._version = "runc://" + (first[2].split("+")[0] if len(first) >= 3 else "unknown")
        return self._version

    def has_image(self, image: str) -> bool:
        return self.images.has(image)

    def image_id(self, image: str) -> str:
        try:
            return self.images.get(image).id
        except ImageNotFound:
            return ""

    async def create(self, spec: ContainerSpec) -> str:
        try:
            image = self.images.get(spec.image)
        except ImageNotFound:
            raise ErrImageNeverPull(spec.image) from None
        cid, d = self.new_container_dir(spec, spec.image, image.id)
        try:
            rootfs = os.path.join(d, "rootfs")
            os.mkdir(rootfs)
            mode = await asyncio.to_thread(self._make_rootfs, image.rootfs, d, rootfs)
            config = oci_config(spec, image, rootfs)
            write_json(os.path.join(d, "config.json"), config)
            meta_path = os.path.join(d, "meta.json")
            with open(meta_path) as f:
                import json

                meta = json.load(f)
            meta["rootfsMode"] = mode
            write_json(meta_path, meta)
            write_json(
                os.path.join(d, "shim.json"),
                {
                    "mode": "runc",
                    "runc": self.runc,
                    "root": self.state_root,
                    "bundle": d,
                    "id": cid,
                    "log": meta["log"],
                },
            )
        except BaseException as e:
            await self.cleanup(cid, d)
            shutil.rmtree(d, ignore_errors=True)
            if isinstance(e, RuntimeError_):
                raise
            if isinstance(e, Exception):
                raise CreateContainerError(f"creating container {spec.name!r}: {e}") from e
            raise
        return cid

    def _make_rootfs(self, lower: str, d: str, rootfs: str) -> str:
        if self.overlay:
            upper, work = os.path.join(d, "upper"), os.path.join(d, "work")
            os.mkdir(upper)
            os.mkdir(work)
            try:
                mount_overlay(lower, upper, work, rootfs)
                return "overlay"
            except OSError:
                os.rmdir(upper)
                shutil.rmtree(work, ignore_errors=True)
        os.rmdir(rootfs)
        shutil.copytree(lower, rootfs, symlinks=True)
        return "copy"

    async def _runc(self, *args: str, check: bool = True) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            self.runc, "--root", self.state_root, *args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        out, _ = await proc.communicate()
        rc = proc.returncode or 0
        if check and rc != 0:
            raise RuntimeError_(f"runc {' '.join(args)}: {out.decode(errors='replace').strip()}")
        return rc, out.decode(errors="replace")

    async def kill(self, cid: str, sig: int) -> None:
        st = self.status_sync(cid)
        if st.state != State.RUNNING:
            return
        rc, out = await self._runc("kill", cid, str(int(sig)), check=False)
        if rc != 0 and "not running" not in out and "does not exist" not in out:
            # runc lost track of it (e.g. state dir removed): signal the init by pid.
            if st.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(st.pid, sig)
            else:
                raise RuntimeError_(f"runc kill {cid}: {out.strip()}")

    async def exec(self, cid: str, argv: list[str], timeout: float = 10.0) -> ExecResult:
        st = self.status_sync(cid)
        if st.state != State.RUNNING:
            raise RuntimeError_(f"container {cid} is not running", reason="ContainerNotRunning")
        pidfile = os.path.join(self.cdir(cid), f"exec-{os.getpid()}-{id(argv)}.pid")
        proc = await asyncio.create_subprocess_exec(
            self.runc,
            "--root",
            self.state_root,
            "exec",
            "--pid-file",
            pidfile,
            cid,
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
            return ExecResult(proc.returncode or 0, out, err)
        except TimeoutError:
            with contextlib.suppress(OSError, ValueError), open(pidfile) as f:
                os.kill(int(f.read().strip()), signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            out, err = await proc.communicate()
            return ExecResult(-1, out, err, timed_out=True)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(pidfile)

    async def cleanup(self, cid: str, d: str) -> None:
        if os.path.isdir(os.path.join(self.state_root, cid)):
            await self._runc("delete", "--force", cid, check=False)
        rootfs = os.path.join(d, "rootfs")
        if os.path.isdir(rootfs):
            await asyncio.to_thread(umount, rootfs)
