"""Exporting the ledger: the current filter as XLSX or CSV, in the columns offices keep.

Both read through a connection of their own, ``CHUNK`` rows at a time, each
chunk in a short read transaction of its own (``records``: no transaction
stays open while the client downloads, so the WAL can be checkpointed), so
memory stays flat however many rows there are:

* CSV is written and sent chunk by chunk (UTF-8 with a BOM, which Excel needs
  to read Chinese);
* XLSX is written as it is sent: the sheet's XML, row by row, into a zip
  entry compressed on the fly (``xlsx_chunks``), so the first bytes leave at
  once and nothing waits for the whole workbook. It is laid out to be handed
  up: a heading (scope, filters, time of export) above a frozen, filterable
  header row, column widths chosen up front from each column's kind, wrapped
  text, A4 landscape fitted to the page width with the header row on every
  printed page.

Both carry the same columns (``COLUMNS``). Always within the user's
``authz.problem_scope`` (the same query as the ledger page). A resident's phone
number is shown to those who see it on the problem's page
(``authz.may_see_resident_phone``: the office, which makes the callbacks, and
the lead unit's handlers); everyone else gets it masked, 138****5678.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from math import ceil
from xml.sax.saxutils import escape

from server import areas, authz, masking
from server.i18n import gettext as _
from server.ledger import queries, workflow
from server.timeutil import LOCAL_TZ, parse_iso, utcnow

CHUNK = 1000
MAX_ROWS = 200_000
SORTED_READ_MAX = 20_000  # the most matches each chunk may read and sort (see _drive)

# XLSX column widths are in Excel's unit, about one digit of the default font; a Chinese
# character takes about two. The sheet is written as it streams, so widths are chosen
# from each column's kind, not measured from the data: dates and numbers get the width
# their format needs (too narrow and they show as ###), text is wrapped within a width
# that keeps the printed page readable.
DATE_WIDTH = 11  # 2026-03-13
DATETIME_WIDTH = 16.5  # 2026-03-01 10:30
LEDGER_NO_WIDTH = 15.5  # ZF-2026-000100


@dataclass(frozen=True)
class Column:
    name: str  # the header is export.col.<name>
    width: float  # in the XLSX


COLUMNS = (
    Column("seq", 7),  # up to MAX_ROWS: six digits
    Column("ledger_no", LEDGER_NO_WIDTH),
    Column("source", 9.5),
    Column("found_at", DATETIME_WIDTH),
    Column("place", 20),
    Column("description", 26),
    Column("category", 7.5),
    Column("accepted_at", DATETIME_WIDTH),
    Column("unit", 10),
    Column("helper_units", 10),
    Column("dispatched_at", DATETIME_WIDTH),
    Column("original_deadline", DATE_WIDTH),
    Column("extension", 13.5),
    Column("deadline", DATE_WIDTH),
    Column("deadline_provisional", 5.5),
    Column("overdue", 9),
    Column("supervision", 11),
    Column("progress", 16),
    Column("result", 13),
    Column("closed_at", DATETIME_WIDTH),
    Column("closure_kind", 8.5),
    Column("callback", 12),
    Column("satisfaction", 9),
    Column("status", 8.5),
    Column("reason", 12),
    Column("merged_into", LEDGER_NO_WIDTH),
    Column("resident", 8),
    Column("resident_phone", 12.5),
)

_SELECT = (
    "SELECT p.id, p.ledger_no, p.source, p.found_at, p.area_id, a.name AS area_name, p.place,"
    " p.description, c.name AS category_name, p.lead_unit_id, un.name AS unit_name,"
    " p.helper_unit_ids,"
    " p.accepted_at, p.dispatched_at, p.closed_at, p.deadline, p.original_deadline,"
    " p.deadline_provisional, p.closed_on_time, p.supervision, p.supervision_note,"
    " p.status, p.outcome, p.callback_reached, p.callback_solved, p.satisfaction,"
    " p.return_visit_result, p.closure_kind, p.closure_reason, p.resident_name,"
    " p.resident_phone,"
    " (SELECT o.ledger_no FROM problems o WHERE o.id = p.merged_into) AS merged_into_no,"
    " (SELECT e.at || ' ' || e.note FROM problem_events e WHERE e.problem_id = p.id"
    "  AND e.kind = 'progress' ORDER BY e.at DESC, e.rowid DESC LIMIT 1) AS progress,"
    " (SELECT e.note FROM problem_events e WHERE e.problem_id = p.id"
    "  AND e.kind = 'reply' ORDER BY e.at DESC, e.rowid DESC LIMIT 1) AS reply_note"
)
# The events a chunk's rows need beyond the problems table (extensions granted, the reason
# for not accepting), read once per chunk for the rows that can have them.
_EVENTS = (
    "SELECT problem_id, kind, note, data FROM problem_events"
    " WHERE problem_id IN (SELECT value FROM json_each(?))"
    " AND kind IN ('approve_extension', 'reject') ORDER BY problem_id, at, rowid"
)


def headers() -> list[str]:
    return [_(f"export.col.{column.name}") for column in COLUMNS]


def _local(text: str | None) -> dt.datetime | None:
    return parse_iso(text).astimezone(LOCAL_TZ).replace(tzinfo=None) if text else None


def _date(text: str | None) -> dt.date | None:
    return dt.date.fromisoformat(text) if text else None


def _progress(text: str | None) -> str:
    if not text:
        return ""
    stamp, _sep, note = text.partition(" ")
    return f"{_local(stamp):%Y-%m-%d} {note}"


def _result(row: dict) -> str:
    if not row["outcome"]:
        return ""
    label = _(f"outcome.{row['outcome']}")
    return f"{label}：{row['reply_note']}" if row["reply_note"] else label


def _callback(row: dict) -> str:
    parts = []
    if row["callback_reached"] == 0:
        parts.append(_("export.callback_unreached"))
    elif row["callback_reached"] == 1:
        parts.append(_("export.callback_solved" if row["callback_solved"]
                       else "export.callback_unsolved"))
    if row["return_visit_result"]:
        parts.append(_(f"export.return_visit_{row['return_visit_result']}"))
    return "；".join(parts)


def _overdue(row: dict, overdue_now: bool) -> str:
    """超期 for an open problem past its deadline, 超期办结 for one closed after it."""
    if overdue_now:
        return _("export.overdue_open")
    if row["status"] == "closed" and row["closed_on_time"] == 0:
        return _("export.overdue_closed")
    return ""


def _supervision(row: dict) -> str:
    if row["supervision"] in (None, "none"):
        return ""
    label = _(f"supervision.{row['supervision']}")
    return f"{label}：{row['supervision_note']}" if row["supervision_note"] else label


def _extension(events: list[tuple[str, str, str]]) -> str:
    granted = [json.loads(data) for kind, _note, data in events if kind == "approve_extension"]
    if not granted:
        return ""
    return _("export.extended", count=len(granted), deadline=granted[-1].get("deadline", ""),
             days=sum(int(event.get("extra_days", 0)) for event in granted))


def _reason(row: dict, events: list[tuple[str, str, str]]) -> str:
    """Why the problem was not accepted (the reject's note), or the explanation it was
    closed with (解释说明办结)."""
    if row["status"] == "rejected":
        notes = [note for kind, note, _data in events if kind == "reject"]
        return notes[-1] if notes else ""
    if row["closure_kind"] == "explained":
        return row["closure_reason"] or ""
    return ""


def _helper_units(text: str | None, unit_names: dict[int, str]) -> str:
    if not text or text == "[]":
        return ""
    return "、".join(unit_names.get(unit_id, str(unit_id)) for unit_id in json.loads(text))


def records(db, user: authz.User, f: queries.Filter) -> Iterator[list]:
    """The export rows for this filter, in the ledger's order (dates as date/datetime values).

    Read in chunks of ``CHUNK`` rows, each in its own short read transaction
    (``BEGIN`` … ``COMMIT`` around its queries, the cursors drained and
    closed), and formatted and yielded only after that transaction has ended:
    however slowly the client downloads, no transaction is open between chunks,
    so checkpoints are not held back and the WAL does not grow. A chunk starts
    after the sort key (``queries.order_by``: the sort columns, then the
    rowid) of the previous chunk's last row (keyset pagination, ``_after``), so
    every chunk is a seek into the order, not a re-read of the rows before it,
    and nothing but one chunk is held in memory. For a database that does not
    change meanwhile the rows and their order are exactly those of one query
    (``ORDER BY … LIMIT MAX_ROWS``).

    Written meanwhile: each chunk sees the database as it is when the chunk is
    read, not as it was when the export started. A problem whose sort key
    changes between chunks (a deadline extended, a number given, a state
    changed while sorted by state) may be left out or come twice, once on each
    side of the position reached; a new problem appears if it sorts after that
    position and is within the user's scope and filter (a search's matches and
    the rows two filters have in common are found once, at the start). That is
    acceptable for an office spreadsheet of a ledger in use, which is out of
    date as soon as it is written; a consistent snapshot would need the one
    long read transaction this avoids. Sequence numbers (序号) are given as rows
    are sent, so they stay consecutive whatever moves.
    """
    queries.choose_drive(db, user, f)  # a narrow filter drives the read, as on the page
    where, params = queries.conditions(db, user, f)
    indexed = _drive(db, f, where, params)
    today = queries.local_today()
    columns = queries.SORTS[f.sort]
    keys = "".join(f", {column} AS sort_key_{n}" for n, column in enumerate(columns))
    order = queries.order_by(f)
    # A chunk's rows are found (and, if the plan does, sorted) by rowid alone; their
    # columns, events included, are read for those rows only.
    select = (  # the segment's condition goes between the two
        f"{_SELECT}{keys}, p.rowid AS sort_rowid FROM (SELECT p.rowid AS id"
        f" FROM problems p{indexed} WHERE {where} AND ",
        f" ORDER BY {order} LIMIT ?) AS chunk JOIN problems p ON p.rowid = chunk.id"
        f" {queries.JOINS} ORDER BY {order}",
    )
    unit_names = dict(db.execute("SELECT id, name FROM units").fetchall())
    area_paths = areas.path_names(db)
    seq = 0
    last = None  # the sort key (sort columns, rowid) of the last row read
    while seq < MAX_ROWS:
        wanted = min(CHUNK, MAX_ROWS - seq)
        segments = _after(columns, last, f.dir == "desc")
        names, chunk, events = _read_chunk(db, select, params, segments, wanted)
        for values in chunk:
            row = dict(zip(names, values, strict=True))
            seq += 1
            row["area_path"] = area_paths.get(row["area_id"], (row["area_name"],))[0]
            yield _values(seq, row, events.get(row["id"], []), unit_names, today, user)
        if len(chunk) < wanted:
            return
        last = chunk[-1][-(len(columns) + 1):]


def _values(seq: int, row: dict, events: list[tuple[str, str, str]],
            unit_names: dict[int, str], today: dt.date, user: authz.User) -> list:
    """One problem's export row, in the order of ``COLUMNS``."""
    overdue_now = workflow.is_overdue(row, today)
    status = _(f"status.{row['status']}")
    return [
        seq,
        row["ledger_no"] or "",
        _(f"ledger.source.{row['source']}") if row["source"] in queries.SOURCES
        else row["source"],
        _local(row["found_at"]),
        f"{row['area_path'] or row['area_name']} {row['place']}".strip(),
        row["description"],
        row["category_name"] or "",
        _local(row["accepted_at"]),
        row["unit_name"] or "",
        _helper_units(row["helper_unit_ids"], unit_names),
        _local(row["dispatched_at"]),
        _date(row["original_deadline"]),
        _extension(events),
        _date(row["deadline"]),
        _("export.provisional") if row["deadline_provisional"] and row["deadline"] else "",
        _overdue(row, overdue_now),
        _supervision(row),
        _progress(row["progress"]),
        _result(row),
        _local(row["closed_at"]),
        _(f"event.close_{row['closure_kind']}") if row["closure_kind"] else "",
        _callback(row),
        _(f"satisfaction.{row['satisfaction']}") if row["satisfaction"] else "",
        f"{status}（{_('problem.overdue')}）" if overdue_now else status,
        _reason(row, events),
        row["merged_into_no"] or "",
        row["resident_name"],
        masking.resident_phone(user, row),
    ]


