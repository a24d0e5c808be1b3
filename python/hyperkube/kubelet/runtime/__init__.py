"""Container runtimes behind one async interface (see ``base.py``): ``runc``, ``process`` and ``fake``.

:func:`new_runtime` picks one by name; ``None`` picks ``runc`` when we are root and runc is installed,
else ``process``.
"""

from __future__ import annotations

import os

from hyperkube.kubelet.runtime.base import (
    ContainerNotFound,
    ContainerSpec,
    ContainerStatus,
    CreateContainerError,
    ErrImageNeverPull,
    ExecResult,
    Mount,
    Runtime,
    RuntimeError_,
    State,
)

__all__ = [
    "ContainerNotFound",
    "ContainerSpec",
    "ContainerStatus",
    "CreateContainerError",
    "ErrImageNeverPull",
    "ExecResult",
    "Mount",
    "Runtime",
    "RuntimeError_",
    "State",
    "default_runtime_name",
    "new_runtime",
]


def default_runtime_name() -> str:
    from hyperkube.kubelet.runtime.runc import find_runc

    return "runc" if os.geteuid() == 0 and find_runc() else "process"


def new_runtime(name: str | None, data_dir: str, image_dir: str | None = None) -> Runtime:
    """A runtime keeping its containers under ``data_dir``; images from ``image_dir`` (default
    ``data_dir/images``)."""
    from hyperkube.kubelet.images import ImageStore

    name = name or default_runtime_name()
    images = ImageStore(image_dir or os.path.join(data_dir, "images"))
    if name == "runc":
        from hyperkube.kubelet.runtime.runc import RuncRuntime

        return RuncRuntime(data_dir, images)
    if name == "process":
        from hyperkube.kubelet.runtime.process import ProcessRuntime

        return ProcessRuntime(data_dir, images)
    if name == "fake":
        from hyperkube.kubelet.runtime.fake import FakeRuntime

        return FakeRuntime()
    raise ValueError(f"unknown runtime {name!r} (runc, process or fake)")
