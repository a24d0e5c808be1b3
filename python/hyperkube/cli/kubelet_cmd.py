"""``hyperkube kubelet``: the node agent (or ``--hollow N`` simulated nodes in one process).

    hyperkube kubelet [--kubeconfig FILE | --server URL] [--node-name NAME] [--data-dir DIR]
                      [--runtime runc|process|fake] [--netns NAME] [--node-ip IP] [--pod-cidr CIDR]
                      [--address ADDR] [--port N] [--capacity cpu=4,memory=8Gi] [--node-labels k=v,...]
                      [--tls-cert-file F --tls-private-key-file F --client-ca-file F]
    hyperkube kubelet --hollow N [--hollow-prefix hollow-node-] ...

State lives in ``DIR/kubelet/<node>/`` (containers, pod volumes, logs, CNI state); images come from
``DIR/images`` (``hyperkube image import``). With ``--netns NAME`` every network operation (the CNI
plugins: bridge, veths, IPAM, hostPort rules) happens inside that network namespace, which plays the
node's host network (``hyperkube up`` gives each local node one). Stopping the kubelet leaves containers
running; the next kubelet on the same data dir adopts them.

The kubelet's server (logs for ``kubectl logs``) is HTTPS with a serving certificate and required client
certificates of the cluster CA when ``--tls-cert-file``/``--tls-private-key-file``/``--client-ca-file``
are given, or when ``DIR/pki/kubelet-<node>-serving.crt`` and ``DIR/pki/ca.crt`` exist (what
``hyperkube up`` issues); otherwise plain HTTP without authentication, with a loud warning (see
``hyperkube.kubelet.server``).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import socket
from typing import Any

DEFAULT_DATA_DIR = ".hyperkube"


def _kv(s: str) -> dict[str, str]:
    out = {}
    for part in filter(None, (s or "").split(",")):
        k, sep, v = part.partition("=")
        if not sep and not k:
            continue
        out[k.strip()] = v.strip()
    return out


def make_client(args: argparse.Namespace) -> Any:
    from hyperkube.client import Client

    kubeconfig = args.kubeconfig or (
        os.path.join(args.data_dir, "kubeconfig")
        if os.path.exists(os.path.join(args.data_dir, "kubeconfig"))
        else None
    )
    if args.server:
        return Client(args.server, user_agent="hyperkube-kubelet")
    if kubeconfig:
        return Client.from_kubeconfig(kubeconfig, user_agent="hyperkube-kubelet")
    return Client(
        os.environ.get("KUBERNETES_MASTER", "http://127.0.0.1:6443"), user_agent="hyperkube-kubelet"
    )


def build_kubelet(args: argparse.Namespace, client: Any) -> Any:
    from hyperkube.kubelet.agent import Kubelet
    from hyperkube.kubelet.cni import CNI, PodNetworks, bridge_conflist
    from hyperkube.kubelet.runtime import default_runtime_name, new_runtime

    node = args.node_name or socket.gethostname().lower()
    root = os.path.join(args.data_dir, "kubelet", node)
    rt_name = args.runtime or default_runtime_name()
    runtime = new_runtime(rt_name, root, os.path.join(args.data_dir, "images"))
    pod_networks = None
    if rt_name == "runc":
        host_netns = (
            f"/run/netns/{args.netns}" if args.netns and "/" not in args.netns else args.netns or None
        )
        cni_dir = os.path.join(root, "cni")

        def networks(cidr: str) -> PodNetworks | None:
            if not cidr:
                return None
            conf = bridge_conflist("hyperkube", args.bridge, cidr, os.path.join(cni_dir, "ipam"))
            return PodNetworks(CNI(conf, cni_dir, bin_dirs=args.cni_bin_dir.split(":"), host_netns=host_netns),
                               netns_prefix=f"hk-{node[:20]}-")  # fmt: skip

        pod_networks = networks
    return Kubelet(
        client,
        node,
        runtime,
        root_dir=root,
        pod_networks=pod_networks,
        node_ip=args.node_ip or "",
        pod_cidr=args.pod_cidr or "",
        capacity=_kv(args.capacity),
        labels=_kv(args.node_labels),
        lease_interval=args.lease_interval,
        kubelet_port=args.port,
    )


def serving_tls(args: argparse.Namespace, node_name: str) -> Any:
    """The server's TLS context: from the flags, else from the data dir's PKI files, else None."""
    from hyperkube.kubelet import server

    pki = os.path.join(args.data_dir, "pki")
    cert = args.tls_cert_file or ""
    key = args.tls_private_key_file or ""
    ca = args.client_ca_file or ""
    if not (cert or key or ca):
        dcert = os.path.join(pki, f"kubelet-{node_name}-serving.crt")
        if not os.path.exists(dcert) or not os.path.exists(os.path.join(pki, "ca.crt")):
            return None
        cert, key, ca = dcert, dcert[: -len(".crt")] + ".key", os.path.join(pki, "ca.crt")
    missing = [f for f, v in (("--tls-cert-file", cert), ("--tls-private-key-file", key),
                              ("--client-ca-file", ca)) if not v]  # fmt: skip
    if missing:
        raise SystemExit(f"hyperkube kubelet: HTTPS needs {', '.join(missing)} too")
    return server.server_ssl_context(cert, key, ca)


async def _main(args: argparse.Namespace) -> int:
    from hyperkube.kubelet import server

    client = make_client(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = None
    try:
        if args.hollow:
            from hyperkube.kubelet.hollow import HollowNodes

            nodes = HollowNodes(
                client,
                args.hollow,
                prefix=args.hollow_prefix,
                root_dir=os.path.join(args.data_dir, "hollow"),
                labels=_kv(args.node_labels),
                capacity=_kv(args.capacity) or None,
                lease_interval=args.lease_interval,
            )
            await nodes.start()
            print(
                f"hyperkube kubelet: {args.hollow} hollow nodes registered ({args.hollow_prefix}0..)",
                flush=True,
            )
            await stop.wait()
            await nodes.stop()
            return 0
        kl = build_kubelet(args, client)
        address = args.address
        tls = serving_tls(args, kl.node_name)
        if args.port >= 0:
            if args.netns and args.node_ip and not ipaddress.ip_address(args.node_ip).is_loopback:
                # the node's address exists only inside its namespace: listen there (see server.py)
                netns = f"/run/netns/{args.netns}" if "/" not in args.netns else args.netns
                address = args.node_ip or "0.0.0.0"
                runner, kl.kubelet_port = await server.serve(
                    kl, address, args.port, netns=netns, ssl_context=tls
                )
            else:
                runner, kl.kubelet_port = await server.serve(kl, address, args.port, ssl_context=tls)
        await kl.start()
        print(f"hyperkube kubelet: node {kl.node_name} registered (runtime {kl.runtime.name}, "
              f"server {'https' if tls else 'http'}://{address}:{kl.kubelet_port})", flush=True)  # fmt: skip
        await stop.wait()
        await kl.stop(cleanup=args.cleanup_on_exit)
        return 0
    finally:
        if runner is not None:
            await runner.cleanup()
        await client.close()


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO if not args.quiet else logging.WARNING,
                        format="%(asctime)s kubelet %(levelname)s %(message)s")  # fmt: skip
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        factory = None
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(_main(args))
    except KeyboardInterrupt:
        return 130


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--kubeconfig", default=None, help="kubeconfig of the API server (default: DIR/kubeconfig)"
    )
    p.add_argument("--server", default=None, help="API server URL (instead of a kubeconfig)")
    p.add_argument("--node-name", default=None, help="node name (default: the hostname)")
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="state directory (default: .hyperkube)")
    p.add_argument("--runtime", choices=["runc", "process", "fake"], default=None,
                   help="container runtime (default: runc when root and runc exist, else process)")  # fmt: skip
    p.add_argument(
        "--netns", default=None, help="network namespace (name or path) that plays the node's network"
    )
    p.add_argument("--node-ip", default=None, help="the node's InternalIP")
    p.add_argument("--pod-cidr", default=None, help="pod CIDR (default: the Node's spec.podCIDR)")
    p.add_argument("--bridge", default="hkcni0", help="CNI bridge name (default: hkcni0)")
    p.add_argument("--cni-bin-dir", default="/opt/cni/bin:/usr/lib/cni", help="CNI plugin directories")
    p.add_argument("--address", default="127.0.0.1",
                   help="address of the kubelet's HTTP server (with --netns and a non-loopback --node-ip, the "
                   "server listens on the node IP inside the namespace instead)")  # fmt: skip
    p.add_argument(
        "--port", type=int, default=10250, help="port of the kubelet's HTTP server (0: any free port)"
    )
    p.add_argument("--tls-cert-file", default=None,
                   help="serving certificate of the kubelet's server (HTTPS; default: DIR/pki/kubelet-NODE-serving.crt "
                   "if it exists)")  # fmt: skip
    p.add_argument("--tls-private-key-file", default=None, help="key of --tls-cert-file")
    p.add_argument("--client-ca-file", default=None,
                   help="CA whose client certificates the server requires (default: DIR/pki/ca.crt)")  # fmt: skip
    p.add_argument("--capacity", default="", help="override capacity, e.g. cpu=4,memory=8Gi,pods=110")
    p.add_argument("--node-labels", default="", help="extra node labels k=v,...")
    p.add_argument("--lease-interval", type=float, default=10.0, help="node lease renewal period (s)")
    p.add_argument(
        "--hollow", type=int, default=0, metavar="N", help="run N hollow nodes (fake runtime) instead"
    )
    p.add_argument("--hollow-prefix", default="hollow-node-", help="hollow node name prefix")
    p.add_argument("--quiet", action="store_true", help="log warnings only")
    p.add_argument("--cleanup-on-exit", action="store_true",
                   help="on SIGTERM/SIGINT stop every pod of the node and release its containers, mounts, "
                   "network namespaces and IPAM leases (pod objects stay in the API)")  # fmt: skip


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("kubelet", help="run the node agent (or --hollow N simulated nodes)")
    add_arguments(p)
    p.set_defaults(func=run)