def _drive(db, f: queries.Filter, where: str, params: list) -> str:
    """How the chunks read ``problems p``: as the page does, unless that sorts many rows.

    A narrow filter drives the read (``choose_drive``: at most NARROW_MAX rows, read
    and sorted again for each chunk). Otherwise SQLite plans; when its plan reads the
    matches through a filter's index and sorts them, each chunk reads and sorts every
    match after the last chunk again, which is fine for a few thousand but quadratic
    for more: above SORTED_READ_MAX matches the chunks read the sort order's index
    instead (as ``list_rows`` does for many matches), each a seek and a short read.
    """
    if f.narrow:
        return f.drive_clause
    plan = db.execute(
        f"EXPLAIN QUERY PLAN SELECT p.rowid FROM problems p WHERE {where}"
        f" ORDER BY {queries.order_by(f)}", params,
    ).fetchall()
    if not any(parent == 0 and "ORDER BY" in detail for _id, parent, _n, detail in plan):
        return ""  # read in the sort order already
    matches = db.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM problems p WHERE {where} LIMIT ?)",
        [*params, SORTED_READ_MAX + 1],
    ).fetchone()[0]
    return f" INDEXED BY {queries.SORT_INDEXES[f.sort]}" if (
        matches > SORTED_READ_MAX) else ""


