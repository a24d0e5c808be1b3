"""The per-container shim: the parent that outlives the kubelet, reaps the container and records its exit.

Run as ``python -S -I shim.py CONTAINER_DIR`` (standard library only, so it starts in ~15 ms and does not
import the kubelet). It reads ``CONTAINER_DIR/shim.json`` and:

1. ignores SIGINT/SIGHUP (it runs in a session of its own, so Ctrl-C on the kubelet leaves it alone) and
   makes itself a *child subreaper*, so the container's init - whose parent, ``runc``, exits right after
   starting it - is re-parented to the shim rather than to PID 1;
2. starts the container with stdin ``/dev/null`` and stdout/stderr appended to the container's log file:
   ``runc run -d`` (runc mode; runc hands its stdio straight to the container process, no copying) or a
   plain fork/exec in a new process group (process mode, the ``process`` runtime);
3. writes ``started.json`` (pid, start time, the container's cgroup paths) atomically;
4. waits for the container's init and writes ``exit.json`` (exit code, signal, finish time, whether the
   memory cgroup recorded an OOM kill) atomically, then exits.

The kubelet never waits on the shim: it reads ``started.json``/``exit.json``. A kubelet that restarts finds
running containers by their files and their pids; exit codes are not lost because the shim survives.
OOM kills are read from cgroup v1 ``memory.oom_control`` (``oom_kill N``) or cgroup v2 ``memory.events``
while the cgroup still exists (runc removes it only on ``runc delete``).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def write_json(path: str, obj: dict) -> None:  # type: ignore[type-arg]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def read_cgroups(pid: int) -> dict[str, str]:
    """``{"memory": "/sys/fs/cgroup/memory/...", "unified": "/sys/fs/cgroup/..."}`` for a live pid."""
    out: dict[str, str] = {}
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        hid, controllers, path = line.split(":", 2)
        if hid == "0" and controllers == "":
            base = "/sys/fs/cgroup/unified" if os.path.isdir("/sys/fs/cgroup/unified") else "/sys/fs/cgroup"
            out["unified"] = base + path
        elif "memory" in controllers.split(","):
            out["memory"] = "/sys/fs/cgroup/memory" + path
    return out


def oom_kills(cgroups: dict[str, str]) -> int:
    n = 0
    mem = cgroups.get("memory")
    if mem:
        try:
            with open(os.path.join(mem, "memory.oom_control")) as f:
                for line in f:
                    k, _, v = line.partition(" ")
                    if k == "oom_kill":
                        n = max(n, int(v))
        except OSError:
            pass
    uni = cgroups.get("unified")
    if uni:
        try:
            with open(os.path.join(uni, "memory.events")) as f:
                for line in f:
                    k, _, v = line.partition(" ")
                    if k == "oom_kill":
                        n = max(n, int(v))
        except OSError:
            pass
    return n


def runc_error(path: str) -> str:
    """The last error message from runc's JSON log."""
    msg = ""
    try:
        with open(path) as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("level") in ("error", "fatal"):
                    msg = rec.get("msg", msg)
    except OSError:
        pass
    return msg


def main(cdir: str) -> int:
    with open(os.path.join(cdir, "shim.json")) as f:
        cfg = json.load(f)
    for s in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(s, signal.SIG_IGN)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except OSError:
        pass
    started_file = os.path.join(cdir, "started.json")
    exit_file = os.path.join(cdir, "exit.json")
    log_fd = os.open(cfg["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    null_fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)

    def fail(reason: str, message: str, code: int = 128) -> int:
        write_json(
            exit_file,
            {"exitCode": code, "signal": 0, "finishedAt": time.time(), "reason": reason, "message": message},
        )
        return 1

    mode = cfg["mode"]
    if mode == "runc":
        pidfile = os.path.join(cdir, "container.pid")
        runc_log = os.path.join(cdir, "runc.log")
        argv = [cfg["runc"], "--root", cfg["root"], "--log", runc_log, "--log-format", "json"]
        argv += ["run", "-d", "--pid-file", pidfile, "--bundle", cfg["bundle"], cfg["id"]]
        rpid = os.fork()
        if rpid == 0:
            try:
                os.dup2(null_fd, 0)
                os.dup2(log_fd, 1)
                os.dup2(log_fd, 2)
                os.execv(argv[0], argv)
            finally:
                os._exit(127)
        _, st = os.waitpid(rpid, 0)
        rc = os.waitstatus_to_exitcode(st)
        if rc != 0:
            return fail("StartError", runc_error(runc_log) or f"runc run exited with {rc}")
        try:
            with open(pidfile) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError) as e:
            return fail("StartError", f"runc wrote no pid file: {e}")
    else:
        r, w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                os.setpgid(0, 0)
                for s in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
                    signal.signal(s, signal.SIG_DFL)
                os.dup2(null_fd, 0)
                os.dup2(log_fd, 1)
                os.dup2(log_fd, 2)
                if cfg.get("cwd"):
                    os.chdir(cfg["cwd"])
                if cfg.get("gid") is not None:
                    os.setgroups([])
                    os.setgid(cfg["gid"])
                if cfg.get("uid") is not None:
                    os.setuid(cfg["uid"])
                env = dict(cfg.get("env") or {})
                os.execvpe(cfg["argv"][0], cfg["argv"], env)
            except BaseException as e:  # report exec failures to the shim through the pipe
                try:
                    os.write(w, f"{type(e).__name__}: {e}".encode())
                finally:
                    os._exit(127)
        os.close(w)
        err = b""
        while chunk := os.read(r, 4096):
            err += chunk
        os.close(r)
        if err:
            os.waitpid(pid, 0)
            return fail("StartError", f"exec {cfg['argv'][0]!r}: {err.decode(errors='replace')}")
    cgroups = read_cgroups(pid)
    write_json(started_file, {"pid": pid, "startedAt": time.time(), "cgroups": cgroups})

    status = None
    while True:
        try:
            wpid, st = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if wpid == pid:
            status = st
            break
    finished = time.time()
    if status is None:  # not our child after all (should not happen): wait for it to disappear
        while os.path.exists(f"/proc/{pid}"):
            time.sleep(0.1)
        code, sig = 255, 0
    elif os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        code = 128 + sig
    else:
        code, sig = os.WEXITSTATUS(status), 0
    ooms = oom_kills(cgroups)
    write_json(exit_file, {"exitCode": code, "signal": sig, "finishedAt": finished, "oomKilled": ooms > 0})
    # Reap the container's other orphans (killed with its PID namespace) for up to a second.
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        try:
            wpid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if wpid == 0:
            time.sleep(0.02)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
