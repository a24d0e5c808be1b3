"""``hyperkube server``: the API server alone.

Plain HTTP is served on loopback addresses only (until TLS and authentication land); a
non-loopback ``--bind-address`` is refused with an explanation. Writes ``DATA_DIR/kubeconfig``.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import sys
from pathlib import Path


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _main(args: argparse.Namespace) -> int:
    from hyperkube.apiserver import serve, write_kubeconfig
    from hyperkube.storage import open_store

    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    url = args.storage or f"sqlite://{data_dir / 'state.db'}"
    store = open_store(url)
    await store.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ready = asyncio.Event()
    lo, hi = (int(x) for x in args.service_node_port_range.split("-", 1))
    server_task = asyncio.create_task(
        serve(
            store,
            args.bind_address,
            args.port,
            ready=ready,
            stop=stop,
            service_cidr=args.service_cluster_ip_range,
            node_port_range=(lo, hi),
            scheduler_health_url=args.scheduler_health_url,
            controller_manager_health_url=args.controller_manager_health_url,
        )
    )
    done, _ = await asyncio.wait(
        {server_task, asyncio.create_task(ready.wait())}, return_when=asyncio.FIRST_COMPLETED
    )
    if server_task in done:
        await store.close()
        server_task.result()
        return 1
    host = args.bind_address if ":" not in args.bind_address else f"[{args.bind_address}]"
    server_url = f"http://{host}:{args.port}"
    kc = write_kubeconfig(data_dir / "kubeconfig", server_url)
    print(f"hyperkube API server listening on {server_url} (storage {url})", flush=True)
    print(f"kubeconfig: {kc}  (export KUBECONFIG={kc}; kubectl get --raw /healthz)", flush=True)
    try:
        await server_task
    finally:
        await store.close()
    return 0


def run(args: argparse.Namespace) -> int:
    if not _is_loopback(args.bind_address):
        print(
            f"hyperkube server: refusing to serve plain HTTP on {args.bind_address}: without TLS and "
            "authentication anyone who can reach it is cluster administrator. Use --bind-address 127.0.0.1 "
            "(TLS for other addresses comes with the security work).",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(
        level=os.environ.get("HYPERKUBE_LOG", "WARNING"),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    try:
        return asyncio.run(_main(args))
    except OSError as e:
        print(
            f"hyperkube server: cannot listen on {args.bind_address}:{args.port}: {e.strerror or e}",
            file=sys.stderr,
        )
        return 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("server", help="run the API server")
    p.add_argument("--data-dir", default=".hyperkube", help="state directory; the kubeconfig is written here")
    p.add_argument(
        "--storage",
        default=None,
        help="memory://, sqlite:///path.db (default DATA_DIR/state.db) or etcd://host:port",
    )
    p.add_argument("--port", type=int, default=6443)
    p.add_argument("--bind-address", default="127.0.0.1", help="loopback only for now (plain HTTP)")
    p.add_argument("--service-cluster-ip-range", default="10.96.0.0/12")
    p.add_argument("--service-node-port-range", default="30000-32767")
    p.add_argument("--scheduler-health-url", default="http://127.0.0.1:10259/healthz")
    p.add_argument("--controller-manager-health-url", default="http://127.0.0.1:10257/healthz")
    p.set_defaults(func=run)
