"""Scheduling profile: score plugin weights and plugin args, from a KubeSchedulerConfiguration.

The default profile is upstream's (``pkg/scheduler/apis/config/v1/default_plugins.go``): score
weights TaintToleration 3, NodeAffinity 2, PodTopologySpread 2, InterPodAffinity 2,
NodeResourcesFit 1 (LeastAllocated over cpu and memory, weight 1 each),
NodeResourcesBalancedAllocation 1 (cpu, memory), ImageLocality 1; hardPodAffinityWeight 1.

:func:`profile_from_config` reads the parts of a ``KubeSchedulerConfiguration``
(``kubescheduler.config.k8s.io/v1``) that the engine uses: the first profile's ``plugins.score``
(and ``plugins.multiPoint``) ``enabled`` weights and ``disabled`` names (``*`` disables all
defaults), and ``pluginConfig`` args of NodeResourcesFit (``scoringStrategy``),
NodeResourcesBalancedAllocation (``resources``) and InterPodAffinity (``hardPodAffinityWeight``).
A bare ``{"weights": {...}}`` mapping works too. Unknown plugin names are errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hyperkube.scheduler.specs import SpecError

DEFAULT_WEIGHTS: dict[str, int] = {
    "TaintToleration": 3,
    "NodeAffinity": 2,
    "PodTopologySpread": 2,
    "InterPodAffinity": 2,
    "NodeResourcesFit": 1,
    "NodeResourcesBalancedAllocation": 1,
    "ImageLocality": 1,
}

# Filter-only plugins of the default profile (accepted in configs, no weight).
FILTER_PLUGINS = {
    "NodeUnschedulable",
    "NodeName",
    "NodePorts",
    "PrioritySort",
    "SchedulingGates",
    "DefaultPreemption",
    "DefaultBinder",
    "VolumeRestrictions",
    "NodeVolumeLimits",
    "VolumeBinding",
    "VolumeZone",
}


def default_profile() -> dict[str, Any]:
    """The engine profile dict of upstream's default scheduler profile."""
    return {
        "weights": dict(DEFAULT_WEIGHTS),
        "scoring_strategy": "LeastAllocated",
        "fit_resources": [("cpu", 1), ("memory", 1)],
        "balanced_resources": ["cpu", "memory"],
        "hard_pod_affinity_weight": 1,
    }


def _check_name(name: object, where: str) -> str:
    if not isinstance(name, str) or (
        name not in DEFAULT_WEIGHTS and name not in FILTER_PLUGINS and name != "*"
    ):
        raise SpecError(f"{where}: unknown plugin {name!r}; score plugins: {', '.join(DEFAULT_WEIGHTS)}")
    return name


def profile_from_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """Build the engine profile from a KubeSchedulerConfiguration-like mapping (or None)."""
    prof = default_profile()
    if not config:
        return prof
    if not isinstance(config, Mapping):
        raise SpecError("scheduler config: must be a mapping")
    if "weights" in config:
        for name, w in (config.get("weights") or {}).items():
            _check_name(name, "weights")
            if name in DEFAULT_WEIGHTS:
                prof["weights"][name] = int(w)
        return prof
    profiles = config.get("profiles") or [{}]
    p = profiles[0] or {}
    plugins = p.get("plugins") or {}
    weights = prof["weights"]
    for point in ("multiPoint", "score"):
        section = plugins.get(point) or {}
        for i, d in enumerate(section.get("disabled") or []):
            name = _check_name(d.get("name"), f"plugins.{point}.disabled[{i}]")
            if name == "*":
                for k in weights:
                    weights[k] = 0
            elif name in weights:
                weights[name] = 0
        for i, e in enumerate(section.get("enabled") or []):
            name = _check_name(e.get("name"), f"plugins.{point}.enabled[{i}]")
            if name in weights:
                w = int(e.get("weight") or DEFAULT_WEIGHTS[name])
                if w < 0:
                    raise SpecError(f"plugins.{point}.enabled[{i}].weight: must not be negative")
                weights[name] = w
    for i, pc in enumerate(p.get("pluginConfig") or []):
        name = _check_name(pc.get("name"), f"pluginConfig[{i}].name")
        args = pc.get("args") or {}
        if name == "NodeResourcesFit":
            strat = args.get("scoringStrategy") or {}
            t = strat.get("type") or "LeastAllocated"
            if t not in ("LeastAllocated", "MostAllocated"):
                raise SpecError(
                    f'pluginConfig[{i}].args.scoringStrategy.type: Unsupported value: "{t}": '
                    'supported values: "LeastAllocated", "MostAllocated"'
                )
            prof["scoring_strategy"] = t
            if strat.get("resources"):
                prof["fit_resources"] = [
                    (str(r["name"]), int(r.get("weight") or 1)) for r in strat["resources"]
                ]
        elif name == "NodeResourcesBalancedAllocation":
            if args.get("resources"):
                prof["balanced_resources"] = [str(r["name"]) for r in args["resources"]]
        elif name == "InterPodAffinity":
            if "hardPodAffinityWeight" in args:
                prof["hard_pod_affinity_weight"] = int(args["hardPodAffinityWeight"])
    return prof
