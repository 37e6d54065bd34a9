"""How a mutation or a request can fail."""

from __future__ import annotations

from server.i18n import gettext as _


class Rejected(Exception):
    """A mutation that can never succeed: recorded with its reason; the queue moves on."""

    def __init__(self, code: str, message: str | None = None, **params):
        self.code = code
        self.message = message or _(f"sync.rejected.{code}", **params)
        super().__init__(f"{code}: {self.message}")


class BadRequest(Exception):
    """The request as a whole is malformed: nothing is applied."""

    def __init__(self, code: str, message: str):
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")
