"""Bulk import of areas, units, categories and users from CSV or XLSX files.

A file is imported whole or not at all: every row is checked, every problem
is reported with its spreadsheet row number, and if there is any problem the
write transaction is rolled back.

The work is split in two phases so that slow password hashing stays outside
the write lock:

* ``parse_and_clean`` reads the file, maps its columns to fields, cleans and
  prepares every row (no database needed);
* ``write_rows`` creates the records inside the caller's write transaction and
  raises ``ImportFailed`` with the cleaning problems and the database problems
  together.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

from server import accounts, areas, audit, authz, categories, units
from server.db import immediate
from server.i18n import gettext as _
from server.resource import Resource
from server.validation import Field, ValidationError, holds_nul

KINDS: dict[str, Resource] = {
    "areas": areas.RESOURCE,
    "units": units.RESOURCE,
    "categories": categories.RESOURCE,
    "users": accounts.RESOURCE,
}

MAX_BYTES = 5 * 1024 * 1024
MAX_ROWS = 20_000
FILE_ROW = 0  # the row number of problems with the file as a whole
HEADER_ROW = 1

# Columns whose values must be unique; a repeat within one file is reported
# against the earlier row. Usernames are unique regardless of case.
UNIQUE_FIELDS: dict[str, tuple[str, ...]] = {
    "areas": ("code",),
    "units": ("name",),
    "categories": ("code", "name"),
    "users": ("username",),
}
CASE_INSENSITIVE_FIELDS = frozenset({"username"})

TRUE_WORDS = frozenset({"1", "true", "yes", "y", "on", "是", "启用", "有效", "正常"})
FALSE_WORDS = frozenset({"0", "false", "no", "n", "off", "否", "停用", "禁用", "无效"})

XLSX_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0"  # legacy .xls
CSV_SUFFIXES = (".csv", ".txt", ".tsv")
CSV_DELIMITERS = (",", "\t", ";")
EXTRA_CELLS = ""  # row key for values in columns without a header

Row = tuple[int, dict[str, Any]]


# Results and failures ---------------------------------------------------------


@dataclass(frozen=True)
class ImportProblem:
    row: int  # spreadsheet row number; 1 is the header, 0 the file as a whole
    message: str


class ImportFailed(Exception):
    """The file was not imported; ``problems`` says why, row by row."""

    def __init__(self, problems: Iterable[ImportProblem]):
        self.problems = sorted(problems, key=lambda problem: problem.row)
        super().__init__("; ".join(f"row {p.row}: {p.message}" for p in self.problems))


def _fail(row: int, key: str, **params) -> ImportFailed:
    return ImportFailed([ImportProblem(row, _(key, **params))])


@dataclass(frozen=True)
class CleanRow:
    row: int
    data: dict[str, Any]


@dataclass
class CleanedImport:
    """The outcome of the first phase: rows ready to create, and problems found so far."""

    kind: str
    rows: list[CleanRow] = field(default_factory=list)
    problems: list[ImportProblem] = field(default_factory=list)
    source: str = ""  # the file's name, for the audit trail


@dataclass(frozen=True)
class ImportReport:
    kind: str
    created: int


def resource_for(kind: str) -> Resource:
    try:
        return KINDS[kind]
    except KeyError:
        raise _fail(FILE_ROW, "import.errors.unknown_kind") from None


# Reading files ----------------------------------------------------------------


def read_table(filename: str, content: bytes) -> tuple[list[str], list[Row]]:
    """The header row and the non-empty data rows, each with its spreadsheet row number."""
    return _table(iter(read_records(filename, content)))


def read_records(filename: str, content: bytes) -> list[tuple[int, list[str]]]:
    """Every row of a CSV (UTF-8 or GBK) or XLSX file as cell texts, with its row number."""
    if not content:
        raise _fail(FILE_ROW, "import.errors.empty_file")
    if len(content) > MAX_BYTES:
        raise _fail(FILE_ROW, "import.errors.too_large", mb=MAX_BYTES // (1024 * 1024))
    with contextlib.closing(_records(filename, content)) as records:
        return list(records)


def _records(filename: str, content: bytes) -> Iterator[tuple[int, list[str]]]:
    name = filename.lower()
    if content.startswith(OLE_MAGIC) or name.endswith(".xls"):
        raise _fail(FILE_ROW, "import.errors.old_excel")
    if content.startswith(XLSX_MAGIC) or name.endswith(".xlsx"):
        return _xlsx_records(content)
    if name.endswith(CSV_SUFFIXES):
        return _csv_records(content)
    raise _fail(FILE_ROW, "import.errors.unknown_format")


def _table(records: Iterator[tuple[int, list[str]]]) -> tuple[list[str], list[Row]]:
    header: list[str] | None = None
    rows: list[Row] = []
    for number, cells in records:
        if not any(cells):
            continue
        if header is None:
            header = cells
            continue
        if len(rows) == MAX_ROWS:
            raise _fail(FILE_ROW, "import.errors.too_many_rows", max=MAX_ROWS)
        rows.append((number, _row_dict(header, cells)))
    if header is None:
        raise _fail(FILE_ROW, "import.errors.no_header")
    return header, rows


def _row_dict(header: list[str], cells: list[str]) -> dict[str, str]:
    row: dict[str, str] = {}
    extras = []
    for index, value in enumerate(cells):
        title = header[index] if index < len(header) else EXTRA_CELLS
        if title == EXTRA_CELLS:
            if value:
                extras.append(value)
        else:
            row[title] = value
    if extras:
        row[EXTRA_CELLS] = " ".join(extras)
    return row


def _decode(content: bytes) -> str:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    # Excel on Chinese Windows saves "CSV (comma delimited)" in GBK.
    try:
        return content.decode("gb18030")
    except UnicodeDecodeError:
        raise _fail(FILE_ROW, "import.errors.bad_encoding") from None


def _delimiter(text: str) -> str:
    first_line = text.split("\n", 1)[0]
    return max(CSV_DELIMITERS, key=first_line.count)


def _csv_records(content: bytes) -> Iterator[tuple[int, list[str]]]:
    if b"\x00" in content:
        raise _fail(FILE_ROW, "import.errors.binary_csv")
    text = _decode(content)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text), strict=True)
    try:
        for number, cells in enumerate(reader, start=1):
            yield number, [cell.strip() for cell in cells]
    except csv.Error as error:
        raise _fail(FILE_ROW, "import.errors.bad_csv", reason=str(error)) from None


def _xlsx_records(content: bytes) -> Iterator[tuple[int, list[str]]]:
    from openpyxl import load_workbook

    # openpyxl raises many kinds of exceptions (zip, XML, key and value errors)
    # on a damaged or foreign file; all of them mean the same to the user.
    try:
        workbook = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception:
        raise _fail(FILE_ROW, "import.errors.bad_xlsx") from None
    try:
        sheet = workbook.worksheets[0]
        for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            yield number, [cell_text(value) for value in values]
    except Exception:
        raise _fail(FILE_ROW, "import.errors.bad_xlsx") from None
    finally:
        workbook.close()


def cell_text(value: Any) -> str:
    """A spreadsheet cell as text: whole numbers without ".0" (codes and phone numbers)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime) and value.time() == dt.time():
        return value.date().isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value).strip()


