"""The ``hyperkube`` command: one entry point for every daemon and tool.

Each subcommand lives in its own module under ``hyperkube.cli`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (returning an exit code).
Modules are listed in ``COMMANDS``; a module whose component has not landed yet is simply
absent, so ``hyperkube --help`` always shows what this build can do.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from hyperkube.cli.config import CONFIGURABLE, ConfigError, add_config_flag, apply_config

# Subcommand modules, in help order.
# A module that does not exist yet (its component has not landed) is skipped.
COMMANDS: tuple[str, ...] = (
    "up",
    "server",
    "scheduler",
    "controller_manager",
    "kubelet",
    "proxy",
    "agent",
    "schedule",
    "store",
    "image",
    "certs",
    "token",
    "kubectl",
    "status",
    "version",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hyperkube",
        description="A Kubernetes-compatible orchestrator: apiserver, scheduler, controllers, "
        "kubelet and proxy in one command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        modname = f"hyperkube.cli.{name}_cmd"
        try:
            module = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name != modname:
                raise
            continue
        module.register(sub)
    for name in CONFIGURABLE:
        if name in sub.choices:
            add_config_flag(sub.choices[name])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if args.command in CONFIGURABLE and getattr(args, "config", None):
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        try:
            apply_config(sub.choices[args.command], args, argv[1:])
        except ConfigError as e:
            print(f"hyperkube {args.command}: {e}", file=sys.stderr)
            return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
