"""Entering a year's official holiday arrangement (工作日历), as the State Council publishes it.

One parser for every way rows arrive (a CSV or XLSX file, rows typed on the
工作日历 page, ``fieldledger calendar import``): each row is a date and a kind,
休 (a day off) or 班 (an adjusted working day), with an optional note. A header
row is optional. Every row is checked, and a bad row refuses the whole year
with its line number (``CalendarRejected``).

Applying a year (``apply_year``, inside the caller's write transaction)
replaces the year's ``calendar_days``, records who entered it in
``calendar_years``, and computes again every open problem's provisional
deadline (暂定) from its history, appending a ``deadline_recomputed`` event to
each one whose deadline moved. Frozen facts (closed on time, responded in time)
are never rewritten.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from dataclasses import dataclass

import sqlite_utils

from server import audit, importer
from server.i18n import gettext as _
from server.importer import FILE_ROW, ImportFailed, ImportProblem
from server.ledger import deadlines, export, states, workflow
from server.timeutil import now_iso
from server.workdays import WorkCalendar, package_entries, package_knows, set_year

MIN_YEAR, MAX_YEAR = 2000, 2100
MAX_ROWS = 400  # a year has at most 366 days
MAX_TEXT = 20_000  # characters of rows typed on the page

HOLIDAY_WORDS = frozenset({"休", "假", "放假", "休息", "节假日", "假日", "holiday", "off"})
WORKDAY_WORDS = frozenset(
    {"班", "上班", "调休上班", "补班", "工作日", "workday", "work"}
)
HOLIDAY_MARK, WORKDAY_MARK = "休", "班"
EXPORT_HEADER = ("日期", "类型", "说明")

_DATE = re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?")
_COMPACT_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})")
_LOOSE_SEPARATORS = re.compile(r"[\s，、]+")

NOTE_MAX_LENGTH = 40  # a holiday's name, such as 春节 or 国庆节调休上班


class CalendarRejected(ImportFailed):
    """The rows were refused, none saved; ``problems`` lists why, line by line."""


@dataclass(frozen=True)
class Entry:
    day: dt.date
    workday: bool
    note: str = ""
    row: int = 0

    @property
    def mark(self) -> str:
        return WORKDAY_MARK if self.workday else HOLIDAY_MARK


@dataclass(frozen=True)
class Arrangement:
    """A year's holidays and adjusted working days, checked and ready to apply."""

    year: int
    entries: tuple[Entry, ...]

    @property
    def holidays(self) -> list[dt.date]:
        return [e.day for e in self.entries if not e.workday]

    @property
    def workdays(self) -> list[dt.date]:
        return [e.day for e in self.entries if e.workday]

    def as_text(self) -> str:
        """The rows as CSV text that ``parse_text`` reads back (the preview's apply form)."""
        return rows_csv(self.entries, header=False)


# Reading ---------------------------------------------------------------------------


def _reject(row: int, key: str, **params) -> CalendarRejected:
    return CalendarRejected([ImportProblem(row, _(key, **params))])


def parse_date(text: str) -> dt.date | None:
    text = text.strip()
    match = _DATE.fullmatch(text) or _COMPACT_DATE.fullmatch(text)
    if not match:
        return None
    try:
        return dt.date(*(int(part) for part in match.groups()))
    except ValueError:
        return None


def parse_kind(text: str) -> bool | None:
    """True for an adjusted working day, False for a day off, None if the word is unknown."""
    word = text.strip().casefold()
    if word in WORKDAY_WORDS:
        return True
    if word in HOLIDAY_WORDS:
        return False
    return None


def check_year(year) -> int:
    try:
        value = int(year)
    except (TypeError, ValueError):
        value = 0
    if not MIN_YEAR <= value <= MAX_YEAR:
        raise _reject(FILE_ROW, "calendar.errors.bad_year", low=MIN_YEAR, high=MAX_YEAR)
    return value


def _cells(cells: list[str]) -> list[str]:
    # Rows typed by hand: "2027-01-01 休" or "2027-01-01，休" are one cell to the CSV reader.
    if len(cells) == 1:
        cells = _LOOSE_SEPARATORS.split(cells[0].strip(), maxsplit=2)
    while cells and not cells[-1]:
        cells = cells[:-1]
    return cells


def _is_header(cells: list[str]) -> bool:
    # Column titles ("日期", "date") have no digits; a mistyped date does, and is reported.
    return not any(char.isdigit() for char in cells[0]) and (
        len(cells) < 2 or parse_kind(cells[1]) is None)