# Columns ----------------------------------------------------------------------


def _normalized(title: str) -> str:
    text = unicodedata.normalize("NFKC", title)
    # "Contact Phone", "contact_phone" and "联系电话 *" all name the same column.
    return "".join(text.replace("_", " ").split()).strip("*").casefold()


def _fields_by_title(resource: Resource) -> dict[str, Field]:
    titles: dict[str, Field] = {}
    for schema_field in resource.schema(creating=True).fields:
        titles[_normalized(schema_field.name)] = schema_field
        titles[_normalized(schema_field.label_text())] = schema_field
    return titles


def column_titles(resource: Resource) -> list[str]:
    """The column titles an import file of this kind may use, in schema order."""
    return [f.label_text() for f in resource.schema(creating=True).fields]


def map_columns(resource: Resource, header: list[str]) -> dict[str, str]:
    """Map each header title to its field name; ImportFailed at row 1 if they do not fit."""
    titles = _fields_by_title(resource)
    mapping: dict[str, str] = {}
    unknown = []
    for title in header:
        if title == EXTRA_CELLS:
            continue
        found = titles.get(_normalized(title))
        if found is None:
            unknown.append(title)
        elif found.name in mapping.values():
            raise _fail(HEADER_ROW, "import.errors.duplicate_column", column=title)
        else:
            mapping[title] = found.name
    if unknown:
        raise _fail(
            HEADER_ROW, "import.errors.unknown_columns",
            columns="、".join(unknown), allowed="、".join(column_titles(resource)),
        )
    fields = resource.schema(creating=True).fields
    missing = [f.label_text() for f in fields if f.required and f.name not in mapping.values()]
    if missing:
        raise _fail(HEADER_ROW, "import.errors.missing_columns", columns="、".join(missing))
    return mapping


