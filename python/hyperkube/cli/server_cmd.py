"""``hyperkube server``: the API server alone.

Serves HTTPS with the cluster PKI (created in ``DATA_DIR/pki`` on first start), authenticates
every request (client certificates, bearer tokens) and authorizes it (Node authorizer + RBAC),
and writes ``DATA_DIR/kubeconfig`` (administrator) plus ``scheduler.kubeconfig``,
``controller-manager.kubeconfig`` and ``proxy.kubeconfig`` for the components.
``--insecure-http`` is a development mode: plain HTTP on loopback only, where a request without
credentials is cluster administrator; it is announced loudly at every start.
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

log = logging.getLogger("hyperkube.server")

INSECURE_BANNER = (
    "WARNING: --insecure-http: serving PLAIN HTTP WITHOUT AUTHENTICATION on {addr}. Anyone who can "
    "connect is cluster administrator. For development on this machine only; never use it otherwise."
)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _first_service_ip(cidr: str) -> str:
    return str(ipaddress.ip_network(cidr, strict=False)[1])


async def _main(args: argparse.Namespace) -> int:
    from hyperkube.apiserver import serve
    from hyperkube.apiserver.auth.pki import PKI
    from hyperkube.apiserver.credentials import write_component_kubeconfigs
    from hyperkube.apiserver.kubeconfig import write_kubeconfig
    from hyperkube.apiserver.security import Security, SecurityOptions, server_ssl_context
    from hyperkube.storage import open_store

    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    advertise = [a for a in (args.advertise_address or "").split(",") if a]
    if args.bind_address not in ("0.0.0.0", "::", "127.0.0.1", "localhost", "::1"):
        advertise.append(args.bind_address)
    pki = PKI(str(data_dir / "pki")).ensure(
        advertise_ips=advertise, first_service_ip=_first_service_ip(args.service_cluster_ip_range)
    )
    url = args.storage or f"sqlite://{data_dir / 'state.db'}"
    store = open_store(url)
    if args.encryption_provider_config:
        from hyperkube.apiserver.encryption import EncryptedStore, load_config

        store = EncryptedStore(store, load_config(args.encryption_provider_config))
    await store.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ready = asyncio.Event()
    lo, hi = (int(x) for x in args.service_node_port_range.split("-", 1))
    security = Security(
        SecurityOptions(
            pki_dir=pki.dir,
            insecure=args.insecure_http,
            token_auth_file=args.token_auth_file,
            audit_log_path=args.audit_log_path or str(data_dir / "audit.log"),
            audit_log_maxsize_mb=args.audit_log_maxsize,
            audit_log_maxbackup=args.audit_log_maxbackup,
            max_requests_inflight=args.max_requests_inflight,
            max_mutating_requests_inflight=args.max_mutating_requests_inflight,
            max_watches_per_user=args.max_watches_per_user,
            request_timeout=args.request_timeout,
        )
    )
    ssl_context = None if args.insecure_http else server_ssl_context(pki)
    extra = {}
    if args.bind_address in ("0.0.0.0", "::") and advertise:
        extra["advertise_address"] = advertise[0]  # the kubernetes Endpoints and cluster-info URL
    server_task = asyncio.create_task(
        serve(
            store,
            args.bind_address,
            args.port,
            ready=ready,
            stop=stop,
            ssl_context=ssl_context,
            security=security,
            service_cidr=args.service_cluster_ip_range,
            node_port_range=(lo, hi),
            scheduler_health_url=args.scheduler_health_url,
            controller_manager_health_url=args.controller_manager_health_url,
            **extra,
        )
    )
    done, _ = await asyncio.wait(
        {server_task, asyncio.create_task(ready.wait())}, return_when=asyncio.FIRST_COMPLETED
    )
    if server_task in done:
        await store.close()
        server_task.result()
        return 1
    host = args.bind_address
    if host in ("0.0.0.0", "::"):
        host = advertise[0] if advertise else "127.0.0.1"
    host = host if ":" not in host else f"[{host}]"
    scheme = "http" if args.insecure_http else "https"
    server_url = f"{scheme}://{host}:{args.port}"
    if args.insecure_http:
        kc = write_kubeconfig(data_dir / "kubeconfig", server_url)
        print(INSECURE_BANNER.format(addr=server_url), file=sys.stderr, flush=True)
    else:
        kc = write_component_kubeconfigs(data_dir, pki, server_url)["kubeconfig"]
    print(f"hyperkube API server listening on {server_url} (storage {url})", flush=True)
    print(f"kubeconfig: {kc}  (export KUBECONFIG={kc}; kubectl get --raw /healthz)", flush=True)
    try:
        await server_task
    finally:
        await store.close()
    return 0


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=os.environ.get("HYPERKUBE_LOG", "WARNING"),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if args.insecure_http:
        if not _is_loopback(args.bind_address):
            print(
                f"hyperkube server: refusing --insecure-http on {args.bind_address}: without TLS and "
                "authentication anyone who can reach it is cluster administrator. Use --bind-address "
                "127.0.0.1, or drop --insecure-http to serve HTTPS with client certificates.",
                file=sys.stderr,
            )
            return 2
        print(INSECURE_BANNER.format(addr=f"{args.bind_address}:{args.port}"), file=sys.stderr, flush=True)
        log.warning(INSECURE_BANNER.format(addr=f"{args.bind_address}:{args.port}"))
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
    except ValueError as e:  # bad token file / encryption config
        print(f"hyperkube server: {e}", file=sys.stderr)
        return 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("server", help="run the API server")
    p.add_argument("--data-dir", default=".hyperkube", help="state directory; the kubeconfig is written here")
    p.add_argument(
        "--storage",
        default=None,
        help="memory://, sqlite:///path.db (default DATA_DIR/state.db) or etcd://host:port",
    )
    p.add_argument("--port", type=int, default=6443)
    p.add_argument("--bind-address", default="127.0.0.1")
    p.add_argument(
        "--advertise-address",
        default="",
        help="IP(s), comma-separated, other machines reach this server at (added to the serving certificate)",
    )
    p.add_argument(
        "--insecure-http",
        action="store_true",
        help="DEVELOPMENT ONLY: plain HTTP on loopback, no authentication (anyone is administrator)",
    )
    p.add_argument(
        "--token-auth-file", default=None, help='static bearer tokens: CSV token,user,uid[,"groups"]'
    )
    p.add_argument(
        "--encryption-provider-config",
        default=None,
        help="EncryptionConfiguration YAML: encrypt Secrets in the store with AES-GCM",
    )
    p.add_argument(
        "--audit-log-path", default=None, help="audit log (JSON lines; default DATA_DIR/audit.log)"
    )
    p.add_argument("--audit-log-maxsize", type=int, default=100, help="MiB before the audit log rotates")
    p.add_argument("--audit-log-maxbackup", type=int, default=3, help="rotated audit logs kept")
    p.add_argument("--max-requests-inflight", type=int, default=400)
    p.add_argument("--max-mutating-requests-inflight", type=int, default=200)
    p.add_argument("--max-watches-per-user", type=int, default=250)
    p.add_argument("--request-timeout", type=float, default=60.0, help="seconds (non-watch requests)")
    p.add_argument("--service-cluster-ip-range", default="10.96.0.0/12")
    p.add_argument("--service-node-port-range", default="30000-32767")
    p.add_argument("--scheduler-health-url", default="http://127.0.0.1:10259/healthz")
    p.add_argument("--controller-manager-health-url", default="http://127.0.0.1:10257/healthz")
    p.set_defaults(func=run)
