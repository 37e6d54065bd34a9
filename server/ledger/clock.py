"""The ledger's clock: the "now" and the local (Asia/Shanghai) "today" every ledger rule
reads. Tests freeze it by replacing ``utcnow`` (tests/clock.py)."""

from __future__ import annotations

import datetime as dt

from server import timeutil
from server.timeutil import LOCAL_TZ


def utcnow() -> dt.datetime:
    return timeutil.utcnow()


def now_iso() -> str:
    return timeutil.to_iso(utcnow())


def local_today() -> dt.date:
    return utcnow().astimezone(LOCAL_TZ).date()