def _read_chunk(db, select: tuple[str, str], params: list, segments: list[tuple[str, list]],
                limit: int) -> tuple[list[str], list[tuple], dict[str, list[tuple]]]:
    """Up to ``limit`` rows of ``select`` with each segment's condition in turn (between
    its two parts), and the events (``_EVENTS``) of those that can have them, by problem
    id: in one read transaction, so each row and its events agree.

    The transaction ends before this returns (unless the caller had one open:
    then the rows are read in it). Each cursor is read to its end and closed.
    """
    conn = db.conn
    own = not conn.in_transaction
    names: list[str] = []
    rows: list[tuple] = []
    events: dict[str, list[tuple]] = {}
    if own:
        conn.execute("BEGIN")
    try:
        for condition, values in segments:
            cursor = conn.execute(f"{select[0]}{condition}{select[1]}",
                                  [*params, *values, limit - len(rows)])
            try:
                names = [column[0] for column in cursor.description]
                rows += cursor.fetchall()
            finally:
                cursor.close()
            if len(rows) >= limit:
                break
        if rows:
            events = _chunk_events(conn, names, rows)
    except BaseException:
        if own and conn.in_transaction:
            conn.rollback()
        raise
    if own:
        conn.commit()
    return names, rows, events


def _chunk_events(conn, names: list[str], rows: list[tuple]) -> dict[str, list[tuple]]:
    """(kind, note, data) of the extensions granted to and the rejection of the chunk's
    problems that can have them, oldest first, by problem id.

    Those are the rejected problems and the ones whose deadline is no longer the one
    first given (``original_deadline``, set at the first dispatch; an extension moves
    the deadline later). Reading the events of every problem with a deadline would
    read most of the events table.
    """
    at = {name: n for n, name in enumerate(names)}
    problem_id, status = at["id"], at["status"]
    deadline, original = at["deadline"], at["original_deadline"]
    ids = [row[problem_id] for row in rows
           if row[status] == "rejected" or row[deadline] != row[original]]
    events: dict[str, list[tuple]] = {}
    if not ids:
        return events
    cursor = conn.execute(_EVENTS, [json.dumps(ids)])
    try:
        for problem_id, kind, note, data in cursor.fetchall():
            events.setdefault(problem_id, []).append((kind, note, data))
    finally:
        cursor.close()
    return events


