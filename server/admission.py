"""Admission control: the expensive requests (sign-in, pulls, photo uploads) run a bounded
number at a time, and a request beyond that is answered 503 with ``Retry-After`` at once
instead of waiting in a queue. In a morning rush a queue only grows: requests wait longer
than their clients do, and the server works on for minutes for clients that have gone.
Clients (the field app, the reference client, ``simulate-devices``) wait the time they are
told, with jitter, and try again; a request whose client has gone before its work starts
is dropped (``client_gone``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from starlette.requests import Request
from starlette.responses import JSONResponse

from server.i18n import gettext as _


class Full(Exception):
    """The gate has as many requests as it admits."""


class Gate:
    """At most ``capacity`` requests inside at once; ``admit`` refuses the next with ``Full``."""

    def __init__(self, name: str, capacity: int, retry_after: int):
        self.name = name
        self.capacity = max(1, capacity)
        self.retry_after = retry_after
        self._lock = threading.Lock()
        self._inside = 0
        self.refused = 0  # since start, for the figures

    @property
    def inside(self) -> int:
        return self._inside

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        with self._lock:
            if self._inside >= self.capacity:
                self.refused += 1
                raise Full(self.name)
            self._inside += 1
        try:
            yield
        finally:
            with self._lock:
                self._inside -= 1


def busy(gate: Gate) -> JSONResponse:
    """The answer to a request the gate refused: try again after ``Retry-After`` seconds."""
    return JSONResponse(
        {"error": {"code": "busy", "message": _("admission.busy", seconds=gate.retry_after)}},
        status_code=503, headers={"Retry-After": str(gate.retry_after)},
    )


async def client_gone(request: Request) -> bool:
    """Whether the client has hung up (its request's work would be thrown away)."""
    return await request.is_disconnected()
