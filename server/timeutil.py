"""Time: stored as UTC ISO-8601 with offset, shown in Asia/Shanghai."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

LOCAL_TZ = ZoneInfo("Asia/Shanghai")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def now_iso() -> str:
    return to_iso(utcnow())


def to_iso(moment: dt.datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: a timezone is required")
    return moment.astimezone(dt.UTC).isoformat()


def parse_iso(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without offset: {text!r}")
    return moment


def local(text: str | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """Format a stored timestamp for display in Asia/Shanghai."""
    if not text:
        return ""
    return parse_iso(text).astimezone(LOCAL_TZ).strftime(fmt)


def local_date(text: str) -> dt.date:
    """The Asia/Shanghai day of a stored timestamp."""
    return parse_iso(text).astimezone(LOCAL_TZ).date()
