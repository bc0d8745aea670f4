"""Bounded reads over a file's bytes: every count and length is compared with what remains
before anything is read or allocated, so a lying header ends in ``Malformed``, never in a
huge allocation or a read past the end."""

from __future__ import annotations

import mmap
import struct

LENGTH = struct.Struct("<Q")


class Malformed(Exception):
    """The first problem found in a model file, and the byte offset where it sits."""

    def __init__(self, offset: int, problem: str) -> None:
        self.offset = offset
        self.problem = problem
        super().__init__(f"{problem} (at byte {offset})")


class Cursor:
    def __init__(self, data: mmap.mmap | bytes, size: int) -> None:
        self.data = memoryview(data)
        self.size = size
        self.pos = 0

    @property
    def remaining(self) -> int:
        return self.size - self.pos

    def take(self, count: int, what: str) -> bytes:
        """The next ``count`` bytes, if the file has them."""
        start = self.advance(count, what)
        return bytes(self.data[start : start + count])

    def advance(self, count: int, what: str) -> int:
        """Step over ``count`` bytes without reading them; returns where they start."""
        if count > self.remaining:
            raise Malformed(
                self.pos, f"{what} needs {count} bytes but the file has {self.remaining} left"
            )
        start = self.pos
        self.pos += count
        return start

    def unpack(self, fmt: str, what: str) -> int:
        start = self.advance(struct.calcsize(fmt), what)
        value: int = struct.unpack_from(fmt, self.data, start)[0]
        return value

    def string_length(self, what: str, limit: int) -> int:
        at = self.pos
        length = self.unpack("<Q", f"length of {what}")
        if length > min(limit, self.remaining):
            fits = min(limit, self.remaining)
            raise Malformed(at, f"{what} claims {length} bytes; at most {fits} fit")
        return length

    def skip_string(self, what: str, limit: int) -> None:
        self.advance(self.string_length(what, limit), what)

    def skip_strings(self, count: int, what: str, limit: int) -> None:
        """Step over ``count`` length-prefixed strings: one tight loop, since a vocabulary
        has 10^5 of them and this runs before every engine start."""
        data, pos, end, unpack = self.data, self.pos, self.size, LENGTH.unpack_from
        for index in range(count):
            if pos + 8 > end:
                raise Malformed(pos, f"{what}[{index}] is cut off by the end of the file")
            length = unpack(data, pos)[0]
            pos += 8 + length
            if pos > end or length > limit:
                raise Malformed(pos - 8 - length, f"{what}[{index}] claims {length} bytes")
        self.pos = pos

    def text(self, what: str, limit: int) -> str:
        """A length-prefixed string that must be valid UTF-8."""
        at = self.pos
        raw = self.take(self.string_length(what, limit), what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Malformed(at, f"{what} is not valid UTF-8: {raw[:40]!r}") from None
