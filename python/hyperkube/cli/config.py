"""Component configuration files: ``--config FILE`` for the daemons, with flags winning.

A config file is a YAML mapping whose fields are the daemon's flags, written either as the flag
(``data-dir``), its Python name (``data_dir``) or camelCase as upstream's component configs do
(``dataDir``); ``apiVersion``/``kind`` are allowed and ignored. Values are checked exactly as the
flag would check them (type, choices), and an error names the file and the field. A flag given
on the command line always wins over the file.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from typing import Any

import yaml

# daemons whose --config is this generic form (the scheduler's is a KubeSchedulerConfiguration)
CONFIGURABLE = ("server", "controller-manager", "kubelet", "proxy", "agent")
IGNORED = {"apiVersion", "kind"}


class ConfigError(Exception):
    pass


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    if not any("--config" in a.option_strings for a in parser._actions):
        parser.add_argument(
            "--config", metavar="FILE", default=None, help="YAML file of flag values (flags given here win)"
        )


def _dest(field: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", field).lower().replace("-", "_")


def _given(action: argparse.Action, argv: Sequence[str]) -> bool:
    for arg in argv:
        for opt in action.option_strings:
            if arg == opt or arg.startswith(opt + "="):
                return True
    return False


def apply_config(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: Sequence[str]) -> None:
    """Fill `args` from args.config for every flag not given in `argv`."""
    path = args.config
    try:
        with open(path) as f:
            doc = yaml.safe_load(f) or {}
    except OSError as e:
        raise ConfigError(f"--config {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"--config {path}: not valid YAML: {e}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"--config {path}: expected a mapping of field: value")
    actions = {a.dest: a for a in parser._actions if a.option_strings and a.dest not in ("help", "config")}
    for field, value in doc.items():
        if field in IGNORED:
            continue
        action = actions.get(_dest(str(field)))
        if action is None:
            valid = ", ".join(sorted(actions))
            raise ConfigError(f'--config {path}: unknown field "{field}" (valid fields: {valid})')
        if _given(action, argv):
            continue
        setattr(args, action.dest, _convert(path, str(field), action, value))


def _convert(path: str, field: str, action: argparse.Action, value: Any) -> Any:
    where = f'--config {path}: field "{field}"'
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: must be true or false, not {value!r}")
        return value
    if isinstance(value, dict | list):
        raise ConfigError(f"{where}: must be a single value, not {type(value).__name__}")
    text = str(value).lower() if isinstance(value, bool) else str(value)
    try:
        converted = action.type(text) if callable(action.type) else text
    except (ValueError, TypeError, argparse.ArgumentTypeError) as e:
        raise ConfigError(f"{where}: invalid value {value!r}: {e}") from None
    if action.choices is not None and converted not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise ConfigError(f"{where}: invalid choice {value!r} (choose from {choices})")
    return converted
