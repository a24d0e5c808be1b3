"""``hyperkube up``: a whole cluster on this machine, one supervised process per component.

Starts, in order, the API server (SQLite in the data dir unless ``--storage`` says otherwise),
the scheduler, the controller manager and the nodes, each waiting for the one before it to be
ready; prints where the API is and how to point kubectl at it; stays in the foreground until
Ctrl-C, then stops every component cleanly. Running it again on the same data dir resumes the
same cluster with its objects. Components whose code is not in this build are skipped with a
note, so the command is useful at every stage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import ssl
import subprocess

import aiohttp

from hyperkube.cli import localnet
from hyperkube.cli.supervisor import Component, Probe, Supervisor, hyperkube_argv, say


def _have(cmd_module: str) -> bool:
    return importlib.util.find_spec(f"hyperkube.cli.{cmd_module}_cmd") is not None


def http_ok(url: str, cafile: str | None = None) -> Probe:
    async def probe() -> bool:
        timeout = aiohttp.ClientTimeout(total=2)
        ctx: ssl.SSLContext | bool = True
        if cafile is not None:
            if not os.path.exists(cafile):
                return False  # the API server has not created its PKI yet
            ctx = ssl.create_default_context(cafile=cafile)
        async with aiohttp.ClientSession(timeout=timeout) as s, s.get(url, ssl=ctx) as r:
            return r.status == 200

    return probe


def nodes_ready(kubeconfig: str, names: list[str]) -> Probe:
    """Ready once every named Node exists with condition Ready=True."""

    async def probe() -> bool:
        from hyperkube.client import NODES, Client

        async with Client.from_kubeconfig(kubeconfig) as c:
            nodes = (await c.list(NODES)).get("items") or []
        ready = {
            n["metadata"]["name"]
            for n in nodes
            if any(
                cond.get("type") == "Ready" and cond.get("status") == "True"
                for cond in (n.get("status") or {}).get("conditions") or []
            )
        }
        return set(names) <= ready

    return probe


def components(args: argparse.Namespace, node_nets: list[localnet.NodeNet] | None = None) -> list[Component]:
    data_dir = os.path.abspath(args.data_dir)
    kubeconfig = os.path.join(data_dir, "kubeconfig")
    api = f"https://127.0.0.1:{args.port}"
    out = []
    server = [
        "server",
        "--data-dir",
        data_dir,
        "--port",
        str(args.port),
        "--bind-address",
        "127.0.0.1",
        "--scheduler-health-url",
        f"http://127.0.0.1:{args.scheduler_port}/healthz",
        "--controller-manager-health-url",
        f"http://127.0.0.1:{args.controller_manager_port}/healthz",
    ]
    if args.storage:
        server += ["--storage", args.storage]
    out.append(
        Component(
            "apiserver",
            hyperkube_argv(*server),
            ready=http_ok(f"{api}/readyz", os.path.join(data_dir, "pki", "ca.crt")),
            waiting_for=f"waiting for the API server to serve {api}/readyz",
        )
    )
    if _have("scheduler"):
        out.append(
            Component(
                "scheduler",
                hyperkube_argv(
                    "scheduler",
                    "--kubeconfig",
                    os.path.join(data_dir, "scheduler.kubeconfig"),
                    "--port",
                    str(args.scheduler_port),
                ),
                ready=http_ok(f"http://127.0.0.1:{args.scheduler_port}/healthz"),
                waiting_for="waiting for the scheduler's /healthz",
            )
        )
    if _have("controller_manager"):
        out.append(
            Component(
                "controller-manager",
                hyperkube_argv(
                    "controller-manager",
                    "--kubeconfig",
                    os.path.join(data_dir, "controller-manager.kubeconfig"),
                    "--port",
                    str(args.controller_manager_port),
                ),
                ready=http_ok(f"http://127.0.0.1:{args.controller_manager_port}/healthz"),
                waiting_for="waiting for the controller manager's /healthz",
            )
        )
    if args.hollow_nodes and _have("kubelet"):
        out.append(
            Component(
                "hollow-nodes",
                hyperkube_argv(
                    "kubelet",
                    "--kubeconfig",
                    kubeconfig,
                    "--data-dir",
                    data_dir,
                    "--hollow",
                    str(args.hollow_nodes),
                ),
                ready=nodes_ready(kubeconfig, [f"hollow-node-{i}" for i in range(args.hollow_nodes)]),
                tier=1,
                waiting_for=f"waiting for {args.hollow_nodes} hollow nodes to report Ready",
            )
        )
    if args.nodes and _have("agent"):
        for i, net in enumerate(node_nets or [None] * args.nodes):
            name = f"node-{i + 1}"
            argv = [
                "agent",
                "--kubeconfig",
                # each node has its own identity (system:node:<name>); its kubeconfig is
                # written once the API server has created the cluster PKI (see _start_all)
                os.path.join(data_dir, f"kubelet-{name}.kubeconfig"),
                "--node-name",
                name,
                "--data-dir",
                data_dir,
                "--port",
                "0",
                "--proxy-kubeconfig",
                os.path.join(data_dir, "proxy.kubeconfig"),
                # Ctrl-C must leave no container, mount, veth or netns behind
                "--cleanup-on-exit",
            ]
            argv += ["--runtime", args.runtime]
            if net is not None:
                argv += ["--netns", net.netns, "--node-ip", net.ip, "--pod-cidr", net.pod_cidr]
            out.append(
                Component(
                    name,
                    hyperkube_argv(*argv),
                    ready=nodes_ready(kubeconfig, [name]),
                    waiting_for=f"waiting for Node {name} to register and report Ready",
                    tier=1,
                    stop_grace=45,  # time to stop its pods (each capped at 10 s) and free their resources
                )
            )
    return out


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def missing_components(args: argparse.Namespace) -> list[str]:
    wanted = {"scheduler": "scheduler", "controller_manager": "controller-manager"}
    if args.nodes:
        wanted["agent"] = "node agents (kubelet + proxy)"
    if args.hollow_nodes:
        wanted["kubelet"] = "hollow nodes"
    return [label for mod, label in wanted.items() if not _have(mod)]


def install_kubeconfig(source: str, target: str, name: str = "hyperkube") -> None:
    """Merge the cluster's kubeconfig into `target` as context `name` (cluster and user too) and
    make it the current context; other entries are kept. Written with mode 0600."""
    import yaml

    with open(source) as f:
        src = yaml.safe_load(f)
    try:
        with open(target) as f:
            dst = yaml.safe_load(f) or {}
    except FileNotFoundError:
        dst = {}
    dst.setdefault("apiVersion", "v1")
    dst.setdefault("kind", "Config")
    ctx = (
        next(c for c in src["contexts"] if c["name"] == src.get("current-context"))
        if src.get("current-context")
        else src["contexts"][0]
    )
    cluster = next(c for c in src["clusters"] if c["name"] == ctx["context"]["cluster"])
    user = next(u for u in src["users"] if u["name"] == ctx["context"]["user"])
    for key, entry, body in (
        ("clusters", "cluster", cluster["cluster"]),
        ("users", "user", user["user"]),
        ("contexts", "context", {"cluster": name, "user": name}),
    ):
        items = [i for i in dst.get(key) or [] if i.get("name") != name]
        items.append({"name": name, entry: body})
        dst[key] = items
    dst["current-context"] = name
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    fd = os.open(target + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(dst, f, default_flow_style=False)
    os.replace(target + ".tmp", target)


def summary(args: argparse.Namespace) -> None:
    kubeconfig = os.path.join(os.path.abspath(args.data_dir), "kubeconfig")
    print()
    print(f"hyperkube is up: API server at https://127.0.0.1:{args.port}")
    print(f"  export KUBECONFIG={kubeconfig}")
    if args.write_kubeconfig:
        target = os.path.expanduser(args.write_kubeconfig)
        install_kubeconfig(kubeconfig, target)
        print(f'  (also installed as context "hyperkube" in {target}, now the current context)')
    kubectl = shutil.which("kubectl")
    if kubectl:
        print("  kubectl get nodes")
        r = subprocess.run(
            [kubectl, "--kubeconfig", kubeconfig, "get", "nodes"], capture_output=True, text=True, timeout=20
        )
        for line in (r.stdout or r.stderr).splitlines():
            print(f"    {line}")
    print("Ctrl-C stops the cluster; `hyperkube up` on the same --data-dir resumes it.\n", flush=True)


async def run_async(args: argparse.Namespace) -> int:
    if not _have("server"):
        say("error: the API server is not in this build yet; `hyperkube up` needs it")
        return 1
    busy = [p for p in (args.port, args.scheduler_port, args.controller_manager_port) if not port_free(p)]
    if busy:
        say(
            f"error: port(s) {', '.join(map(str, busy))} on 127.0.0.1 already in use (another cluster?); "
            "stop it or pick others with --port / --scheduler-port / --controller-manager-port"
        )
        return 1
    os.makedirs(args.data_dir, exist_ok=True)
    sup = Supervisor(os.path.join(args.data_dir, "logs"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    for label in missing_components(args):
        say(f"note: {label} not in this build; skipped")
    node_nets = None
    if args.nodes:
        if args.runtime is None:
            from hyperkube.kubelet.runtime import default_runtime_name

            args.runtime = default_runtime_name()
        if args.runtime == "runc":
            why = localnet.available()
            if why:
                say(
                    f"error: local runc nodes need their own network namespaces, and {why}; use --runtime process"
                )
                return 1
            node_nets = localnet.setup(args.data_dir, args.nodes)
            say(
                f"nodes: {args.nodes} local node(s) with the runc runtime, each in its own network namespace "
                f"({', '.join(n.netns + '=' + n.ip for n in node_nets)})"
            )
        elif args.runtime == "process":
            say(
                f"nodes: {args.nodes} local node(s) with the process runtime: containers run as plain host "
                "processes, with NO isolation (no root or no runc here; see --runtime)"
            )
    code = 0
    try:
        starting = asyncio.create_task(_start_all(sup, args, node_nets))
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if starting in done:
            starting.result()
            summary(args)
            await stop.wait()
        else:
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await starting
    except RuntimeError as e:
        say(f"error: {e}")
        code = 1
    finally:
        await sup.stop()
        if node_nets:
            removed = localnet.teardown(args.data_dir)
            say(f"removed network namespaces: {', '.join(removed) or 'none'}")
    return code


async def _start_all(
    sup: Supervisor, args: argparse.Namespace, node_nets: list[localnet.NodeNet] | None
) -> None:
    for c in components(args, node_nets):
        await sup.start(c)
        if c.name == "apiserver" and args.nodes:
            from hyperkube.apiserver.auth.pki import PKI
            from hyperkube.apiserver.credentials import node_kubeconfig

            pki = PKI(os.path.join(args.data_dir, "pki"))
            for i in range(args.nodes):
                node_kubeconfig(args.data_dir, f"node-{i + 1}")
                # the kubelet's HTTPS serving certificate (the API server verifies it for pods/log)
                ips = ["127.0.0.1"] + ([node_nets[i].ip] if node_nets else [])
                pki.ensure_kubelet_serving(f"node-{i + 1}", ips)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(run_async(args))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="start a whole cluster on this machine (Ctrl-C stops it)")
    p.add_argument("--data-dir", default=".hyperkube", help="state directory (default: .hyperkube)")
    p.add_argument("--port", type=int, default=6443, help="API server port on 127.0.0.1 (default 6443)")
    p.add_argument(
        "--storage", default=None, help="sqlite:///path.db (default: in the data dir) or etcd://host:port"
    )
    p.add_argument(
        "--nodes", type=int, default=1, help="local node agents (default 1; 0 = control plane only)"
    )
    p.add_argument("--hollow-nodes", type=int, default=0, help="simulated nodes with the fake runtime")
    p.add_argument("--runtime", choices=["runc", "process", "fake"], default=None)
    p.add_argument(
        "--write-kubeconfig",
        nargs="?",
        const="~/.kube/config",
        default=None,
        metavar="PATH",
        help="also install the cluster as context 'hyperkube' in PATH (default ~/.kube/config)",
    )
    p.add_argument("--scheduler-port", type=int, default=10259, help="scheduler health/metrics port")
    p.add_argument(
        "--controller-manager-port", type=int, default=10257, help="controller-manager health port"
    )
    p.set_defaults(func=run)
