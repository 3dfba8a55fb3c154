"""Bounded line splitting of a process's output stream, and bounded logging of those lines.

A tool may write one gigantic line, or millions of short ones: lines longer than :data:`MAX_LINE_CHARS` are cut
(the rest of the line is dropped and the cut is marked), and :class:`LineBudget` lets through at most
:data:`MAX_LOG_LINES` lines per execution, then one note saying how many more were not logged.
"""

from __future__ import annotations

from collections.abc import Callable

MAX_LINE_CHARS = 4096
MAX_LOG_LINES = 1000
TRUNCATED = " ...[line truncated]"


class LineSplitter:
    """Feed bytes, get complete decoded lines; a partial line is held back (bounded) until its newline."""

    def __init__(self, max_chars: int = MAX_LINE_CHARS) -> None:
        self._max_bytes = max_chars * 4
        self._max_chars = max_chars
        self._buffer = bytearray()
        self._skipping = False

    def feed(self, chunk: bytes) -> list[str]:
        lines: list[str] = []
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            if self._skipping:
                self._skipping = False
            else:
                self._buffer += chunk[start:end]
                lines.append(self._decode(bytes(self._buffer)))
            self._buffer.clear()
            start = end + 1
        if not self._skipping:
            self._buffer += chunk[start:]
            if len(self._buffer) > self._max_bytes:
                lines.append(self._decode(bytes(self._buffer[: self._max_bytes]), cut=True))
                self._buffer.clear()
                self._skipping = True
        return lines

    def close(self) -> list[str]:
        rest = bytes(self._buffer)
        self._buffer.clear()
        return [self._decode(rest)] if rest and not self._skipping else []

    def _decode(self, data: bytes, *, cut: bool = False) -> str:
        text = data.decode("utf-8", errors="replace").rstrip("\r")
        if len(text) > self._max_chars:
            text, cut = text[: self._max_chars], True
        return text + TRUNCATED if cut else text


class LineBudget:
    """Pass at most ``limit`` lines to ``sink``; count the rest and report them once in :meth:`close`."""

    def __init__(self, sink: Callable[[str, str], None], limit: int = MAX_LOG_LINES) -> None:
        self._sink = sink
        self._limit = limit
        self.passed = 0
        self.dropped = 0

    def __call__(self, stream: str, line: str) -> None:
        if self.passed < self._limit:
            self.passed += 1
            self._sink(stream, line)
        else:
            self.dropped += 1

    def close(self) -> int:
        """How many lines were not passed on."""
        return self.dropped
