"""Shared helpers for benchmark scripts: timing, argument parsing, reporting."""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from typing import Any


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    p.add_argument("--quick", action="store_true", help="smaller sizes (for a smoke run)")
    return p


def best_of(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """Run fn `repeat` times; return the fastest wall time in seconds and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def machine() -> str:
    import os

    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def report(name: str, rows: list[dict[str, Any]], json_path: str | None) -> None:
    """Print rows as `metric: value unit (ratio)` lines; write them as JSON when asked."""
    print(f"# {name} on {machine()}")
    for r in rows:
        ratio = f"  ({r['ratio']:.1f}x {r.get('baseline', 'baseline')})" if r.get("ratio") is not None else ""
        print(f"{r['metric']}: {r['value']:,.0f} {r['unit']}{ratio}")
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"benchmark": name, "machine": machine(), "results": rows}, f, indent=2)
