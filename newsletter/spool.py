"""A spool: append-only byte records, in memory while small, then in a temporary file.

What a run holds per subscriber (the validated entries of the subscribers file, the outcome
of each digest) is written here as one record each instead of living as Python objects: a
day of 100,000 subscribers then holds an array of offsets (8 bytes a record) and not
100,000 objects that, allocated between the run's short-lived ones, keep the allocator's
pages from ever being given back. Records are read back one at a time, or a span of them as
one block of bytes (what goes to a pool worker).

The file is unlinked at creation (`tempfile.TemporaryFile`): nothing is left behind, even by
a killed process. Reads use `os.pread`, so threads may read while nobody appends.
"""

from __future__ import annotations

import os
import tempfile
from array import array
from typing import IO

MEMORY_BYTES = 1 << 20  # records kept in memory up to this size, then the spool moves to a file
FLUSH_BYTES = 1 << 18  # appended bytes gathered before they are written to the file


class Spool:
    """Records 0..n-1; record i is bytes starts[i]:starts[i+1] of the spool's content. The
    first `_flushed` bytes are in the file, the rest in `_tail`."""

    __slots__ = ("_starts", "_tail", "_file", "_flushed", "_memory_bytes", "_flush_bytes")

    def __init__(self, memory_bytes: int = MEMORY_BYTES, flush_bytes: int = FLUSH_BYTES) -> None:
        self._starts = array("Q", [0])
        self._tail = bytearray()
        self._file: IO[bytes] | None = None
        self._flushed = 0
        self._memory_bytes = memory_bytes
        self._flush_bytes = flush_bytes

    @classmethod
    def of_block(cls, block: bytes, starts: array) -> Spool:  # type: ignore[type-arg]
        """A spool in memory over `block`, whose records start at `starts` (n + 1 offsets)."""
        spool = cls(memory_bytes=len(block) + 1)
        spool._tail = bytearray(block)
        spool._starts = starts
        return spool

    def __len__(self) -> int:
        return len(self._starts) - 1

    @property
    def size(self) -> int:
        return self._starts[-1]

    @property
    def on_disk(self) -> bool:
        return self._file is not None

    def append(self, record: bytes) -> int:
        """Add a record; its index."""
        self._tail += record
        self._starts.append(self._starts[-1] + len(record))
        if len(self._tail) >= self._flush_bytes and (self._file is not None or self.size > self._memory_bytes):
            self._flush()
        return len(self._starts) - 2

    def _flush(self) -> None:
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="newsletter-spool-")
        self._file.write(self._tail)
        self._file.flush()
        self._flushed += len(self._tail)
        self._tail = bytearray()

    def _bytes(self, start: int, stop: int) -> bytes:
        """The content between two offsets, wherever it is."""
        if start >= self._flushed:
            return bytes(self._tail[start - self._flushed : stop - self._flushed])
        assert self._file is not None
        head = os.pread(self._file.fileno(), min(stop, self._flushed) - start, start)
        if stop <= self._flushed:
            return head
        return head + bytes(self._tail[: stop - self._flushed])

    def __getitem__(self, index: int) -> bytes:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._bytes(self._starts[index], self._starts[index + 1])

    def block(self, start: int, stop: int) -> tuple[bytes, array]:  # type: ignore[type-arg]
        """Records start..stop-1 as one block of bytes and their starts in it (n + 1 offsets)."""
        start, stop = max(0, start), min(stop, len(self))
        if stop <= start:
            return b"", array("Q", [0])
        base = self._starts[start]
        starts = array("Q", (offset - base for offset in self._starts[start : stop + 1]))
        return self._bytes(base, self._starts[stop]), starts

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __del__(self) -> None:
        self.close()
