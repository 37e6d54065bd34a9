"""Working days on the Chinese calendar, which moves weekends around public holidays (调休).

The ``chinese-calendar`` package knows the State Council's published
holidays and adjusted working days for the years it covers. The
``calendar_days`` table overrides it, and covers years the package does not
know yet (an administrator enters them when the State Council publishes them).
"""

from __future__ import annotations

import datetime as dt

import chinese_calendar
import sqlite_utils


class UnknownCalendarYear(Exception):
    """Neither the package nor the calendar table knows this year's holidays."""

    def __init__(self, year: int):
        super().__init__(year)
        self.year = year


class WorkCalendar:
    def __init__(self, overrides: dict[dt.date, bool], known_years: set[int]):
        self.overrides = overrides
        self.known_years = known_years

    @classmethod
    def load(cls, db: sqlite_utils.Database) -> WorkCalendar:
        overrides = {
            dt.date.fromisoformat(day): bool(is_workday)
            for day, is_workday in db.execute("SELECT day, is_workday FROM calendar_days")
        }
        return cls(overrides, {day.year for day in overrides})

    def is_workday(self, day: dt.date) -> bool:
        if day in self.overrides:
            return self.overrides[day]
        try:
            return chinese_calendar.is_workday(day)
        except NotImplementedError:
            if day.year in self.known_years:
                return day.weekday() < 5
            raise UnknownCalendarYear(day.year) from None

    def add_working_days(self, start: dt.date, days: int) -> dt.date:
        """The ``days``-th working day after ``start`` (the start day itself not counted)."""
        if days < 1:
            raise ValueError("days must be at least 1")
        day = start
        counted = 0
        while counted < days:
            day += dt.timedelta(days=1)
            if self.is_workday(day):
                counted += 1
        return day

    def deadline(self, start: dt.date, days: int) -> tuple[dt.date, bool]:
        """The ``days``-th working day after ``start``, and whether it is provisional (暂定).

        Days of a year the calendar does not know count Monday to Friday; the
        deadline is then provisional and is computed again when the year's
        arrangement is entered. It never refuses for want of a calendar.
        """
        if days < 1:
            raise ValueError("days must be at least 1")
        day, counted, provisional = start, 0, False
        while counted < days:
            day += dt.timedelta(days=1)
            try:
                counted += self.is_workday(day)
            except UnknownCalendarYear:
                provisional = True
                counted += day.weekday() < 5
        return day, provisional

    def add_working_days_or_weekdays(self, start: dt.date, days: int) -> dt.date:
        """``add_working_days``, but in a year the calendar does not know, Monday to
        Friday are the working days: for what must not fail for want of a calendar (the
        response time of a signing, the demo's history)."""
        try:
            return self.add_working_days(start, days)
        except UnknownCalendarYear:
            day, counted = start, 0
            while counted < days:
                day += dt.timedelta(days=1)
                counted += day.weekday() < 5
            return day

    def working_days_between(self, start: dt.date, end: dt.date) -> int:
        """Working days after ``start`` up to and including ``end``."""
        count = 0
        day = start
        while day < end:
            day += dt.timedelta(days=1)
            count += self.is_workday(day)
        return count


def set_year(db: sqlite_utils.Database, year: int, holidays: list[dt.date],
             workdays: list[dt.date], note: str = "") -> None:
    """Record a year's published calendar: its holidays and its adjusted working weekends."""
    for day in [*holidays, *workdays]:
        if day.year != year:
            raise ValueError(f"{day} is not in {year}")
    db.execute("DELETE FROM calendar_days WHERE day LIKE ?", [f"{year}-%"])
    for day in holidays:
        db["calendar_days"].insert({"day": day.isoformat(), "is_workday": 0, "note": note})
    for day in workdays:
        db["calendar_days"].insert({"day": day.isoformat(), "is_workday": 1, "note": note})
