"""Exporting the ledger: the current filter as XLSX or CSV, in the usual ledger columns.

Both read through a connection of their own, ``CHUNK`` rows at a time, each
chunk in a short read transaction of its own (``records``: no transaction
stays open while the client downloads, so the WAL can be checkpointed), so
memory stays flat however many rows there are:

* CSV is written and sent chunk by chunk (UTF-8 with a BOM, which Excel needs
  to read Chinese);
* XLSX is written as it is sent: the sheet's XML, row by row, into a zip
  entry compressed on the fly (``xlsx_chunks``), so the first bytes leave at
  once and nothing waits for the whole workbook.

Always within the user's ``authz.problem_scope`` (the same query as the
ledger page). Residents' phone numbers are shown only to roles with the
``resident_phone.view`` permission (the office, which makes the callbacks);
everyone else gets them masked, 138****5678.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import zipfile
from collections.abc import Iterator
from xml.sax.saxutils import escape

from server import authz, ledger_query
from server.i18n import gettext as _
from server.timeutil import LOCAL_TZ, parse_iso

CHUNK = 1000
MAX_ROWS = 200_000
SORTED_READ_MAX = 20_000  # the most matches each chunk may read and sort (see _drive)
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
    """The export rows for this filter, in the ledger's order (dates as date/datetime values).

    Read in chunks of ``CHUNK`` rows, each in its own short read transaction
    (``BEGIN`` … ``COMMIT`` around its queries, the cursors drained and
    closed), and formatted and yielded only after that transaction has ended:
    however slowly the client downloads, no transaction is open between chunks,
    so checkpoints are not held back and the WAL does not grow. A chunk starts
    after the sort key (``ledger_query.order_by``: the sort columns, then the
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
    ledger_query.choose_drive(db, user, f)  # a narrow filter drives the read, as on the page
    where, params = ledger_query.conditions(db, user, f)
    indexed = _drive(db, f, where, params)
    show_phone = user.can("resident_phone.view")
    today = ledger_query.local_today().isoformat()
    columns = ledger_query.SORTS[f.sort]
    keys = "".join(f", {column} AS sort_key_{n}" for n, column in enumerate(columns))
    order = ledger_query.order_by(f)
    # A chunk's rows are found (and, if the plan does, sorted) by rowid alone; their
    # columns, events included, are read for those rows only.
    select = (  # the segment's condition goes between the two
        f"{_SELECT}{keys}, p.rowid AS sort_rowid FROM (SELECT p.rowid AS id"
        f" FROM problems p{indexed} WHERE {where} AND ",
        f" ORDER BY {order} LIMIT ?) AS chunk JOIN problems p ON p.rowid = chunk.id"
        f" {ledger_query.JOINS} ORDER BY {order}",
    )
    seq = 0
    last = None  # the sort key (sort columns, rowid) of the last row read
    while seq < MAX_ROWS:
        wanted = min(CHUNK, MAX_ROWS - seq)
        segments = _after(columns, last, f.dir == "desc")
        names, chunk = _read_chunk(db, select, params, segments, wanted)
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
        if len(chunk) < wanted:
            return
        last = chunk[-1][-(len(columns) + 1):]


def _drive(db, f: ledger_query.Filter, where: str, params: list) -> str:
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
        f" ORDER BY {ledger_query.order_by(f)}", params,
    ).fetchall()
    if not any(parent == 0 and "ORDER BY" in detail for _id, parent, _n, detail in plan):
        return ""  # read in the sort order already
    matches = db.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM problems p WHERE {where} LIMIT ?)",
        [*params, SORTED_READ_MAX + 1],
    ).fetchone()[0]
    return f" INDEXED BY {ledger_query.SORT_INDEXES[f.sort]}" if (
        matches > SORTED_READ_MAX) else ""


def _read_chunk(db, select: tuple[str, str], params: list, segments: list[tuple[str, list]],
                limit: int) -> tuple[list[str], list[tuple]]:
    """Up to ``limit`` rows of ``select`` with each segment's condition in turn (between
    its two parts), in one read transaction.

    The transaction ends before this returns (unless the caller had one open:
    then the rows are read in it). Each cursor is read to its end and closed.
    """
    conn = db.conn
    own = not conn.in_transaction
    names: list[str] = []
    rows: list[tuple] = []
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
    except BaseException:
        if own and conn.in_transaction:
            conn.rollback()
        raise
    if own:
        conn.commit()
    return names, rows


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


