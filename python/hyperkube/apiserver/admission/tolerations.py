"""DefaultTolerationSeconds (upstream plugin/pkg/admission/defaulttolerationseconds).

Pods that do not tolerate ``node.kubernetes.io/not-ready`` or ``node.kubernetes.io/unreachable``
NoExecute taints get a toleration of 300 seconds for each, so they are evicted five minutes
after their node goes away.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hyperkube.apiserver.admission.common import Context

DEFAULT_SECONDS = 300
KEYS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")


def admit(ctx: Context, pod: dict[str, Any]) -> None:
    spec = pod.setdefault("spec", {})
    tols = spec.get("tolerations") or []
    for key in KEYS:
        covered = any(
            (t.get("key") == key or (not t.get("key") and t.get("operator") == "Exists"))
            and t.get("effect") in (None, "", "NoExecute")
            for t in tols
        )
        if not covered:
            tols.append(
                {
                    "key": key,
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": DEFAULT_SECONDS,
                }
            )
    spec["tolerations"] = tols