def _after(columns: tuple[str, ...], last: tuple | None,
           desc: bool) -> list[tuple[str, list]]:
    """Conditions (SQL, parameters) for the rows after the sort key ``last`` in the order
    ``columns…, p.rowid`` (all ascending, or all descending): disjoint segments, listed
    in that order, so reading each in the order until a chunk is full continues it.

    Segment ``j`` keeps the first ``j`` columns equal to ``last`` and takes the next
    column strictly after it, from the longest prefix (the ties of the last row) to
    none. NULLs are ordered as SQLite orders them (first when ascending, last when
    descending); ``c = v`` and ``c > v`` are never true for a NULL ``c``, so the NULLs
    are segments of their own: ``c IS NOT NULL`` after a NULL when ascending, ``c IS
    NULL`` after the values below ``v`` when descending. Each segment is a plain
    conjunction (equalities, then one range), which a sort index seeks to; an OR of them
    would make SQLite read and sort every remaining row for each chunk.
    """
    if last is None:
        return [("1", [])]
    *values, rowid = last
    segments = []
    for j in range(len(columns), -1, -1):
        prefix, params = [], []
        for column, value in zip(columns[:j], values[:j], strict=True):
            if value is None:
                prefix.append(f"{column} IS NULL")
            else:
                prefix.append(f"{column} = ?")
                params.append(value)
        if j == len(columns):
            nexts = [(f"p.rowid {'<' if desc else '>'} ?", [rowid])]
        else:
            column, value = columns[j], values[j]
            if value is None:
                nexts = [] if desc else [(f"{column} IS NOT NULL", [])]
            elif desc:
                nexts = [(f"{column} < ?", [value]), (f"{column} IS NULL", [])]
            else:
                nexts = [(f"{column} > ?", [value])]
        for condition, value_params in nexts:
            segments.append(("(" + " AND ".join([*prefix, condition]) + ")",
                             [*params, *value_params]))
    return segments