# XLSX, written as it streams ---------------------------------------------------------
#
# A workbook is a zip of XML parts. The sheet is written row by row into a zip entry
# that zipfile compresses on the fly; written to a stream it cannot seek, zipfile
# puts each entry's sizes after its data (a data descriptor, as every streaming zip
# writer does), so every CHUNK rows the bytes so far go to the client.

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_RELS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PACKAGE_RELS = "http://schemas.openxmlformats.org/package/2006/relationships"
_XML = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_EXCEL_EPOCH = dt.datetime(1899, 12, 30)
_DATE_STYLE, _DATETIME_STYLE = 1, 2  # positions in cellXfs of _styles()
# Characters XML 1.0 does not allow (phones can send them; Excel would call the file damaged).
_ILLEGAL_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _static_parts(sheet_name: str) -> dict[str, str]:
    return {
        "[Content_Types].xml": (
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
        ),
        "_rels/.rels": (
            f'{_XML}<Relationships xmlns="{_PACKAGE_RELS}"><Relationship Id="rId1"'
            f' Type="{_RELS}/officeDocument" Target="xl/workbook.xml"/></Relationships>'
        ),
        "xl/workbook.xml": (
            f'{_XML}<workbook xmlns="{_MAIN}" xmlns:r="{_RELS}"><sheets>'
            f'<sheet name="{escape(sheet_name, {chr(34): "&quot;"})}" sheetId="1" r:id="rId1"/>'
            "</sheets></workbook>"
        ),
        "xl/_rels/workbook.xml.rels": (
            f'{_XML}<Relationships xmlns="{_PACKAGE_RELS}">'
            f'<Relationship Id="rId1" Type="{_RELS}/worksheet" Target="worksheets/sheet1.xml"/>'
            f'<Relationship Id="rId2" Type="{_RELS}/styles" Target="styles.xml"/>'
            "</Relationships>"
        ),
        "xl/styles.xml": _styles(),
    }


def _styles() -> str:
    xf = '<xf numFmtId="{}" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    return (
        f'{_XML}<styleSheet xmlns="{_MAIN}"><numFmts count="2">'
        '<numFmt numFmtId="164" formatCode="yyyy-mm-dd"/>'
        '<numFmt numFmtId="165" formatCode="yyyy-mm-dd hh:mm"/></numFmts>'
        '<fonts count="1"><font><sz val="11"/><name val="Calibri"/></font></fonts>'
        '<fills count="2"><fill><patternFill patternType="none"/></fill>'
        '<fill><patternFill patternType="gray125"/></fill></fills>'
        '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
        '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/>'
        f'</cellStyleXfs><cellXfs count="3">{xf.format(0)}{xf.format(164)}{xf.format(165)}'
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


_COLUMNS = [_column_letters(index) for index in range(len(COLUMNS))]


def _cell(ref: str, value) -> str:
    """One cell of the sheet's XML at ``ref`` (A1); "" for an empty one, which is left out."""
    if value is None or value == "":
        return ""
    if isinstance(value, dt.datetime):
        days = (value - _EXCEL_EPOCH) / dt.timedelta(days=1)
        return f'<c r="{ref}" s="{_DATETIME_STYLE}"><v>{days!r}</v></c>'
    if isinstance(value, dt.date):
        days = (value - _EXCEL_EPOCH.date()).days
        return f'<c r="{ref}" s="{_DATE_STYLE}"><v>{days}</v></c>'
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f'<c r="{ref}"><v>{value!r}</v></c>'
    text = escape(_ILLEGAL_XML.sub("", str(value)))
    return f'<c r="{ref}" t="inlineStr"><is><t xml:space="preserve">{text}</t></is></c>'


def _row(number: int, values: list) -> str:
    cells = "".join(_cell(f"{column}{number}", value)
                    for column, value in zip(_COLUMNS, values, strict=True))
    return f'<row r="{number}">{cells}</row>'


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


def xlsx_chunks(rows: Iterator[list]) -> Iterator[bytes]:
    """An XLSX workbook of one sheet (the headers, then ``rows``), sent every CHUNK rows."""
    outbox = _Outbox()
    with zipfile.ZipFile(outbox, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, text in _static_parts(_("problem.title")).items():
            archive.writestr(name, text)
        with archive.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as sheet:
            sheet.write(f'{_XML}<worksheet xmlns="{_MAIN}"><sheetData>'.encode())
            sheet.write(_row(1, headers()).encode())
            lines = []
            for count, row in enumerate(rows, start=1):
                lines.append(_row(count + 1, row))
                if count % CHUNK == 0:
                    sheet.write("".join(lines).encode())
                    lines.clear()
                    if data := outbox.take():  # empty while the compressor fills a block
                        yield data
            sheet.write(("".join(lines) + "</sheetData></worksheet>").encode())
    yield outbox.take()
