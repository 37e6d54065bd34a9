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

# How long a refused client is told to wait adapts to the rush: the clients refused
# and not yet let in, divided by how many requests the gate let through per second
# lately, so that they come back about when there is room for them (and do not spend
# the server's time on refusals). At least the gate's own Retry-After, at most this.
MAX_RETRY_AFTER = 60
THROUGHPUT_WINDOW = 10.0  # seconds over which the gate's throughput is measured
# A refused client is counted as waiting until it is let in, or for this long (it was
# told at most MAX_RETRY_AFTER and waits up to twice that).
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
        self._waiting: dict[object, float] = {}  # refused client -> when, oldest first
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
        account), so that a client refused again is counted once among those waiting."""
        with self._lock:
            now = self.clock()
            if self._inside >= self.capacity:
                self.refused += 1
                self._waiting.pop(client, None)
                self._waiting[object() if client is None else client] = now
                raise Full(self.name, self._retry_after(now))
            self._inside += 1
            self._waiting.pop(client, None)
        try:
            yield
        finally:
            with self._lock:
                self._inside -= 1
                self._left.append(self.clock())

    def _retry_after(self, now: float) -> int:
        while self._left and self._left[0] < now - THROUGHPUT_WINDOW:
            self._left.popleft()
        for client, refused_at in list(self._waiting.items()):
            if refused_at >= now - WAITING_WINDOW:
                break
            del self._waiting[client]
        per_second = len(self._left) / THROUGHPUT_WINDOW
        if not per_second:
            return self.retry_after
        return max(self.retry_after,
                   min(MAX_RETRY_AFTER, math.ceil(len(self._waiting) / per_second)))


def busy(full: Full) -> JSONResponse:
    """The answer to a request a gate refused: try again after ``Retry-After`` seconds."""
    return JSONResponse(
        {"error": {"code": "busy", "message": _("admission.busy", seconds=full.retry_after)}},
        status_code=503, headers={"Retry-After": str(full.retry_after)},
    )


async def client_gone(request: Request) -> bool:
    """Whether the client has hung up (its request's work would be thrown away)."""
    return await request.is_disconnected()