# The XLSX heading: what was exported, for whom, when ---------------------------------


def heading(db, user: authz.User, f: queries.Filter) -> list[str]:
    """The lines above the XLSX's header row: a title naming the scope, then the scope and
    the time of export, then the active filters in words.

    The filters are those the export applies: a parameter that could not be used is
    named as ignored, as the ledger page does (an unknown area is found here; ``records``
    drops it too, in ``queries.conditions``).
    """
    scope = "、".join(name for name in authz.scope_names(user) if name)
    now = utcnow().astimezone(LOCAL_TZ)
    filters = _("export.heading.filters", filters=filter_summary(db, f))
    ignored = list(f.ignored)
    if f.area and queries.area_bounds(db, f.area) is None:
        ignored.append("area")
    if notice := queries.ignored_notice(dataclasses.replace(f, ignored=ignored)):
        filters = f"{filters}　{notice}"
    return [
        _("export.heading.title", scope=scope),
        _("export.heading.scope", scope=scope or _("export.heading.no_scope"),
          time=f"{now:%Y-%m-%d %H:%M}"),
        filters,
    ]


def _name_of(db, sql: str, value) -> str | None:
    row = db.execute(sql, [value]).fetchone()
    return row[0] if row else None


def filter_summary(db, f: queries.Filter) -> str:
    """The filter in words, as the ledger's filter form names its fields: 状态：办理中；…"""
    parts = []

    def add(name: str, value: str) -> None:
        parts.append(_("export.heading.filter", label=_(f"ledger.param.{name}"), value=value))

    if f.status:
        add("status", _(f"status.{f.status}"))
    # An unknown id still filters (it matches nothing) and is shown as it is; an unknown
    # area is ignored (see heading).
    if f.category is not None:
        add("category", _name_of(db, "SELECT name FROM categories WHERE id = ?", f.category)
            or str(f.category))
    if f.area and (area := _name_of(db, "SELECT name FROM areas WHERE code = ?", f.area)):
        add("area", area)
    if f.unit is not None:
        add("unit", _name_of(db, "SELECT name FROM units WHERE id = ?", f.unit) or str(f.unit))
    if f.source:
        add("source", _(f"ledger.source.{f.source}"))
    if f.urgency:
        add("urgency", _(f"urgency.{f.urgency}"))
    if f.overdue:
        add("overdue", _(f"common.{f.overdue}"))
    if f.supervision:
        add("supervision", _(f"supervision.{f.supervision}"))
    if f.reporter is not None:
        add("reporter", _name_of(db, "SELECT display_name FROM users WHERE id = ?", f.reporter)
            or str(f.reporter))
    for name in queries.DATE_FILTERS:
        start, end = getattr(f, f"{name}_from"), getattr(f, f"{name}_to")
        if start and end:
            add(name, _("export.heading.between", start=start, end=end))
        elif start:
            add(name, _("export.heading.since", start=start))
        elif end:
            add(name, _("export.heading.until", end=end))
    if f.q:
        parts.append(_("export.heading.search", q=f.q))
    return "；".join(parts) if parts else _("export.heading.no_filters")


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


# A spreadsheet opening a CSV runs a cell that starts with one of these as a formula
# (CSV injection): =HYPERLINK(…) in a resident's name would be live in the office's Excel.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value) -> str:
    """A cell's CSV text. A text (never a number or a date) that a spreadsheet would take
    for a formula is written after a single quote, as OWASP advises, so it shows as text."""
    text = _text(value)
    if isinstance(value, str) and text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def from_csv_text(text: str) -> str:
    """A text cell read back from a CSV this app wrote: without the quote ``csv_text`` put
    before a formula-like text."""
    if text.startswith("'") and text[1:].startswith(FORMULA_STARTS):
        return text[1:]
    return text


