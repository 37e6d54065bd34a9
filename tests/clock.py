"""A clock the tests set: the ledger's "now" (and so its local "today") frozen at will."""

from __future__ import annotations

import datetime as dt

import pytest

from server.ledger import clock as ledger_clock
from server.timeutil import LOCAL_TZ


@pytest.fixture
def clock(monkeypatch):
    """clock(2026, 12, 6) sets the local (Asia/Shanghai) time to 10:00 on that day."""
    now = {"at": dt.datetime.now(dt.UTC).replace(microsecond=0)}

    def set_local_day(year: int, month: int, day: int, hour: int = 10) -> None:
        now["at"] = dt.datetime(year, month, day, hour, tzinfo=LOCAL_TZ).astimezone(dt.UTC)

    monkeypatch.setattr(ledger_clock, "utcnow", lambda: now["at"])
    return set_local_day
