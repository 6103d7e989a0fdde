"""A streaming reader of one large JSON object: its (key, value) pairs, one value in memory at a time."""

from __future__ import annotations

import gzip
import json
import re
import zlib

from ...core.errors import StructureError

__all__ = ["JsonObjectStream", "open_text"]

_WS = re.compile(r"[ \t\n\r]*")


class JsonObjectStream:
    """Iterate the (key, value) pairs of a file's top-level JSON object without loading the whole file.

    Each value is decoded by :class:`json.JSONDecoder` from a text buffer that grows (doubling) until
    the value is complete, so memory is bounded by the largest single value, not the file.  Errors are
    :class:`~hessdistill.core.errors.StructureError` naming ``path``, the position, the last key read (the keys
    are called ``mp_id`` in the messages: MPtrj is the file this reads) and ``fix``.
    """

    def __init__(self, fh, path, chunk_chars: int, *, fix: str):
        self.fh = fh
        self.path = path
        self.fix = fix
        self.chunk = max(1, int(chunk_chars))
        self.buf = ""
        self.pos = 0
        self.dropped = 0  # characters discarded before buf[0]
        self.eof = False
        self.decoder = json.JSONDecoder()
        self.last_key = None

    def _more(self, n: int | None = None) -> bool:
        if self.eof:
            return False
        try:
            data = self.fh.read(n or self.chunk)
        except (OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:
            raise self._error(f"cannot be read (corrupt or truncated file): {type(exc).__name__}: {exc}") from exc
        if not data:
            self.eof = True
            return False
        if self.pos:
            self.dropped += self.pos
            self.buf = self.buf[self.pos :]
            self.pos = 0
        self.buf += data
        return True

    def _peek(self) -> str:
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._more():
                return ""

    def _error(self, problem, structure=None):
        return StructureError(problem, path=self.path, structure=structure, fix=self.fix)

    def _after(self):
        return f"after mp_id {self.last_key!r}" if self.last_key is not None else "before the first mp_id"

    def _decode(self, what, structure):
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                incomplete = exc.pos >= len(self.buf) - 64 or exc.msg.startswith("Unterminated string")
                if incomplete and self._more(max(self.chunk, len(self.buf) - self.pos)):
                    continue
                if incomplete:
                    raise self._error(f"the file ends inside {what} (truncated download)", structure) from None
                raise self._error(
                    f"invalid JSON in {what} at character {self.dropped + exc.pos}: {exc.msg}", structure
                ) from None
            self.pos = end
            return value

    def __iter__(self):
        c = self._peek()
        if c == "":
            raise self._error("is empty")
        if c != "{":
            raise self._error(
                f"does not hold a JSON object (starts with {c!r}); an MPtrj file is one object "
                "{mp_id: {frame_id: frame}}"
            )
        self.pos += 1
        first = True
        while True:
            c = self._peek()
            if c == "":
                raise self._error(f"the file ends {self._after()} without the closing '}}' (truncated download)")
            if c == "}":
                self.pos += 1
                return
            if not first:
                if c != ",":
                    raise self._error(
                        f"invalid JSON {self._after()} at character {self.dropped + self.pos}: "
                        f"expected ',' or '}}', found {c!r}"
                    )
                self.pos += 1
                c = self._peek()
            if c != '"':
                raise self._error(
                    f"invalid JSON {self._after()} at character {self.dropped + self.pos}: expected "
                    f"a quoted mp_id, found {c!r}"
                    if c
                    else f"the file ends {self._after()} (truncated download)"
                )
            key = self._decode("an mp_id key", None)
            c = self._peek()
            if c != ":":
                raise self._error(
                    f"invalid JSON after key {key!r}: expected ':'"
                    if c
                    else f"the file ends after key {key!r} (truncated download)",
                    f"mp_id {key!r}",
                )
            self.pos += 1
            if self._peek() == "":
                raise self._error(f"the file ends after key {key!r} (truncated download)", f"mp_id {key!r}")
            value = self._decode(f"the frames of mp_id {key!r}", f"mp_id {key!r}")
            self.last_key = key
            first = False
            yield key, value


def open_text(path):
    """A text handle on ``path`` (UTF-8), decompressed when the file is gzip."""
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")