def csv_chunks(rows: Iterator[list]) -> Iterator[bytes]:
    """CSV bytes, UTF-8 with a BOM, one chunk per ``CHUNK`` rows.

    Every cell is quoted, so a separator inside a text (a comma, or the semicolon some
    locales' Excel splits on) never starts a new cell that could begin a formula.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL)
    buffer.write("\ufeff")
    writer.writerow(headers())
    for count, row in enumerate(rows, start=1):
        writer.writerow([csv_text(value) for value in row])
        if count % CHUNK == 0:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


# XLSX, written as it streams ---------------------------------------------------------
#
# A workbook is a zip of XML parts. The sheet is written row by row into a zip entry
# that zipfile compresses on the fly; written to a stream it cannot seek, zipfile
# puts each entry's sizes after its data (a data descriptor, as every streaming zip
# writer does), so every CHUNK rows the bytes so far go to the client. What depends
# on the number of rows (the autofilter's range) is written after the rows: it follows
# them in the sheet's XML, and the workbook part that names it is written last.

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_RELS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PACKAGE_RELS = "http://schemas.openxmlformats.org/package/2006/relationships"
_XML = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_EXCEL_EPOCH = dt.datetime(1899, 12, 30)
_DAY = dt.timedelta(days=1)
# Positions in cellXfs of _styles(). The table's cells are bordered and top-aligned, its
# text wrapped within the column.
_DATE_STYLE, _DATETIME_STYLE, _TEXT_STYLE, _NUMBER_STYLE = 1, 2, 3, 4
_HEADER_STYLE, _TITLE_STYLE, _NOTE_STYLE = 5, 6, 7
_TITLE_HEIGHT = 30  # points: the title's font is larger
# Characters XML 1.0 does not allow (phones can send them; Excel would call the file damaged).
_ILLEGAL_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_NOT_PLAIN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff&<>]")
_PAPER_A4 = 9


def _content_types() -> str:
    return (
        f"{_XML}<Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">"
        '<Default Extension="rels"'
        ' ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        '<Override PartName="/xl/styles.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/></Types>'
    )


def _static_parts() -> dict[str, str]:
    return {
        "[Content_Types].xml": _content_types(),
        "_rels/.rels": (
            f'{_XML}<Relationships xmlns="{_PACKAGE_RELS}"><Relationship Id="rId1"'
            f' Type="{_RELS}/officeDocument" Target="xl/workbook.xml"/></Relationships>'
        ),
        "xl/_rels/workbook.xml.rels": (
            f'{_XML}<Relationships xmlns="{_PACKAGE_RELS}">'
            f'<Relationship Id="rId1" Type="{_RELS}/worksheet" Target="worksheets/sheet1.xml"/>'
            f'<Relationship Id="rId2" Type="{_RELS}/styles" Target="styles.xml"/>'
            "</Relationships>"
        ),
        "xl/styles.xml": _styles(),
    }


def _workbook(sheet_name: str, header_row: int, last_row: int) -> str:
    """The workbook part: its one sheet, the autofilter's range and the print titles (the
    header row on every printed page)."""
    sheet = escape("'" + sheet_name.replace("'", "''") + "'")
    last_column = _COLUMN_LETTERS[-1]
    names = (
        f'<definedName name="_xlnm._FilterDatabase" localSheetId="0" hidden="1">'
        f"{sheet}!$A${header_row}:${last_column}${last_row}</definedName>"
        f'<definedName name="_xlnm.Print_Titles" localSheetId="0">'
        f"{sheet}!${header_row}:${header_row}</definedName>"
    )
    return (
        f'{_XML}<workbook xmlns="{_MAIN}" xmlns:r="{_RELS}"><sheets>'
        f'<sheet name="{escape(sheet_name, {chr(34): "&quot;"})}" sheetId="1" r:id="rId1"/>'
        f"</sheets><definedNames>{names}</definedNames></workbook>"
    )


def _styles() -> str:
    border = ' borderId="1" applyBorder="1"'
    top = '<alignment vertical="top"/>'
    return (
        f'{_XML}<styleSheet xmlns="{_MAIN}"><numFmts count="2">'
        '<numFmt numFmtId="164" formatCode="yyyy-mm-dd"/>'
        '<numFmt numFmtId="165" formatCode="yyyy-mm-dd hh:mm"/></numFmts>'
        '<fonts count="3"><font><sz val="11"/><name val="Calibri"/></font>'
        '<font><b/><sz val="11"/><name val="Calibri"/></font>'
        '<font><b/><sz val="16"/><name val="Calibri"/></font></fonts>'
        '<fills count="3"><fill><patternFill patternType="none"/></fill>'
        '<fill><patternFill patternType="gray125"/></fill>'
        '<fill><patternFill patternType="solid"><fgColor rgb="FFD9E1F2"/>'
        '<bgColor indexed="64"/></patternFill></fill></fills>'
        '<borders count="2"><border><left/><right/><top/><bottom/><diagonal/></border>'
        '<border><left style="thin"><color auto="1"/></left><right style="thin">'
        '<color auto="1"/></right><top style="thin"><color auto="1"/></top>'
        '<bottom style="thin"><color auto="1"/></bottom><diagonal/></border></borders>'
        '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/>'
        '</cellStyleXfs><cellXfs count="8">'
        '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
        f'<xf numFmtId="164" fontId="0" fillId="0"{border} xfId="0" applyNumberFormat="1"'
        f' applyAlignment="1">{top}</xf>'
        f'<xf numFmtId="165" fontId="0" fillId="0"{border} xfId="0" applyNumberFormat="1"'
        f' applyAlignment="1">{top}</xf>'
        f'<xf numFmtId="0" fontId="0" fillId="0"{border} xfId="0" applyAlignment="1">'
        '<alignment vertical="top" wrapText="1"/></xf>'
        f'<xf numFmtId="0" fontId="0" fillId="0"{border} xfId="0" applyAlignment="1">'
        '<alignment horizontal="center" vertical="top"/></xf>'
        f'<xf numFmtId="0" fontId="1" fillId="2"{border} xfId="0" applyFont="1"'
        ' applyFill="1" applyAlignment="1">'
        '<alignment horizontal="center" vertical="center" wrapText="1"/></xf>'
        '<xf numFmtId="0" fontId="2" fillId="0" borderId="0" xfId="0" applyFont="1"'
        ' applyAlignment="1"><alignment horizontal="center" vertical="center"/></xf>'
        '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0" applyAlignment="1">'
        '<alignment vertical="center"/></xf>'
        '</cellXfs><cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/>'
        "</cellStyles></styleSheet>"
    )


def _column_letters(index: int) -> str:
    """A, B, ... Z, AA, AB, ... for the 0-based column ``index``."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


