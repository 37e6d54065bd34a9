"""Exporting the ledger: the current filter as XLSX or CSV, in the columns offices keep.

Both read through a connection of their own, ``CHUNK`` rows at a time, each
chunk in a short read transaction of its own (``records``: no transaction
stays open while the client downloads, so the WAL can be checkpointed), so
memory stays flat however many rows there are:

* CSV is written and sent chunk by chunk (UTF-8 with a BOM, which Excel needs
  to read Chinese);
* XLSX is written as it is sent: the sheet's XML, row by row, into a zip
  entry compressed on the fly (``xlsx.chunks``), so the first bytes leave at
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
from collections.abc import Iterator
from dataclasses import dataclass

from server import areas, authz, masking
from server.db.dialect import Dialect
from server.i18n import gettext as _
from server.ledger import deadlines, joint, queries, reasons
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
    Column("return_reason", 10),
    Column("extension_reason", 10),
    Column("merged_into", LEDGER_NO_WIDTH),
    Column("resident", 8),
    Column("resident_phone", 12.5),
)


def _select(dialect: Dialect) -> str:
    return (
        "SELECT p.id, p.ledger_no, p.source, p.found_at, p.area_id, a.name AS area_name, p.place,"
        " p.description, c.name AS category_name, p.lead_unit_id, un.name AS unit_name,"
        f" {joint.export_sql(dialect)},"
        " p.accepted_at, p.dispatched_at, p.closed_at, p.deadline, p.original_deadline,"
        " p.deadline_provisional, p.closed_on_time, p.supervision, p.supervision_note,"
        " p.status, p.outcome, p.callback_reached, p.callback_solved, p.satisfaction,"
        " p.return_visit_result, p.closure_kind, p.closure_reason, p.resident_name,"
        " p.reject_reason_code, p.return_reason_code, p.extension_reason_code,"
        " p.explained_reason_code,"
        " p.resident_phone,"
        " (SELECT o.ledger_no FROM problems o WHERE o.id = p.merged_into) AS merged_into_no,"
        " (SELECT e.at || ' ' || e.note FROM problem_events e WHERE e.problem_id = p.id"
        "  AND e.kind = 'progress' ORDER BY e.at DESC, e.rowid DESC LIMIT 1) AS progress,"
        " (SELECT e.note FROM problem_events e WHERE e.problem_id = p.id"
        "  AND e.kind = 'reply' ORDER BY e.at DESC, e.rowid DESC LIMIT 1) AS reply_note"
    )


def _events_query(dialect: Dialect, ids: list[str]) -> tuple[str, list]:
    """The events a chunk's rows need beyond the problems table (extensions granted, the
    reason for not accepting), read once per chunk for the rows that can have them."""
    listed, id_list = dialect.in_list("problem_id", ids)
    return (
        f"SELECT problem_id, kind, note, data FROM problem_events WHERE {listed}"
        " AND kind IN ('approve_extension', 'approve_extension_leader', 'reject')"
        " ORDER BY problem_id, at, rowid", [id_list])


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
    # An office's approval that waits for a leader has no extra_days: not granted yet.
    granted = [event for event in (json.loads(data) for kind, _note, data in events
                                   if kind in deadlines.EXTENSION_EVENTS)
               if event.get("extra_days")]
    if not granted:
        return ""
    return _("export.extended", count=len(granted), deadline=granted[-1].get("deadline", ""),
             days=sum(int(event.get("extra_days", 0)) for event in granted))


def _chosen(row: dict, list_name: str, labels: dict[tuple[str, str], str]) -> str:
    """The label of the latest reason the problem took from a list (reasons.py)."""
    code = row[f"{list_name}_reason_code"]
    return labels.get((list_name, code), code) if code else ""


def _reason(row: dict, events: list[tuple[str, str, str]],
            labels: dict[tuple[str, str], str]) -> str:
    """Why the problem was not accepted (the reason chosen and the reject's note), or the
    explanation it was closed with (解释说明办结)."""
    if row["status"] == "rejected":
        notes = [note for kind, note, _data in events if kind == "reject"]
        parts = (_chosen(row, "reject", labels), notes[-1] if notes else "")
    elif row["closure_kind"] == "explained":
        parts = (_chosen(row, "explained", labels), row["closure_reason"] or "")
    else:
        return ""
    return "：".join(part for part in parts if part)


def records(db, user: authz.User, f: queries.Filter) -> Iterator[list]:
    """The export rows for this filter, in the ledger's order (dates as date/datetime values).

    Read in chunks of ``CHUNK`` rows, each in its own short read transaction
    (``db.snapshot()`` around its queries, the cursors drained and
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
        f"{_select(db.dialect)}{keys}, p.rowid AS sort_rowid FROM (SELECT p.rowid AS id"
        f" FROM problems p{indexed} WHERE {where} AND ",
        f" ORDER BY {order} LIMIT ?) AS chunk JOIN problems p ON p.rowid = chunk.id"
        f" {queries.JOINS} ORDER BY {order}",
    )
    unit_names = dict(db.execute("SELECT id, name FROM units").fetchall())
    reason_labels = reasons.labels(db)
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
            yield _values(seq, row, events.get(row["id"], []), unit_names, reason_labels,
                          today, user)
        if len(chunk) < wanted:
            return
        last = chunk[-1][-(len(columns) + 1):]


def _values(seq: int, row: dict, events: list[tuple[str, str, str]],
            unit_names: dict[int, str], reason_labels: dict[tuple[str, str], str],
            today: dt.date, user: authz.User) -> list:
    """One problem's export row, in the order of ``COLUMNS``."""
    overdue_now = deadlines.is_overdue(row, today)
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
        joint.export_cell(row["joint_parts"], unit_names),
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
        _reason(row, events, reason_labels),
        _chosen(row, "return", reason_labels),
        _chosen(row, "extension", reason_labels),
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
        return f.drive_clause(db.dialect)
    if db.dialect.plans_itself:
        return ""
    plan = db.execute(
        f"EXPLAIN QUERY PLAN SELECT p.rowid FROM problems p WHERE {where}"
        f" ORDER BY {queries.order_by(f)}", params,
    ).fetchall()
    if not any(parent == 0 and "ORDER BY" in detail for _id, parent, _n, detail in plan):
        return ""  # read in the sort order already
    matches = db.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM problems p WHERE {where} LIMIT ?) AS found",
        [*params, SORTED_READ_MAX + 1],
    ).fetchone()[0]
    return f" {db.dialect.index_hint(queries.SORT_INDEXES[f.sort])}" if (
        matches > SORTED_READ_MAX) else ""


def _read_chunk(db, select: tuple[str, str], params: list, segments: list[tuple[str, list]],
                limit: int) -> tuple[list[str], list[tuple], dict[str, list[tuple]]]:
    """Up to ``limit`` rows of ``select`` with each segment's condition in turn (between
    its two parts), and the events (``_events_query``) of those that can have them, by problem
    id: in one read transaction, so each row and its events agree.

    The transaction ends before this returns (unless the caller had one open:
    then the rows are read in it). Each cursor is read to its end and closed.
    """
    names: list[str] = []
    rows: list[tuple] = []
    events: dict[str, list[tuple]] = {}
    with db.snapshot():
        for condition, values in segments:
            cursor = db.execute(f"{select[0]}{condition}{select[1]}",
                                [*params, *values, limit - len(rows)])
            try:
                names = [column[0] for column in cursor.description]
                rows += cursor.fetchall()
            finally:
                cursor.close()
            if len(rows) >= limit:
                break
        if rows:
            events = _chunk_events(db, names, rows)
    return names, rows, events


def _chunk_events(db, names: list[str], rows: list[tuple]) -> dict[str, list[tuple]]:
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
    cursor = db.execute(*_events_query(db.dialect, ids))
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
        return [("1 = 1", [])]
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
