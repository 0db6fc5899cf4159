"""The compact binary answer of ``keel serve`` (``Accept: application/x-keel-compact``), decoded.

The format is laid out byte by byte in docs/compact.md; the server's encoder is
core/server/compact.cpp. This module is pure Python and needs no native extension, so a client
can copy it on its own.

    >>> decode(bytes.fromhex("01010300 00403f"))
    {'prediction': 0.75, 'variant_index': 1, 'version': 3, 'fallback': False, 'missing': False}
"""

from __future__ import annotations

import struct
from typing import Any, Union

__all__ = ["MEDIA_TYPE", "decode"]

MEDIA_TYPE = "application/x-keel-compact"

_TAG_MASK = 0x0F
_TAG_ANSWER = 1
_TAG_BATCH = 2
_TAG_ITEMS = 3
_FALLBACK = 0x10
_MISSING = 0x20
_RESERVED = 0xC0
_MAX_VARINT_BYTES = 10
_FLOAT32 = struct.Struct("<f")

Answer = dict[str, Any]
Items = dict[str, Any]
Decoded = Union[Answer, Items, list[Union[Answer, Items]]]


class _Reader:
    """Bytes read front to back, each failure naming the offset where it was found."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def fail(self, what: str, at: int | None = None) -> ValueError:
        where = self.pos if at is None else at
        return ValueError(f"compact answer: {what} at byte offset {where} (of {len(self.data)} bytes); "
                          f"see docs/compact.md for the format")

    def byte(self, what: str) -> int:
        if self.pos >= len(self.data):
            raise self.fail(f"truncated: expected {what}")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def varint(self, what: str) -> int:
        start = self.pos
        value = 0
        for i in range(_MAX_VARINT_BYTES):
            b = self.byte(f"{what} (a varint)")
            value |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                if value >= 1 << 64:
                    raise self.fail(f"{what} is a varint above 64 bits", start)
                return value
        raise self.fail(f"{what} is a varint longer than {_MAX_VARINT_BYTES} bytes", start)

    def float32(self, what: str) -> float:
        if self.pos + 4 > len(self.data):
            raise self.fail(f"truncated: expected {what} (4 bytes of float32), "
                            f"{len(self.data) - self.pos} left")
        (value,) = _FLOAT32.unpack_from(self.data, self.pos)
        self.pos += 4
        return float(value)

    def head(self) -> tuple[int, int]:
        """The first byte of a message: its tag and its flag bits."""
        at = self.pos
        b = self.byte("a head byte (tag and flags)")
        if b & _RESERVED:
            raise self.fail(f"head byte 0x{b:02x} sets reserved bits 0x{b & _RESERVED:02x} "
                            "(a newer format than this decoder reads)", at)
        tag = b & _TAG_MASK
        if tag not in (_TAG_ANSWER, _TAG_BATCH, _TAG_ITEMS):
            raise self.fail(f"head byte 0x{b:02x} has unknown tag {tag} (1 answer, 2 batch, 3 items)", at)
        return tag, b & ~_TAG_MASK

    def element(self) -> Answer | Items:
        """One message of a batch: an answer, or the items of one request."""
        at = self.pos
        tag, flags = self.head()
        if tag == _TAG_ANSWER:
            return self.answer_body(flags)
        if tag == _TAG_ITEMS:
            self.plain_head(tag, flags, at)
            return self.items_body()
        raise self.fail(f"expected an answer (tag 1) or items (tag 3) inside a batch, found tag {tag}", at)

    def items_body(self) -> Items:
        variant = self.varint("the variant index")
        version = self.varint("the model version")
        count = self.varint("the item count")
        if count > len(self.data) - self.pos:
            raise self.fail(f"truncated: the item count {count} needs at least {count} more bytes, "
                            f"{len(self.data) - self.pos} left")
        items = [_zigzag(self.varint(f"item {i}")) for i in range(count)]
        return {"items": items, "variant_index": variant, "version": version}

    def answer_body(self, flags: int) -> Answer:
        variant = self.varint("the variant index")
        version = self.varint("the model version")
        prediction = self.float32("the prediction")
        return {"prediction": prediction, "variant_index": variant, "version": version,
                "fallback": bool(flags & _FALLBACK), "missing": bool(flags & _MISSING)}

    def plain_head(self, tag: int, flags: int, at: int) -> None:
        if flags:
            raise self.fail(f"head byte of tag {tag} sets answer flags 0x{flags:02x}, which only answers carry", at)


def _zigzag(value: int) -> int:
    return (value >> 1) ^ -(value & 1)


def decode(data: bytes | bytearray | memoryview) -> Decoded:
    """One compact message: a dict for one answer or for top-k items, a list of dicts for a batch.

    An answer is ``{"prediction", "variant_index", "version", "fallback", "missing"}``; items are
    ``{"items": [ids in rank order], "variant_index", "version"}``. Raises ValueError naming the byte
    offset for a message cut short, an unknown tag, reserved bits or bytes left over.
    """
    reader = _Reader(bytes(data))
    tag, flags = reader.head()
    result: Decoded
    if tag == _TAG_ANSWER:
        result = reader.answer_body(flags)
    elif tag == _TAG_BATCH:
        reader.plain_head(tag, flags, 0)
        count = reader.varint("the batch count")
        # Each message takes at least 4 bytes (items) or 7 (an answer): a count beyond what is left is a
        # corrupt message, not a list to allocate.
        if count * 4 > len(reader.data) - reader.pos:
            raise reader.fail(f"truncated: the batch count {count} needs at least {count * 4} more bytes, "
                              f"{len(reader.data) - reader.pos} left")
        result = [reader.element() for _ in range(count)]
    else:
        reader.plain_head(tag, flags, 0)
        result = reader.items_body()
    if reader.pos != len(reader.data):
        raise reader.fail(f"{len(reader.data) - reader.pos} bytes left over after the message")
    return result
