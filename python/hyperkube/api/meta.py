"""Object metadata helpers shared by the API server and the components: timestamps, uids, quantities."""

from __future__ import annotations

import datetime as _dt
import re
import secrets
import string
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # upstream's utilrand alphabet (no vowels)


def now() -> str:
    """RFC 3339 UTC with second precision, as metav1.Time serializes."""
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str | None) -> _dt.datetime | None:
    if not value:
        return None
    try:
        return _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def new_uid() -> str:
    return str(uuid.uuid4())


def random_suffix(n: int = 5) -> str:
    return "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(n))


def human_duration(seconds: float) -> str:
    """kubectl's duration.HumanDuration (the AGE column)."""
    s = int(seconds)
    if s < 0:
        return "<invalid>"
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        rs = s % 60
        return f"{m}m{rs}s" if rs else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = s // 3600
    if h < 8:
        rm = m % 60
        return f"{h}h{rm}m" if rm else f"{h}h"
    if h < 48:
        return f"{h}h"
    if h < 24 * 8:
        rh = h % 24
        return f"{h // 24}d{rh}h" if rh else f"{h // 24}d"
    if h < 24 * 365 * 2:
        return f"{h // 24}d"
    if h < 24 * 365 * 8:
        dy = (h // 24) % 365
        return f"{h // 24 // 365}y{dy}d" if dy else f"{h // 24 // 365}y"
    return f"{h // 24 // 365}y"


def age(timestamp: str | None) -> str:
    t = parse_time(timestamp)
    if t is None:
        return "<unknown>"
    return human_duration((_dt.datetime.now(_dt.UTC) - t).total_seconds())


_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|[numkMGTPE]i?|Ki|)$")
_SUFFIXES = {
    "": 1,
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}


def parse_quantity(value: Any) -> Decimal:
    """A resource.Quantity (``100m``, ``1Gi``, ``2``, ``1e3``) as a Decimal; ValueError if malformed."""
    if isinstance(value, bool):
        raise ValueError(
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        )
    if isinstance(value, int | float):
        return Decimal(str(value))
    if not isinstance(value, str):
        raise ValueError("quantities must be strings or numbers")
    m = _QUANTITY.match(value.strip())
    if not m or value.strip() != value or m.group(1) in (".", "+", "-"):
        raise ValueError(
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        )
    try:
        num = Decimal(m.group(1))
    except InvalidOperation as e:
        raise ValueError(str(e)) from None
    suffix = m.group(2)
    if suffix and suffix[0] in "eE":
        return num * (Decimal(10) ** int(suffix[1:]))
    return num * Decimal(_SUFFIXES[suffix])


_NAME_CHARS = string.ascii_lowercase + string.digits