_COLUMN_LETTERS = [_column_letters(index) for index in range(len(COLUMNS))]
_ROOM = [column.width - 0.5 for column in COLUMNS]  # less the cell's margins
_LINE_HEIGHT = 16  # points: a line of 11-point text in a Chinese font (Noto Sans CJK: 15.9)
_MAX_LINES = 25  # 400 points; Excel allows a row at most 409


def _sheet_start(heading_lines: list[str]) -> str:
    """The sheet's XML before its rows: fitted to the page, the rows above the first
    row of data frozen, the columns' widths; then the heading and the header row."""
    header_row = len(heading_lines) + 1
    first = f"A{header_row + 1}"
    cols = "".join(
        f'<col min="{n}" max="{n}" width="{column.width}" customWidth="1"/>'
        for n, column in enumerate(COLUMNS, start=1)
    )
    rows = []
    for number, line in enumerate(heading_lines, start=1):
        style = _TITLE_STYLE if number == 1 else _NOTE_STYLE
        height = f' ht="{_TITLE_HEIGHT}" customHeight="1"' if number == 1 else ""
        rows.append(f'<row r="{number}"{height}>{_cell(f"A{number}", line, style)}</row>')
    rows.append(_row(header_row, headers(), _HEADER_STYLE))
    return (
        f'{_XML}<worksheet xmlns="{_MAIN}" xmlns:r="{_RELS}">'
        '<sheetPr><pageSetUpPr fitToPage="1"/></sheetPr>'
        '<sheetViews><sheetView workbookViewId="0">'
        f'<pane ySplit="{header_row}" topLeftCell="{first}" activePane="bottomLeft"'
        ' state="frozen"/>'
        f'<selection pane="bottomLeft" activeCell="{first}" sqref="{first}"/>'
        "</sheetView></sheetViews>"
        f'<sheetFormatPr defaultRowHeight="{_LINE_HEIGHT}"/><cols>{cols}</cols><sheetData>'
        + "".join(rows)
    )


def _sheet_end(header_row: int, last_row: int) -> str:
    """The sheet's XML after its rows: the autofilter over the header and the rows, the
    title merged across the table, and the page: A4 landscape, as many pages high as it
    takes at the scale that fits the width, page numbers in the footer."""
    last_column = _COLUMN_LETTERS[-1]
    merged = (f'<mergeCells count="1"><mergeCell ref="A1:{last_column}1"/></mergeCells>'
              if header_row > 1 else "")
    footer = escape("&C" + _("export.page_footer"))
    return (
        f'</sheetData><autoFilter ref="A{header_row}:{last_column}{last_row}"/>{merged}'
        '<printOptions horizontalCentered="1"/>'
        '<pageMargins left="0.3" right="0.3" top="0.5" bottom="0.5" header="0.2"'
        ' footer="0.2"/>'
        f'<pageSetup paperSize="{_PAPER_A4}" orientation="landscape" fitToWidth="1"'
        ' fitToHeight="0"/>'
        f"<headerFooter><oddFooter>{footer}</oddFooter></headerFooter></worksheet>"
    )