def arrangement(records: list[tuple[int, list[str]]], year: int | None = None) -> Arrangement:
    """Check numbered rows of cells; ``year`` None takes the year of the first good date."""
    rows = [(number, _cells(cells)) for number, cells in records]
    rows = [(number, cells) for number, cells in rows if cells]
    if rows and _is_header(rows[0][1]):
        rows = rows[1:]
    if not rows:
        raise _reject(FILE_ROW, "calendar.errors.no_rows")
    if len(rows) > MAX_ROWS:
        raise _reject(FILE_ROW, "calendar.errors.too_many_rows", max=MAX_ROWS)
    if year is not None:
        year = check_year(year)
    else:
        year = next((d.year for _n, cells in rows if (d := parse_date(cells[0]))), None)
    problems: list[ImportProblem] = []
    entries: list[Entry] = []
    seen: dict[dt.date, int] = {}
    for number, cells in rows:
        found = []
        day = parse_date(cells[0])
        if day is None:
            found.append(_("calendar.errors.bad_date", value=cells[0][:40]))
        elif day.year != year:
            found.append(_("calendar.errors.other_year", day=day.isoformat(), year=year))
        elif day in seen:
            found.append(_("calendar.errors.duplicate", day=day.isoformat(), row=seen[day]))
        kind = parse_kind(cells[1]) if len(cells) > 1 else None
        if len(cells) < 2 or not cells[1]:
            found.append(_("calendar.errors.missing_kind"))
        elif kind is None:
            found.append(_("calendar.errors.unknown_kind", value=cells[1][:20]))
        note = export.from_csv_text(cells[2]) if len(cells) > 2 else ""
        if len(note) > NOTE_MAX_LENGTH:
            found.append(_("calendar.errors.long_note", length=len(note), limit=NOTE_MAX_LENGTH))
        if len(cells) > 3 and any(cells[3:]):
            found.append(_("calendar.errors.extra_cells", value=" ".join(cells[3:])[:40]))
        if found:
            problems.extend(ImportProblem(number, message) for message in found)
            continue
        seen[day] = number
        entries.append(Entry(day, kind, note, number))
    if problems:
        raise CalendarRejected(problems)
    return Arrangement(check_year(year), tuple(sorted(entries, key=lambda e: e.day)))


def parse_file(filename: str, content: bytes, year: int | None = None) -> Arrangement:
    """A CSV (UTF-8 with or without BOM, or GBK from Excel) or XLSX file of one year's rows."""
    try:
        records = importer.read_records(filename, content)
    except ImportFailed as failure:
        raise CalendarRejected(failure.problems) from None
    return arrangement(records, year)


def parse_text(text: str, year: int | None = None) -> Arrangement:
    """Rows typed (or pasted) on the page, one a line."""
    if len(text) > MAX_TEXT:
        raise _reject(FILE_ROW, "calendar.errors.too_many_rows", max=MAX_ROWS)
    if not text.strip():
        raise _reject(FILE_ROW, "calendar.errors.no_rows")
    return parse_file("typed.csv", text.encode("utf-8"), year)


# What a year changes ---------------------------------------------------------------


@dataclass(frozen=True)
class DeadlineChange:
    problem_id: str
    ledger_no: str | None
    old_deadline: str
    deadline: str
    provisional: bool
    original_deadline: str | None  # None: the original deadline stays as it is

    @property
    def moved(self) -> bool:
        return self.old_deadline != self.deadline


@dataclass(frozen=True)
class Applied:
    year: int
    holidays: int
    workdays: int
    changes: list[DeadlineChange]

    @property
    def moved(self) -> list[DeadlineChange]:
        return [change for change in self.changes if change.moved]


def _provisional_open_problems(db) -> list[dict]:
    open_states = ", ".join(f"'{state}'" for state in states.OPEN_STATES)
    return list(db.query(
        "SELECT id, ledger_no, status, deadline, original_deadline, deadline_provisional"
        f" FROM problems WHERE deadline_provisional = 1 AND status IN ({open_states})"
        " ORDER BY ledger_no, id"
    ))


def deadline_changes(db: sqlite_utils.Database, calendar: WorkCalendar) -> list[DeadlineChange]:
    """What ``calendar`` makes of every open problem's provisional deadline.

    Lists the problems whose deadline or provisional flag would change.
    """
    changes = []
    for problem in _provisional_open_problems(db):
        events = db.execute(
            "SELECT kind, at, data FROM problem_events WHERE problem_id = ? ORDER BY at, rowid",
            [problem["id"]],
        ).fetchall()
        replay = deadlines.deadline_from_events(
            calendar, [(kind, at, json.loads(data)) for kind, at, data in events]
        )
        if replay is None:
            continue  # no event started a deadline: nothing to compute it from
        deadline = replay.deadline.isoformat()
        original = None
        if replay.original_was_provisional and replay.original.isoformat() != (
            problem["original_deadline"]
        ):
            original = replay.original.isoformat()
        if deadline == problem["deadline"] and replay.provisional and original is None:
            continue
        changes.append(DeadlineChange(problem["id"], problem["ledger_no"], problem["deadline"],
                                      deadline, replay.provisional, original))
    return changes


def preview(db: sqlite_utils.Database, entered: Arrangement) -> list[DeadlineChange]:
    """The deadlines entering this year would change, without writing anything."""
    calendar = WorkCalendar.load(db).with_year(entered.year, entered.holidays, entered.workdays)
    return deadline_changes(db, calendar)


