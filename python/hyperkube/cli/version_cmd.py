"""``hyperkube version``: the version and whether the native core is loaded."""

from __future__ import annotations

import argparse
import json
import platform


def info() -> dict[str, object]:
    import hyperkube

    native_version = hyperkube._native.__version__ if hyperkube.NATIVE else None
    return {
        "version": hyperkube.__version__,
        "native": hyperkube.NATIVE,
        "nativeVersion": native_version,
        "python": platform.python_version(),
        "platform": f"{platform.system().lower()}/{platform.machine()}",
    }


def run(args: argparse.Namespace) -> int:
    data = info()
    if args.output == "json":
        print(json.dumps(data, indent=2))
        return 0
    native = f"loaded (v{data['nativeVersion']})" if data["native"] else "NOT loaded (pure Python fallback)"
    print(f"hyperkube {data['version']}")
    print(f"native core: {native}")
    print(f"python {data['python']} on {data['platform']}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("version", help="print the version and whether the native core is loaded")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.set_defaults(func=run)
