"""Pull pages shared between phones.

On a rollout morning hundreds of new phones of one office take the same snapshot:
the same working set (``working_set.view_of``), the same horizon, page after
page, then the same log pages (``pull.log_page_end``). Each page is read,
serialised and compressed once and kept here for a short while; every phone that
asks for it gets the same bytes, with its own cursor and client fields appended.

A snapshot page read at version V may be given to a phone whose snapshot was pinned at P:
its cursor then goes on from min(P, V), so the log after the snapshot brings every
change made after the page was read (a pin lower than need be only replays a few
changes; a page read after the pin is newer than need be, which the log also
allows). Pages are kept ``max_age`` seconds and while the log is at most
``max_behind`` versions past them; at most ``max_bytes`` in all, the least recently
used leaving first. A page is built once however many phones ask for it at the same
moment: the others wait for it.

A shared page travels as the start of a gzip stream (header and the page's records,
compressed once, ending on a byte boundary with a sync flush); each answer adds
its own members, the final block and the trailer, whose CRC continues from the
page's. The result is one ordinary gzip member.
"""

from __future__ import annotations

import collections
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no mtime
SHARED_LEVEL = 9  # compressed once, sent many times
TAIL_LEVEL = 6


@dataclass(frozen=True)
class SharedPage:
    """A snapshot or log page: ``members`` are its JSON object members (without braces),
    ``built_at`` the change log's head when it was read, ``part`` and ``after``
    where a snapshot goes on after it (None for a log page)."""

    members: bytes
    built_at: int
    part: str | None
    after: object
    gzip_start: bytes = field(init=False, repr=False)
    crc: int = field(init=False, repr=False)

    def __post_init__(self):
        opening = b"{" + self.members + b","
        compressor = zlib.compressobj(SHARED_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        deflated = compressor.compress(opening) + compressor.flush(zlib.Z_SYNC_FLUSH)
        object.__setattr__(self, "gzip_start", GZIP_HEADER + deflated)
        object.__setattr__(self, "crc", zlib.crc32(opening))

    @property
    def size(self) -> int:
        return len(self.members) + len(self.gzip_start)

    def body(self, tail: bytes) -> bytes:
        """The whole JSON answer: this page's members, then ``tail`` (more members and
        the closing brace)."""
        return b"{" + self.members + b"," + tail

    def gzip_body(self, tail: bytes) -> bytes:
        """``body(tail)`` as one gzip member."""
        compressor = zlib.compressobj(TAIL_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        length = len(self.members) + 2 + len(tail)
        return (self.gzip_start + compressor.compress(tail) + compressor.flush()
                + struct.pack("<II", zlib.crc32(tail, self.crc), length & 0xFFFFFFFF))


@dataclass
class _Entry:
    page: SharedPage
    stored: float


class SharedPages:
    """Recent snapshot and log pages, by everything their content depends on."""

    def __init__(self, max_bytes: int = 64 * 2**20, max_age: float = 30.0,
                 max_behind: int = 1000, clock: Callable[[], float] = time.monotonic):
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.max_behind = max_behind
        self.clock = clock
        self.hits = 0
        self.builds = 0
        self._entries: collections.OrderedDict[tuple, _Entry] = collections.OrderedDict()
        self._building: dict[tuple, threading.Event] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def _fresh(self, entry: _Entry, latest: int) -> bool:
        return (self.clock() - entry.stored < self.max_age
                and latest - entry.page.built_at <= self.max_behind)

    def get(self, key: tuple, latest: int, build: Callable[[], SharedPage]) -> SharedPage:
        """The page of ``key`` if one fresh for a log at ``latest`` is kept, else the
        one ``build`` makes (which is then kept)."""
        while True:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None and self._fresh(entry, latest):
                    self._entries.move_to_end(key)
                    self.hits += 1
                    return entry.page
                building = self._building.get(key)
                if building is None:
                    building = self._building[key] = threading.Event()
                    break
            building.wait()
        try:
            page = build()
            with self._lock:
                self.builds += 1
                self._store(key, page)
            return page
        finally:
            with self._lock:
                del self._building[key]
            building.set()

    def _store(self, key: tuple, page: SharedPage) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.page.size
        if page.size > self.max_bytes:
            return
        self._entries[key] = _Entry(page, self.clock())
        self._bytes += page.size
        while self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.page.size

    def __len__(self) -> int:
        return len(self._entries)