def apply_year(db: sqlite_utils.Database, entered: Arrangement, actor_id: int | None,
               source: str) -> Applied:
    """Enter the year and recompute provisional deadlines, inside the caller's write
    transaction (so a failure leaves nothing behind). ``actor_id`` None: the command line."""
    if not db.in_transaction:
        raise importer.NotInTransaction()
    before = _audit_values(db, entered.year)
    set_year(db, entered.year, entered.holidays, entered.workdays,
             notes={e.day: e.note for e in entered.entries})
    db.execute(
        "INSERT INTO calendar_years (year, holidays, workdays, entered_by, entered_at, source)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(year) DO UPDATE SET holidays = excluded.holidays,"
        " workdays = excluded.workdays, entered_by = excluded.entered_by,"
        " entered_at = excluded.entered_at, source = excluded.source",
        [entered.year, len(entered.holidays), len(entered.workdays), actor_id, now_iso(),
         source[:200]],
    )
    changes = deadline_changes(db, WorkCalendar.load(db))
    for change in changes:
        update = {"deadline": change.deadline, "deadline_provisional": int(change.provisional),
                  "updated_at": now_iso()}
        if change.original_deadline:
            update["original_deadline"] = change.original_deadline
        if change.moved:
            problem = db["problems"].get(change.problem_id)
            workflow.append_event(
                db, problem, "deadline_recomputed", actor_id, None,
                _("calendar.event_note", year=entered.year, old=change.old_deadline,
                  new=change.deadline),
                {"old_deadline": change.old_deadline, "deadline": change.deadline,
                 "provisional": change.provisional, "year": entered.year},
            )
        db["problems"].update(change.problem_id, update)
    after = {**_audit_values(db, entered.year),
             "recomputed": sum(1 for change in changes if change.moved)}
    audit.record(db, actor_id, "enter", "calendar", entered.year, label=str(entered.year),
                 old=before, new=after)
    return Applied(entered.year, len(entered.holidays), len(entered.workdays), changes)


def _audit_values(db, year: int) -> dict | None:
    """A year's entered arrangement as the audit trail keeps it (None: nothing entered)."""
    source, entries = year_entries(db, year)
    if source != "entered":
        return None
    record = db.execute("SELECT source FROM calendar_years WHERE year = ?", [year]).fetchone()
    return {"holidays": [e.day.isoformat() for e in entries if not e.workday],
            "workdays": [e.day.isoformat() for e in entries if e.workday],
            "source": record[0] if record else ""}


# What the calendar knows -----------------------------------------------------------


def entered_years(db: sqlite_utils.Database) -> list[dict]:
    return list(db.query(
        "SELECT cy.year, cy.holidays, cy.workdays, cy.entered_at, cy.source,"
        " u.display_name AS entered_by_name FROM calendar_years cy"
        " LEFT JOIN users u ON u.id = cy.entered_by ORDER BY cy.year DESC"
    ))


def _entered(db, year: int) -> bool:
    return bool(
        db.execute("SELECT 1 FROM calendar_years WHERE year = ?", [year]).fetchone()
        or db.execute("SELECT 1 FROM calendar_days WHERE day LIKE ? LIMIT 1",
                      [f"{year}-%"]).fetchone()
    )


def year_known(db: sqlite_utils.Database, year: int) -> bool:
    """Whether deadlines in ``year`` are final: the package or an entry knows the year."""
    return package_knows(year) or _entered(db, year)


def package_years(until: int) -> tuple[int, int] | None:
    """The first and last year the bundled package knows (up to ``until``)."""
    known = [year for year in range(2004, until + 1) if package_knows(year)]
    return (known[0], known[-1]) if known else None


def missing_year(db: sqlite_utils.Database, today: dt.date) -> int | None:
    """The year an administrator should enter now: this year if unknown, and from
    1 November next year."""
    if not year_known(db, today.year):
        return today.year
    if today.month >= 11 and not year_known(db, today.year + 1):
        return today.year + 1
    return None


def year_entries(db: sqlite_utils.Database, year: int) -> tuple[str, list[Entry]]:
    """A year's entries and where they come from: "entered", "package" or "none"."""
    rows = db.execute(
        "SELECT day, is_workday, note FROM calendar_days WHERE day LIKE ? ORDER BY day",
        [f"{year}-%"],
    ).fetchall()
    if rows:
        return "entered", [Entry(dt.date.fromisoformat(day), bool(work), note or "")
                           for day, work, note in rows]
    if package_knows(year):
        holidays, workdays = package_entries(year)
        entries = [Entry(day, False) for day in holidays] + [Entry(day, True) for day in workdays]
        return "package", sorted(entries, key=lambda e: e.day)
    return "none", []


def rows_csv(entries, header: bool = True) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if header:
        writer.writerow(EXPORT_HEADER)
    for entry in entries:
        writer.writerow([entry.day.isoformat(), entry.mark,
                         *([export.csv_text(entry.note)] if entry.note else [])])
    return out.getvalue()


def export_csv(db: sqlite_utils.Database, year: int) -> bytes:
    """A year's entries as a CSV file that imports back (UTF-8 with a BOM, for Excel)."""
    _source, entries = year_entries(db, year)
    return ("\ufeff" + rows_csv(entries)).encode("utf-8")
