"""Exporting the ledger: the current filter as XLSX or CSV, in the usual ledger columns.

Both read through a connection of their own, a cursor fetched ``CHUNK`` rows
at a time, so memory stays flat however many rows there are:

* CSV is written and sent chunk by chunk (UTF-8 with a BOM, which Excel needs
  to read Chinese);
* XLSX is written by openpyxl in write-only mode (rows go to a temporary file
  as they are appended) into a ``SpooledTemporaryFile``, then sent in chunks.

Always within the user's ``authz.problem_scope`` (the same query as the
ledger page). Residents' phone numbers are shown only to roles with the
``resident_phone.view`` permission (the office, which makes the callbacks);
everyone else gets them masked, 138****5678.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import tempfile
from collections.abc import Iterator

from openpyxl import Workbook

from server import authz, ledger_query
from server.i18n import gettext as _
from server.timeutil import LOCAL_TZ, parse_iso

CHUNK = 1000
MAX_ROWS = 200_000
COLUMNS = (
    "seq", "ledger_no", "source", "found_at", "place", "description", "category", "unit",
    "deadline", "progress", "result", "callback", "satisfaction", "status", "resident",
    "resident_phone",
)

_SELECT = (
    "SELECT p.ledger_no, p.source, p.found_at, a.name AS area_name, p.place, p.description,"
    " c.name AS category_name, un.name AS unit_name, p.deadline, p.status, p.outcome,"
    " p.callback_reached, p.callback_solved, p.satisfaction, p.return_visit_result,"
    " p.resident_name, p.resident_phone,"
    " (SELECT e.at || ' ' || e.note FROM problem_events e WHERE e.problem_id = p.id"
    "  AND e.kind = 'progress' ORDER BY e.at DESC, e.rowid DESC LIMIT 1) AS progress,"
    " (SELECT e.note FROM problem_events e WHERE e.problem_id = p.id"
    "  AND e.kind = 'reply' ORDER BY e.at DESC, e.rowid DESC LIMIT 1) AS reply_note"
)


def headers() -> list[str]:
    return [_(f"export.col.{name}") for name in COLUMNS]


def mask_phone(phone: str) -> str:
    """Keep the first three and last four characters: 13812345678 -> 138****5678."""
    if not phone:
        return ""
    if len(phone) <= 7:
        return "*" * (len(phone) - 2) + phone[-2:]
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]


def _local(text: str | None) -> dt.datetime | None:
    return parse_iso(text).astimezone(LOCAL_TZ).replace(tzinfo=None) if text else None


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


def _status(row: dict, today: str) -> str:
    label = _(f"status.{row['status']}")
    overdue = row["status"] not in ("closed", "rejected", "merged") and row["deadline"] and (
        row["deadline"] < today
    )
    return f"{label}（{_('problem.overdue')}）" if overdue else label


def records(db, user: authz.User, f: ledger_query.Filter) -> Iterator[list]:
    """The export rows for this filter, in the ledger's order (dates as date/datetime values)."""
    where, params = ledger_query.conditions(db, user, f)
    show_phone = user.can("resident_phone.view")
    today = ledger_query.local_today().isoformat()
    cursor = db.execute(
        f"{_SELECT} FROM problems p {ledger_query.JOINS} WHERE {where}"
        f" ORDER BY {ledger_query.order_by(f)} LIMIT ?",
        [*params, MAX_ROWS],
    )
    names = [column[0] for column in cursor.description]
    seq = 0
    while chunk := cursor.fetchmany(CHUNK):
        for values in chunk:
            row = dict(zip(names, values, strict=True))
            seq += 1
            yield [
                seq,
                row["ledger_no"] or "",
                _(f"ledger.source.{row['source']}") if row["source"] in ledger_query.SOURCES
                else row["source"],
                _local(row["found_at"]),
                f"{row['area_name']} {row['place']}".strip(),
                row["description"],
                row["category_name"] or "",
                row["unit_name"] or "",
                dt.date.fromisoformat(row["deadline"]) if row["deadline"] else None,
                _progress(row["progress"]),
                _result(row),
                _callback(row),
                _(f"satisfaction.{row['satisfaction']}") if row["satisfaction"] else "",
                _status(row, today),
                row["resident_name"],
                row["resident_phone"] if show_phone else mask_phone(row["resident_phone"]),
            ]


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def csv_chunks(rows: Iterator[list]) -> Iterator[bytes]:
    """CSV bytes, UTF-8 with a BOM, one chunk per ``CHUNK`` rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    buffer.write("\ufeff")
    writer.writerow(headers())
    for count, row in enumerate(rows, start=1):
        writer.writerow([_text(value) for value in row])
        if count % CHUNK == 0:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def write_xlsx(rows: Iterator[list], target) -> None:
    """Write an XLSX workbook to the binary file ``target`` in openpyxl's write-only mode."""
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(_("problem.title"))
    sheet.append(headers())
    for row in rows:
        sheet.append(row)
    workbook.save(target)


def xlsx_file(rows: Iterator[list]):
    """The workbook in a temporary file (in memory while small), rewound for reading."""
    target = tempfile.SpooledTemporaryFile(max_size=4 * 2**20)  # noqa: SIM115 (closed by file_chunks)
    write_xlsx(rows, target)
    target.seek(0)
    return target


def file_chunks(target, size: int = 256 * 1024) -> Iterator[bytes]:
    try:
        while data := target.read(size):
            yield data
    finally:
        target.close()
