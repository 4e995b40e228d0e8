"""What the Kafka records share: each format is a msgspec Struct whose first field `v` is its version.

The Structs say the wire format field by field; msgspec decodes a record straight into them, checking every type
on the way, and names the first field at fault. The domain's own types stay plain dataclasses: each record
module converts between the two.
"""

from __future__ import annotations

import contextlib
from typing import TypeVar

import msgspec

T = TypeVar("T")


class _Versioned(msgspec.Struct):
    v: object = None


_VERSION = msgspec.json.Decoder(_Versioned)


def decode(decoder: msgspec.json.Decoder[T], data: bytes, error: type[ValueError], what: str, version: int) -> T:
    """The record in `data`; raise `error` saying that its version is unsupported, or what is wrong and where."""
    try:
        return decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise error(_reason(data, what, version, exc)) from None


def _reason(data: bytes, what: str, version: int, exc: msgspec.DecodeError) -> str:
    # Read only when decoding failed: a record of another version may fail on some other field before `v`.
    with contextlib.suppress(msgspec.DecodeError):
        found = _VERSION.decode(data).v
        if found is not None and found != version:
            return f"unsupported {what} format version {found!r}"
    return f"not a {what} record: {exc}"
