"""Working days on the Chinese calendar, which moves weekends around public holidays (调休).

The ``chinese-calendar`` package knows the State Council's published
holidays and adjusted working days for the years it covers. The
``calendar_days`` table overrides it, and covers years the package does not
know yet (an administrator enters them when the State Council publishes them:
``server/calendar_entry.py``, the 工作日历 page and ``fieldledger calendar import``).

A year that neither knows never refuses an action: ``WorkCalendar.deadline``
counts Monday to Friday through it and marks the deadline provisional (暂定);
entering the year computes such deadlines again.

Why Monday to Friday, and not the ``holidays`` package's China calendar, for a
year not yet published: that calendar knows the past arrangements as fixed
dates, and for a future year guesses the days off from patterns of earlier
years (which weekday a festival falls on), while the adjusted working
weekends (调休上班) are only ever known from the State Council's notice, which
it cannot guess. A guessed holiday without its make-up working Saturday moves
a deadline later than the official one, and a guess may be wrong for a whole
week (the 2024 revision of the holiday rules changed the Spring Festival and
May Day patterns). Monday to Friday is plain to explain, needs no further
dependency, and errs the safe way: it counts a festival's weekdays as working
days, so a provisional deadline is almost always no later than the official
one. Either way the deadline is only provisional until the year is entered.
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


def package_knows(year: int) -> bool:
    """Whether the bundled ``chinese-calendar`` package has the year's official arrangement."""
    try:
        chinese_calendar.is_workday(dt.date(year, 1, 1))
    except NotImplementedError:
        return False
    return True


def package_entries(year: int) -> tuple[list[dt.date], list[dt.date]]:
    """The package's holidays and adjusted working days of a year it knows, as entries:
    every day off that is not a weekend, and every weekend day worked."""
    holidays, workdays = [], []
    day = dt.date(year, 1, 1)
    while day.year == year:
        weekend = day.weekday() >= 5
        working = chinese_calendar.is_workday(day)
        if weekend and working:
            workdays.append(day)
        elif not weekend and not working:
            holidays.append(day)
        day += dt.timedelta(days=1)
    return holidays, workdays


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

    def with_year(self, year: int, holidays: list[dt.date],
                  workdays: list[dt.date]) -> WorkCalendar:
        """This calendar with ``year``'s entries replaced (what entering the year would give)."""
        overrides = {day: value for day, value in self.overrides.items() if day.year != year}
        overrides.update({day: False for day in holidays})
        overrides.update({day: True for day in workdays})
        return WorkCalendar(overrides, {*self.known_years, year})

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
             workdays: list[dt.date], note: str = "",
             notes: dict[dt.date, str] | None = None) -> None:
    """Record a year's published calendar: its holidays and its adjusted working weekends
    (``notes``: a note per day, such as the festival's name)."""
    for day in [*holidays, *workdays]:
        if day.year != year:
            raise ValueError(f"{day} is not in {year}")
    notes = notes or {}
    db.execute("DELETE FROM calendar_days WHERE day LIKE ?", [f"{year}-%"])
    for day in holidays:
        db["calendar_days"].insert(
            {"day": day.isoformat(), "is_workday": 0, "note": notes.get(day, note)})
    for day in workdays:
        db["calendar_days"].insert(
            {"day": day.isoformat(), "is_workday": 1, "note": notes.get(day, note)})
