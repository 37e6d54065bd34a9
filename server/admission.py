"""Admission control: the expensive requests (sign-in, pulls, photo uploads) run a bounded
number at a time, and a request beyond that is answered 503 with ``Retry-After`` at once
instead of waiting in a queue. In a morning rush a queue only grows: requests wait longer
than their clients do, and the server works on for minutes for clients that have gone.
Clients (the field app, the reference client, ``simulate-devices``) wait the time they are
told, with jitter, and try again; a request whose client has gone before its work starts
is dropped (``client_gone``).
"""

from __future__ import annotations

import collections
import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator

from starlette.requests import Request
from starlette.responses import JSONResponse

from server.i18n import gettext as _

# How long a refused client is told to wait adapts to the rush. Refused clients
# take a place in line, which they keep when refused again; each is told its place
# divided by the requests the gate let through per second lately, so that they come
# back one after another about when there is room for them, rather than all every few
# seconds (spending the server's time on refusals) or all after the same long wait
# (leaving it idle meanwhile). Clients stretch the time by a random factor of 1 to 2
# (docs/sync-protocol.md), 1.5 on average: the place is divided by that too. At least
# the gate's own Retry-After, at most MAX_RETRY_AFTER.
MAX_RETRY_AFTER = 30
MEAN_STRETCH = 1.5
THROUGHPUT_WINDOW = 10.0  # seconds over which the gate's throughput is measured
# A refused client keeps its place until it is let in, or for this long after it was
# last refused (it was told at most MAX_RETRY_AFTER and waits up to twice that).
WAITING_WINDOW = 2.0 * MAX_RETRY_AFTER + 10


class Full(Exception):
    """The gate has as many requests as it admits: try again after ``retry_after`` seconds."""

    def __init__(self, name: str, retry_after: int):
        super().__init__(name)
        self.retry_after = retry_after


class Gate:
    """At most ``capacity`` requests inside at once; ``admit`` refuses the next with ``Full``,
    telling it when to come back (at least ``retry_after`` seconds)."""

    def __init__(self, name: str, capacity: int, retry_after: int,
                 clock: Callable[[], float] = time.monotonic):
        self.name = name
        self.capacity = max(1, capacity)
        self.retry_after = retry_after
        self.clock = clock
        self._lock = threading.Lock()
        self._inside = 0
        self._left: collections.deque[float] = collections.deque()  # when requests left
        # refused client -> (place in line, when last refused), first in line first
        self._waiting: dict[object, tuple[int, float]] = {}
        self._tickets = 0
        self.refused = 0  # since start, for the figures

    @property
    def inside(self) -> int:
        return self._inside

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @contextlib.contextmanager
    def admit(self, client: object = None) -> Iterator[None]:
        """Let a request in, or raise ``Full``. ``client`` names who asks (a device, an
        account), so that a client refused again keeps its place in line."""
        with self._lock:
            now = self.clock()
            if self._inside >= self.capacity:
                self.refused += 1
                client = object() if client is None else client
                ticket = self._waiting.get(client, (None, 0))[0]
                if ticket is None:
                    ticket = self._tickets = self._tickets + 1
                self._waiting[client] = (ticket, now)  # a known client keeps its place
                raise Full(self.name, self._retry_after(ticket, now))
            self._inside += 1
            self._waiting.pop(client, None)
        try:
            yield
        finally:
            with self._lock:
                self._inside -= 1
                now = self.clock()
                self._left.append(now)
                self._forget_departures(now)

    def _forget_departures(self, now: float) -> None:
        while self._left and self._left[0] < now - THROUGHPUT_WINDOW:
            self._left.popleft()

    def _retry_after(self, ticket: int, now: float) -> int:
        self._forget_departures(now)
        while self._waiting:
            client, (_ticket, refused_at) = next(iter(self._waiting.items()))
            if refused_at >= now - WAITING_WINDOW:
                break
            del self._waiting[client]
        if not self._left:
            return self.retry_after
        # Over the window, or since the first departure in it when that is more recent
        # (the first seconds of a rush): not yet 10 s of departures is not a slow gate.
        per_second = len(self._left) / max(1.0, now - self._left[0])
        first = next(iter(self._waiting.values()))[0]
        place = ticket - first + 1
        return max(self.retry_after,
                   min(MAX_RETRY_AFTER, math.ceil(place / per_second / MEAN_STRETCH)))


def busy(full: Full) -> JSONResponse:
    """The answer to a request a gate refused: try again after ``Retry-After`` seconds."""
    return JSONResponse(
        {"error": {"code": "busy", "message": _("admission.busy", seconds=full.retry_after)}},
        status_code=503, headers={"Retry-After": str(full.retry_after)},
    )


async def client_gone(request: Request) -> bool:
    """Whether the client has hung up (its request's work would be thrown away)."""
    return await request.is_disconnected()
