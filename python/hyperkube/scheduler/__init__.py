"""hyperkube.scheduler: kube-scheduler's default profile as an embeddable engine.

Build a :class:`Cluster` from Node objects (dicts, or a YAML string/stream of them) or from
arrays, then place Pod objects on it::

    from hyperkube.scheduler import Cluster

    cluster = Cluster(nodes)                  # list of Node dicts, or Cluster.from_yaml(text)
    for p in cluster.place(pods):             # each pod sees the placements before it
        print(p.pod, p.node or p.message)

Placement runs upstream's filters (NodeUnschedulable, NodeName, TaintToleration, NodeAffinity,
NodePorts, NodeResourcesFit, PodTopologySpread, InterPodAffinity) and scores (TaintToleration 3,
NodeAffinity 2, PodTopologySpread 2, InterPodAffinity 2, NodeResourcesFit 1,
NodeResourcesBalancedAllocation 1, ImageLocality 1) over *every* node, compiled (see
``core/src/sched``), with the GIL released. A pod that fits nowhere gets upstream's FitError
message (``0/3 nodes are available: 2 Insufficient cpu, 1 node(s) were unschedulable.``).
Ties among the best nodes are broken at random (``seed=`` makes it reproducible, and
``tie_break="first"`` picks the first node in cluster order).

Weights and plugin args come from a KubeSchedulerConfiguration-like mapping (``config=``; see
:mod:`hyperkube.scheduler.profile`), the same one the ``hyperkube scheduler`` daemon reads.

Not modelled: volumes (VolumeBinding, VolumeZone, ...), DRA, the system default
topology spread constraints (they need Services/ReplicaSets), namespace labels other than
``kubernetes.io/metadata.name`` for namespaceSelector, and percentageOfNodesToScore (we always
score all nodes). Preemption is the daemon's (:mod:`hyperkube.scheduler.preemption`, which
simulates victim removal on a Cluster).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import yaml

from hyperkube import _native
from hyperkube.scheduler.profile import DEFAULT_WEIGHTS, default_profile, profile_from_config
from hyperkube.scheduler.specs import SpecError, node_spec, pod_spec

__all__ = [
    "DEFAULT_WEIGHTS",
    "Cluster",
    "Placement",
    "SpecError",
    "default_profile",
    "load_objects",
    "node_spec",
    "pod_spec",
    "profile_from_config",
]

TieBreak = Literal["random", "first"]


@dataclass(frozen=True)
class Placement:
    """Where one pod went: ``node`` is None when it fits nowhere, and ``message`` says why."""

    pod: str
    node: str | None
    message: str | None = None


def load_objects(source: str | bytes | Iterable[Any]) -> list[dict[str, Any]]:
    """Objects from YAML text (multi-document, ``kind: List`` items flattened) or an iterable of
    dicts."""
    if isinstance(source, str | bytes):
        docs = [d for d in yaml.safe_load_all(source) if d]
    else:
        docs = list(source)
    out: list[dict[str, Any]] = []
    for d in docs:
        if isinstance(d, Mapping) and str(d.get("kind", "")).endswith("List") and "items" in d:
            out.extend(d["items"] or [])
        elif isinstance(d, Mapping):
            out.append(dict(d))
        else:
            raise SpecError(f"expected an object, got {type(d).__name__}")
    return out


class Cluster:
    """Nodes and their pods, held as columns in the compiled engine, and pod placement.

    ``nodes``: Node objects (dicts). ``pods``: pods already running; those with
    ``spec.nodeName`` are recorded on that node. ``config``: a KubeSchedulerConfiguration-like
    mapping for weights and plugin args. ``seed``: seeds the random tie-break.
    """

    def __init__(
        self,
        nodes: Iterable[Mapping[str, Any]] = (),
        pods: Iterable[Mapping[str, Any]] = (),
        *,
        config: Mapping[str, Any] | None = None,
        seed: int | None = None,
    ) -> None:
        self.profile = profile_from_config(config)
        self._native = _native.SchedCluster(self.profile, seed)
        self._generated = 0
        self.add_nodes(nodes)
        self.add_pods(pods)

    @classmethod
    def from_yaml(cls, nodes: str | bytes, pods: str | bytes | None = None, **kwargs: Any) -> Cluster:
        """A cluster from YAML text of Node objects (and optionally bound Pods)."""
        return cls(load_objects(nodes), load_objects(pods) if pods else (), **kwargs)

    @classmethod
    def from_arrays(
        cls,
        names: Sequence[str],
        cpu_milli: npt.ArrayLike,
        memory: npt.ArrayLike,
        pods: npt.ArrayLike,
        ephemeral_storage: npt.ArrayLike | None = None,
        **kwargs: Any,
    ) -> Cluster:
        """A cluster of plain nodes from arrays of allocatable cpu (milli), memory (bytes), pods
        and optionally ephemeral-storage (bytes). Each node gets its ``kubernetes.io/hostname``
        label."""
        c = cls(**kwargs)
        eph = None if ephemeral_storage is None else np.ascontiguousarray(ephemeral_storage, dtype=np.int64)
        c._native.add_nodes_arrays(
            list(names),
            np.ascontiguousarray(cpu_milli, dtype=np.int64),
            np.ascontiguousarray(memory, dtype=np.int64),
            np.ascontiguousarray(pods, dtype=np.int64),
            eph,
        )
        return c

    # ---- state -------------------------------------------------------------------------------

    def add_nodes(self, nodes: Iterable[Mapping[str, Any]]) -> None:
        """Add Node objects; a node with an existing name replaces it (its pods stay)."""
        self._native.upsert_nodes([node_spec(n) for n in nodes])

    update_nodes = add_nodes

    def remove_node(self, name: str) -> bool:
        """Remove a node and forget the pods on it."""
        return self._native.remove_node(name)

    def add_pods(self, pods: Iterable[Mapping[str, Any]]) -> None:
        """Record running pods (each must have ``spec.nodeName``) so they count on their nodes."""
        items: list[tuple[Mapping[str, object], str]] = []
        for p in pods:
            node = (p.get("spec") or {}).get("nodeName")
            if not node:
                raise SpecError("spec.nodeName: Required value: only bound pods can be added to a cluster")
            items.append((self.pod_spec(p), node))
        if items:
            self._native.add_pods(items)

    def remove_pod(self, key: str) -> bool:
        """Forget a pod (``namespace/name``) and release what it used."""
        return self._native.forget_pod(key)

    def pod_node(self, key: str) -> str | None:
        """The node a pod (``namespace/name``) is placed on."""
        return self._native.pod_node(key)

    @property
    def node_names(self) -> list[str]:
        return self._native.node_names()

    def __len__(self) -> int:
        return self._native.num_nodes

    @property
    def num_pods(self) -> int:
        return self._native.num_pods

    def columns(self) -> dict[str, npt.NDArray[np.int64]]:
        """Per-node columns (numpy, in ``node_names`` order): allocatable and requested cpu
        (milli), memory, ephemeral-storage, pods, and non-zero requested cpu / memory."""
        return self._native.columns()

    # ---- placement ---------------------------------------------------------------------------

    def pod_spec(self, pod: Mapping[str, Any]) -> dict[str, Any]:
        """The engine spec of a Pod object; a pod with only generateName gets a name."""
        meta = pod.get("metadata") or {}
        name = None
        if not meta.get("name") and meta.get("generateName"):
            self._generated += 1
            name = f"{meta['generateName']}{self._generated:05d}"
        return pod_spec(pod, name=name)

    def prepare(self, pods: Iterable[Mapping[str, Any]]) -> _native.PodBatch:
        """Convert Pod objects once into a native batch, for :meth:`place` (repeatedly)."""
        return _native.PodBatch([self.pod_spec(p) for p in pods])

    def place(
        self,
        pods: Iterable[Mapping[str, Any]] | _native.PodBatch,
        *,
        assume: bool = True,
        tie_break: TieBreak = "random",
    ) -> list[Placement]:
        """Place pods in order; each sees the placements before it. With ``assume`` (default)
        the placements stay in the cluster, as the scheduler's assumed pods do."""
        if isinstance(pods, _native.PodBatch):
            keys = None
            batch: _native.PodBatch | list[dict[str, Any]] = pods
        else:
            specs = [self.pod_spec(p) for p in pods]
            keys = [s["key"] for s in specs]
            batch = specs
        nodes, errors = self._native.place(batch, assume, tie_break)
        if keys is None:
            keys = [""] * len(nodes)
        return [Placement(k, n, e) for k, n, e in zip(keys, nodes, errors, strict=True)]

    def place_specs(
        self, specs: Sequence[Mapping[str, Any]], *, assume: bool = True, tie_break: TieBreak = "random"
    ) -> list[Placement]:
        """Place pods given as engine specs (from :meth:`pod_spec`)."""
        nodes, errors = self._native.place(list(specs), assume, tie_break)
        return [Placement(str(s["key"]), n, e) for s, n, e in zip(specs, nodes, errors, strict=True)]

    def place_one(self, pod: Mapping[str, Any], **kwargs: Any) -> Placement:
        """Place a single pod (see :meth:`place`)."""
        return self.place([pod], **kwargs)[0]

    def scores(self, pod: Mapping[str, Any]) -> dict[str, Any]:
        """Filter and score one pod without placing it.

        Returns ``{"nodes": [...feasible node names], "total": array, "plugins": {name: array}}``
        with each plugin's normalized 0-100 score (before weights) and the weighted total, or
        ``{"error": message}`` when no node fits.
        """
        return self._native.scores(self.pod_spec(pod))
