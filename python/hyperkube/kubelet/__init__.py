"""hyperkube.kubelet: the node agent, usable as a daemon (``hyperkube kubelet``) or as a library.

- ``images``: the node image store (OCI image-layout / ``docker save`` import, layer whiteouts) and
  :func:`~hyperkube.kubelet.images.build_busybox_image` (a tiny image from the host's static busybox).
- ``runtime``: one async container interface with three runtimes - ``runc`` (real OCI containers, each
  under a small shim that records exit codes and OOM kills), ``process`` (host processes, no isolation)
  and ``fake`` (no processes; hollow nodes).
- ``cni``: pod network namespaces wired by the standard CNI plugins (bridge, host-local, portmap, loopback).
- ``agent``: the kubelet proper (Node + Lease, pod workers, probes, termination, status); ``pods``,
  ``volumes``, ``probes``, ``node`` are its pieces; ``server`` its HTTP API; ``hollow`` many fake nodes
  in one process.

Without an API server, ``images`` + ``runtime`` + ``cni`` run containers in pod networks directly::

    store = ImageStore("data/images"); store.import_archive("busybox.tar")
    rt = RuncRuntime("data", store)
    net = await PodNetworks(CNI(bridge_conflist("net", "hk0", "10.244.0.0/24", "data/ipam"), "data/cni")).setup(
        "uid-1", "default", "web")
    cid = await rt.create(ContainerSpec(name="web", image="busybox", command=["httpd", "-f"], netns=net.netns))
    await rt.start(cid)
"""
