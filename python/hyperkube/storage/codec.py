"""Stored values: objects (dicts, lists, strings, numbers, bytes) encoded with msgpack.

msgpack keeps bytes and strings apart (``use_bin_type``), round-trips every JSON value, and is
several times smaller and faster than JSON for Kubernetes objects. ``decode`` refuses trailing or
malformed data with :class:`~hyperkube.storage.interface.Corrupt` rather than guessing.
"""

from __future__ import annotations

from typing import Any

import msgpack

from .interface import Corrupt

_packer_options = {"use_bin_type": True}


def encode(obj: Any) -> bytes:
    """Encode an object for storage."""
    return msgpack.packb(obj, **_packer_options)


def decode(data: bytes) -> Any:
    """Decode a stored value; raises Corrupt when it is not one msgpack object."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as e:
        raise Corrupt(
            f"stored value is not a msgpack object ({len(data)} bytes): {e or type(e).__name__}"
        ) from e
