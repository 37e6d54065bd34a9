"""The ledger's numbered series: problems (``ZF-2026-000523``), supervision orders
(``DB-2026-0007``) and reports (``BG-2026-0003``), numbered per year without gaps."""

from __future__ import annotations

import re

import sqlite_utils

LEDGER_PREFIX = "ZF"
_LEDGER_NO = re.compile(r"^([A-Za-z]{2})-(\d{4})-(\d{1,6})$")

# Each numbered series: its prefix, its counter column in ledger_counters, its digits.
NUMBER_SERIES = {
    "ledger": (LEDGER_PREFIX, "last_no", 6),
    "supervision": ("DB", "supervision_last_no", 4),
    "report": ("BG", "report_last_no", 4),  # reports handed up (migration m020)
}


def normal_ledger_no(text: str) -> str | None:
    """A ledger number as stored (``ZF-2026-000523``) from one typed with any case,
    spaces or fewer digits (`` zf-2026-523``); None if the text is not one."""
    number = _LEDGER_NO.match("".join(text.split()))
    if number is None:
        return None
    prefix, year, serial = number.groups()
    return f"{prefix.upper()}-{year}-{int(serial):06d}"


def next_number(db: sqlite_utils.Database, series: str, year: int) -> str:
    """The next number of the series and year, without gaps: the counter moves in the
    caller's transaction, so a refused action leaves no hole."""
    prefix, column, digits = NUMBER_SERIES[series]
    db.execute(
        "INSERT INTO ledger_counters (year, last_no) VALUES (?, 0) ON CONFLICT(year) DO NOTHING",
        [year],
    )
    db.execute(f"UPDATE ledger_counters SET {column} = {column} + 1 WHERE year = ?", [year])
    number = db.execute(f"SELECT {column} FROM ledger_counters WHERE year = ?", [year]).fetchone()
    return f"{prefix}-{year}-{number[0]:0{digits}d}"


def next_ledger_no(db: sqlite_utils.Database, year: int) -> str:
    """The next ledger number of the year (``ZF-2026-000523``)."""
    return next_number(db, "ledger", year)