def template_csv(kind: str) -> bytes:
    """A CSV template: the column titles and one example row, UTF-8 with a BOM for Excel."""
    fields = resource_for(kind).schema(creating=True).fields
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(f.label_text() for f in fields)
    writer.writerow(_(f"import.examples.{kind}.{f.name}") for f in fields)
    return ("\ufeff" + out.getvalue()).encode("utf-8")


# Phase 1: reading, cleaning and preparing (no database) ----------------------


def field_problem(resource: Resource, row: int, name: str, message: str) -> ImportProblem:
    schema_field = resource.schema(creating=True).by_name.get(name)
    label = schema_field.label_text() if schema_field else name
    if label in message:
        return ImportProblem(row, message)
    return ImportProblem(row, _("import.errors.field_message", label=label, message=message))


def _validation_problems(resource: Resource, row: int, error: ValidationError) -> list:
    return [field_problem(resource, row, name, message) for name, message in error.errors.items()]


def _bool_value(schema_field: Field, text: str) -> str:
    """Spreadsheet yes/no: blank means the default (active), unknown words are an error."""
    word = text.strip().casefold()
    if not word or word in TRUE_WORDS:
        return "1"
    if word in FALSE_WORDS:
        return "0"
    label = schema_field.label_text()
    raise ValidationError(
        {schema_field.name: _("import.errors.bad_bool", label=label, value=text[:40])}
    )


def _raw_values(resource: Resource, mapping: dict[str, str], cells: dict[str, Any]) -> dict:
    raw = {name: cells.get(title, "") for title, name in mapping.items()}
    errors = {}
    for schema_field in resource.schema(creating=True).fields:
        if schema_field.kind == "bool":
            try:
                raw[schema_field.name] = _bool_value(schema_field, raw.get(schema_field.name, ""))
            except ValidationError as error:
                errors.update(error.errors)
    if errors:
        raise ValidationError(errors)
    return raw


def _clean_row(resource: Resource, mapping: dict[str, str], number: int, cells: dict) -> dict:
    holding_nul = [title for title, value in cells.items() if holds_nul(value)]
    if holding_nul:
        columns = "、".join(title or _("import.errors.no_column") for title in holding_nul)
        raise ImportFailed([ImportProblem(number, _("import.errors.nul", columns=columns))])
    if cells.get(EXTRA_CELLS):
        raise ImportFailed(
            [ImportProblem(number, _("import.errors.extra_cells", value=cells[EXTRA_CELLS][:40]))]
        )
    try:
        raw = _raw_values(resource, mapping, cells)
        return resource.clean(raw, creating=True)
    except ValidationError as error:
        raise ImportFailed(_validation_problems(resource, number, error)) from None


def _unique_key(name: str, value: Any) -> Any:
    return value.casefold() if name in CASE_INSENSITIVE_FIELDS and isinstance(value, str) else value


def _duplicates(kind: str, resource: Resource, rows: list[CleanRow]) -> tuple[list, list]:
    """Split rows into first occurrences and problems for values repeated within the file."""
    seen: dict[tuple[str, Any], int] = {}
    kept, problems = [], []
    for clean in rows:
        repeats = []
        for name in UNIQUE_FIELDS[kind]:
            key = (name, _unique_key(name, clean.data[name]))
            if key in seen:
                label = resource.schema(creating=True).by_name[name].label_text()
                repeats.append(ImportProblem(clean.row, _(
                    "import.errors.duplicate_in_file",
                    label=label, value=clean.data[name], row=seen[key],
                )))
            else:
                seen[key] = clean.row
        if repeats:
            problems.extend(repeats)
        else:
            kept.append(clean)
    return kept, problems