def _cell(ref: str, value, text_style: int = _TEXT_STYLE) -> str:
    """One cell of the sheet's XML at ``ref`` (A1); an empty one keeps its style (the
    table's borders)."""
    if value is None or value == "":
        return f'<c r="{ref}" s="{text_style}"/>'
    if isinstance(value, str):
        return _text_cell(ref, value, text_style)
    if isinstance(value, dt.datetime):
        days = (value - _EXCEL_EPOCH) / _DAY
        return f'<c r="{ref}" s="{_DATETIME_STYLE}"><v>{days!r}</v></c>'
    if isinstance(value, dt.date):
        days = (value - _EXCEL_EPOCH.date()).days
        return f'<c r="{ref}" s="{_DATE_STYLE}"><v>{days}</v></c>'
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f'<c r="{ref}" s="{_NUMBER_STYLE}"><v>{value!r}</v></c>'
    return _text_cell(ref, str(value), text_style)


def _text_cell(ref: str, text: str, style: int) -> str:
    if _NOT_PLAIN.search(text):
        text = escape(_ILLEGAL_XML.sub("", text))
    # Without xml:space="preserve" leading and trailing spaces would be dropped.
    if text and (text[0].isspace() or text[-1].isspace()):
        return (f'<c r="{ref}" s="{style}" t="inlineStr"><is><t xml:space="preserve">{text}'
                "</t></is></c>")
    return f'<c r="{ref}" s="{style}" t="inlineStr"><is><t>{text}</t></is></c>'


def _lines(text: str, room: float) -> int:
    """About how many lines ``text`` takes wrapped in ``room`` width units: a Chinese
    character (three bytes in UTF-8) counts two units, anything else one."""
    if "\n" not in text:
        return ceil((len(text) + len(text.encode())) / 2 / room)
    return sum(max(1, ceil((len(part) + len(part.encode())) / 2 / room))
               for part in text.split("\n"))


def _row(number: int, values: list, text_style: int = _TEXT_STYLE) -> str:
    """One row of the sheet's XML, with a height that shows its wrapped text in full.

    Excel fits a row's height to its wrapped text when it shows the row (a height that
    is not ``customHeight`` is only a hint); LibreOffice and WPS show the height the
    file gives. So the file gives an estimate (``_lines``), which need not be exact.
    """
    cells = []
    add = cells.append
    lines = 1
    for column, room, value in zip(_COLUMN_LETTERS, _ROOM, values, strict=True):
        # The common cases inline, text first: this runs for every cell of the export.
        kind = value.__class__
        if kind is str and value:
            add(_text_cell(f"{column}{number}", value, text_style))
            if len(value) * 2 > room:  # else one line for sure
                lines = max(lines, _lines(value, room))
        elif value is None or kind is str:
            add(f'<c r="{column}{number}" s="{text_style}"/>')
        elif kind is dt.datetime:
            days = (value - _EXCEL_EPOCH) / _DAY
            add(f'<c r="{column}{number}" s="{_DATETIME_STYLE}"><v>{days!r}</v></c>')
        else:
            add(_cell(f"{column}{number}", value, text_style))
    height = f' ht="{min(lines, _MAX_LINES) * _LINE_HEIGHT}"' if lines > 1 else ""
    return f'<row r="{number}"{height}>{"".join(cells)}</row>'


class _Outbox:
    """A file that only collects what is written, for the caller to send on."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def xlsx_chunks(rows: Iterator[list], heading_lines: list[str]) -> Iterator[bytes]:
    """An XLSX workbook of one sheet (``heading_lines``, the headers, then ``rows``), sent
    every CHUNK rows."""
    outbox = _Outbox()
    header_row = len(heading_lines) + 1
    with zipfile.ZipFile(outbox, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, text in _static_parts().items():
            archive.writestr(name, text)
        with archive.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as sheet:
            sheet.write(_sheet_start(heading_lines).encode())
            lines = []
            count = 0
            for count, row in enumerate(rows, start=1):
                lines.append(_row(header_row + count, row))
                if count % CHUNK == 0:
                    sheet.write("".join(lines).encode())
                    lines.clear()
                    if data := outbox.take():  # empty while the compressor fills a block
                        yield data
            sheet.write(("".join(lines) + _sheet_end(header_row, header_row + count)).encode())
        archive.writestr("xl/workbook.xml",
                         _workbook(_("problem.title"), header_row, header_row + count))
    yield outbox.take()
