"""hyperkube: a Kubernetes-compatible container orchestrator with compiled hot paths.

The compiled core lives in :mod:`hyperkube._native` (built from the Rust crates ``core`` and
``ext``); everything else is Python. See DESIGN.md for the layout.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hyperkube")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

try:
    from hyperkube import _native

    NATIVE = True
except ImportError:  # pragma: no cover - only when the extension was not built
    _native = None  # type: ignore[assignment]
    NATIVE = False

__all__ = ["NATIVE", "__version__"]