def clean_rows(kind: str, header: list[str], rows: list[Row]) -> CleanedImport:
    """Clean and prepare every row; structural problems (columns, no data) fail at once."""
    resource = resource_for(kind)
    mapping = map_columns(resource, header)
    if not rows:
        raise _fail(FILE_ROW, "import.errors.no_rows")
    result = CleanedImport(kind)
    cleaned = []
    for number, cells in rows:
        try:
            cleaned.append(CleanRow(number, _clean_row(resource, mapping, number, cells)))
        except ImportFailed as failure:
            result.problems.extend(failure.problems)
    kept, repeated = _duplicates(kind, resource, cleaned)
    result.problems.extend(repeated)
    result.rows = [CleanRow(clean.row, resource.prepare(clean.data)) for clean in kept]
    return result


def parse_and_clean(kind: str, filename: str, content: bytes) -> CleanedImport:
    """Phase 1: read the file and clean and prepare its rows (slow for users; no database)."""
    resource_for(kind)
    header, rows = read_table(filename, content)
    cleaned = clean_rows(kind, header, rows)
    cleaned.source = filename
    return cleaned


# Phase 2: writing (inside the caller's write transaction) --------------------


def _creation_order(kind: str, rows: list[CleanRow]) -> list[CleanRow]:
    # A parent area must exist before its children, wherever they are in the file.
    if kind == "areas":
        return sorted(rows, key=lambda clean: int(clean.data["level"]))
    return rows


def _create(db, actor: authz.User, resource: Resource, clean: CleanRow) -> list[ImportProblem]:
    try:
        with db.savepoint("import_row"):  # a failed row leaves nothing half-written behind
            resource.create(db, actor, clean.data)
    except ValidationError as error:
        return _validation_problems(resource, clean.row, error)
    except db.errors.Integrity:
        return [ImportProblem(clean.row, _("import.errors.constraint"))]
    return []


class NotInTransaction(RuntimeError):
    """write_rows was called outside a write transaction, so it could not roll back."""


def write_rows(db: sqlite_utils.Database, actor: authz.User, cleaned: CleanedImport):
    """Phase 2: create every row; on any problem raise ImportFailed so the caller rolls back."""
    if not db.in_transaction:
        raise NotInTransaction()
    resource = resource_for(cleaned.kind)
    problems = list(cleaned.problems)
    created = 0
    for clean in _creation_order(cleaned.kind, cleaned.rows):
        row_problems = _create(db, actor, resource, clean)
        problems.extend(row_problems)
        created += not row_problems
    if problems:
        raise ImportFailed(problems)
    # Each row is in the audit trail as a "create" of its record; this entry is the file.
    audit.record(db, actor.id, "import", "import", None, label=cleaned.source[:200],
                 new={"kind": cleaned.kind, "file": cleaned.source[:200], "created": created},
                 area_id=(actor.area_id or None) if resource.area_column else None)
    return ImportReport(cleaned.kind, created)


def import_rows(db: sqlite_utils.Database, actor: authz.User, kind: str, rows: list[Row]):
    """Both phases at once, inside the caller's write transaction (rows keyed by column title)."""
    header = list(dict.fromkeys(title for _number, cells in rows for title in cells))
    return write_rows(db, actor, clean_rows(kind, header, rows))


def read_file(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_BYTES:
            raise _fail(FILE_ROW, "import.errors.too_large", mb=MAX_BYTES // (1024 * 1024))
        return path.read_bytes()
    except FileNotFoundError:
        raise _fail(FILE_ROW, "import.errors.not_found", path=str(path)) from None
    except OSError as error:
        raise _fail(FILE_ROW, "import.errors.unreadable", reason=error.strerror or "") from None


def import_file(db: sqlite_utils.Database, actor: authz.User, kind: str, path: Path):
    """Import a file from disk in one write transaction (the command line's import)."""
    cleaned = parse_and_clean(kind, path.name, read_file(path))
    with immediate(db):
        return write_rows(db, actor, cleaned)


def system_actor(db: sqlite_utils.Database) -> authz.User:
    """An administrator over the whole area tree, for the command line.

    On a fresh database there is no root area yet; the path "/" is a prefix of
    every area path, so the same actor can import the root and its children.
    """
    root = db.execute("SELECT id, path FROM areas WHERE level = 1").fetchone()
    area_id, area_path = root if root else (0, "/")
    return authz.User(
        id=0, username="system", display_name="system", roles=frozenset({authz.ADMIN}),
        area_id=area_id, area_path=area_path, unit_id=None,
        permissions=frozenset(
            name for name, roles in authz.PERMISSIONS.items() if authz.ADMIN in roles
        ),
    )
