"""Copy an SQLite ledger into PostgreSQL, and check the copy (docs/postgresql.md, section 7).

``copy_to`` refuses a target that holds a ledger already or sorts text otherwise than
SQLite, migrates it to the head, reads the source in one snapshot and writes the target
in one transaction with its triggers off: every row goes over as it is (``COPY``), the
change log included, so phones' cursors and the epoch stay valid; SQLite's rowid of the
four text-keyed tables goes into their ``rowid`` column. What the triggers would have
kept is then set from the copied rows: the identity sequences and the change log's
sequence (the roll-up is copied, and ``verify`` checks it equals a rebuild); only the
trigger that works out each problem's search words stays on. The foreign keys are off
while rows go in and put back after; then the target is analysed.

``verify`` compares every table's row count and a SHA-256 over its rows in key order,
each value written by ``canonical`` on both sides, then four derived checks.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from server.db import postgresql
from server.db.dialect import SQLITE
from server.db.postgresql_history import migrate
from server.db.postgresql_history._shared import (
    REASON_ROLLUP_REBUILD,
    rollup_rebuild_sql,
)
from server.ledger import search

# The text-keyed tables whose SQLite rowid queries use (ordering ties, cursors): PostgreSQL
# keeps it in a column named rowid, which the copy fills with SQLite's.
ROWID_TABLES = ("diary_entries", "problem_events", "problems", "visits")

# SQLite's own tables and its full-text index, which PostgreSQL replaces by tokens.
_SQLITE_ONLY = re.compile(
    r"sqlite_\w*|_sqlite_migrations|problems_fts(_\w+)?|problems_search_(deferral|pending)")

# Tables the schema history fills as it creates them (the epoch, the default reasons):
# a target holding only these rows is empty; the copy replaces them with the source's.
HISTORY_FILLED = ("reason_options", "settings")
SEARCH_TOKENS_TRIGGER = "problems_search_tokens_insert"  # m029

SAMPLED_WORDS = 50
_CJK_RUN = re.compile(r"[\u3400-\u9fff]{2,}")
_WORD = re.compile(r"[^\W_]{2,}")
_MAX_LISTED = 20


class CopyRefused(Exception):
    """The copy cannot start; ``str()`` says why, for the user."""


@dataclass(frozen=True)
class TableCheck:
    """One line of the verification: a table, or a derived check, on both sides.

    For a table, ``source`` is the SQLite file and ``target`` PostgreSQL; for the
    roll-up, the copied rows and those rebuilt from the problems.
    """

    name: str
    source_rows: int
    target_rows: int
    source_checksum: str
    target_checksum: str

    @property
    def ok(self) -> bool:
        return (self.source_rows, self.source_checksum) == (self.target_rows, self.target_checksum)


@dataclass(frozen=True)
class _Table:
    name: str
    columns: tuple[str, ...]  # rowid first on ROWID_TABLES
    key: tuple[str, ...]  # the order rows are checked in

    @property
    def column_list(self) -> str:
        return ", ".join(map(_quote, self.columns))

    def select(self) -> str:
        order = ", ".join(map(_quote, self.key))
        return f"SELECT {self.column_list} FROM {_quote(self.name)} ORDER BY {order}"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def canonical(value) -> bytes:
    """One value as the checksums see it, whichever backend read it: its type and its
    exact value (text length-prefixed, so no value can imitate a separator)."""
    if value is None:
        return b"N"
    if isinstance(value, int):
        return b"i%d" % value
    if isinstance(value, float):
        return b"f" + repr(value).encode()
    if isinstance(value, str):
        encoded = value.encode("utf-8", "surrogatepass")
        return b"t%d:" % len(encoded) + encoded
    if isinstance(value, bytes | bytearray | memoryview):
        return b"b" + bytes(value).hex().encode()
    raise TypeError(f"no canonical form for {type(value).__name__}: {value!r}")


def checksum(rows: Iterable[Iterable]) -> tuple[int, str]:
    """The number of rows and the SHA-256 of their canonical values, in the given order."""
    digest = hashlib.sha256()
    count = 0
    for row in rows:
        digest.update(b"|".join(canonical(value) for value in row) + b"\n")
        count += 1
    return count, digest.hexdigest()


def tables(source) -> list[_Table]:
    """The source's tables that PostgreSQL holds too, with their columns and keys."""
    found = []
    names = [name for (name,) in source.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").fetchall()]
    for name in names:
        if _SQLITE_ONLY.fullmatch(name):
            continue
        info = source.execute(
            "SELECT name, pk FROM pragma_table_info(?) ORDER BY cid", [name]).fetchall()
        columns = tuple(column for column, _pk in info)
        key = tuple(column for column, pk in sorted(info, key=lambda c: c[1]) if pk)
        if name in ROWID_TABLES:
            columns, key = ("rowid", *columns), ("rowid",)
        found.append(_Table(name, columns, key))
    return found


# --- The copy ------------------------------------------------------------------------


def copy_to(source, target_url: str) -> dict[str, int]:
    """Copy the SQLite database ``source`` into the PostgreSQL database at ``target_url``;
    return the rows copied per table. Raises CopyRefused before writing anything when the
    target is not empty, sorts text otherwise, or a text holds a NUL."""
    if source.dialect is not SQLITE:
        raise CopyRefused("the source must be an SQLite database")
    target = postgresql.connect(target_url)
    try:
        try:
            postgresql.check_collation(target)
        except postgresql.UnsupportedCollation as refused:
            raise CopyRefused(str(refused)) from None
        copied = tables(source)
        _refuse_unless_empty(target, copied)
        migrate(target)
        _refuse_missing(target, copied)
        with source.snapshot():
            _refuse_nul(source, copied)
            with target.write_transaction():
                _refuse_unless_empty(target, copied)  # again, under the write lock
                counts = _write(source, target, copied)
        # The planner's statistics, which autovacuum would gather only later: without
        # them the first pages served from the copy may pick slow plans.
        target.execute("ANALYZE")
    finally:
        target.close()
    return counts


def _refuse_unless_empty(target, copied: list[_Table]) -> None:
    holding = []
    for table in copied:
        if table.name in HISTORY_FILLED:
            continue
        if _exists(target, table.name) and target.execute(
                f"SELECT EXISTS (SELECT 1 FROM {_quote(table.name)})").fetchone()[0]:
            holding.append(table.name)
    if holding:
        raise CopyRefused(
            f"the target database is not empty ({', '.join(holding)} hold rows); copy into a"
            " new database")


def _refuse_missing(target, copied: list[_Table]) -> None:
    for table in copied:
        columns = set(target.shape(table.name).columns)
        missing = [column for column in table.columns if column not in columns]
        if missing:
            raise CopyRefused(
                f"the target's {table.name} has no column {', '.join(missing)}: the SQLite"
                " file's schema is newer than this build's PostgreSQL history")


def _refuse_nul(source, copied: list[_Table]) -> None:
    """PostgreSQL's text cannot hold U+0000: list where the source has one."""
    found = []
    for table in copied:
        columns = [column for column in table.columns if column != "rowid"]
        holds = [f"(typeof({_quote(c)}) = 'text' AND instr(CAST({_quote(c)} AS BLOB), x'00') > 0)"
                 for c in columns]
        key = table.key if table.key != ("rowid",) else ("id",)
        for row in source.execute(
                f"SELECT {', '.join(map(_quote, key))}, {', '.join(holds)}"
                f" FROM {_quote(table.name)} WHERE {' OR '.join(holds)}"
                f" LIMIT {_MAX_LISTED}").fetchall():
            named_key = ", ".join(f"{k}={v!r}" for k, v in zip(key, row, strict=False))
            bad = [c for c, holds_nul in zip(columns, row[len(key):], strict=True) if holds_nul]
            found.append(f"{table.name} ({named_key}): {', '.join(bad)}")
    if found:
        raise CopyRefused(
            "text holding a NUL character (U+0000), which PostgreSQL cannot store; fix these"
            " rows in the SQLite file first:\n  " + "\n  ".join(found[:_MAX_LISTED]))


def _write(source, target, copied: list[_Table]) -> dict[str, int]:
    """Inside the target's one write transaction."""
    # Rows go in table by table, so the foreign keys come off and are put back after:
    # putting one back checks every row in one join, where a checked or deferred key
    # would look up each row's parent on its own (hours at a million problems).
    foreign_keys = _foreign_keys(target)
    for table, name, _definition in foreign_keys:
        target.execute(f"ALTER TABLE {table} DROP CONSTRAINT {_quote(name)}")
    for table in copied:
        target.execute(f"ALTER TABLE {_quote(table.name)} DISABLE TRIGGER USER")
    # Each problem's search words are worked out as it goes in (m029).
    target.execute(f"ALTER TABLE problems ENABLE TRIGGER {SEARCH_TOKENS_TRIGGER}")
    for name in HISTORY_FILLED:
        target.execute(f"DELETE FROM {_quote(name)}")
    counts = {}
    cursor = target.conn.cursor()
    for table in copied:
        counts[table.name] = 0
        rows = source.execute(f"SELECT {table.column_list} FROM {_quote(table.name)}")
        with cursor.copy(f"COPY {_quote(table.name)} ({table.column_list}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                counts[table.name] += 1
    for table, name, definition in foreign_keys:
        try:
            target.execute(f"ALTER TABLE {table} ADD CONSTRAINT {_quote(name)} {definition}")
        except target.errors.Integrity as broken:
            detail = getattr(getattr(broken, "diag", None), "message_detail", None) or broken
            raise CopyRefused(
                f"a row of {table} names what the SQLite file does not hold ({definition}:"
                f" {detail}); fix it in the SQLite file first. Nothing was copied.") from None
    for table in copied:
        target.execute(f"ALTER TABLE {_quote(table.name)} ENABLE TRIGGER USER")
    _move_sequences(target)
    _move_change_sequence(source, target)
    return counts


def _foreign_keys(target) -> list[tuple[str, str, str]]:
    """(table, name, definition) of every foreign key of the schema."""
    return [tuple(row) for row in target.execute(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE contype = 'f' AND connamespace = current_schema()::regnamespace"
        " ORDER BY conrelid::regclass::text, conname").fetchall()]


def _move_sequences(target) -> None:
    """Each identity's next value past the largest one copied."""
    identities = target.execute(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND is_identity = 'YES'").fetchall()
    for table, column in identities:
        target.execute(
            f"SELECT setval(pg_get_serial_sequence(?, ?), m) FROM"
            f" (SELECT max({_quote(column)}) AS m FROM {_quote(table)}) q WHERE m IS NOT NULL",
            [_quote(table), column])


def _move_change_sequence(source, target) -> None:
    """The change log's next version past every version SQLite gave."""
    given = source.execute(SQLITE.latest_version_sql).fetchone()
    highest = max(given[0] if given and given[0] else 0,
                  target.execute("SELECT coalesce(max(version), 0) FROM changes").fetchone()[0])
    if highest:
        target.execute("SELECT setval('changes_version_seq', ?)", [highest])


# --- The verification ------------------------------------------------------------------


def verify(source, target) -> list[TableCheck]:
    """Every table on both sides, then the derived checks: the roll-ups equal their
    rebuilds, the change log's latest version is the same, and sampled words find the
    same problems."""
    checks = []
    with source.snapshot(), target.snapshot():
        for table in tables(source):
            on_source = checksum(source.execute(table.select()))
            if not _exists(target, table.name):
                checks.append(TableCheck(table.name, *_pair(on_source, (0, "absent"))))
                continue
            on_target = checksum(_stream(target, table.select()))
            checks.append(TableCheck(table.name, *_pair(on_source, on_target)))
        if any(check.target_checksum == "absent" for check in checks):
            return checks  # the derived checks need the whole schema
        checks.append(_rollup_check(target))
        checks.append(_reason_rollup_check(target))
        checks.append(_latest_version_check(source, target))
        checks.append(_search_check(source, target))
    return checks


def _exists(target, table: str) -> bool:
    return target.execute("SELECT to_regclass(?) IS NOT NULL", [_quote(table)]).fetchone()[0]


def _stream(target, sql: str) -> Iterator[tuple]:
    """The rows of ``sql`` on PostgreSQL, fetched a batch at a time (a server-side cursor,
    inside the snapshot's transaction), so a large table is never held whole."""
    with target.conn.cursor(name="fieldledger_verify") as cursor:
        cursor.itersize = 5_000
        cursor.execute(sql)
        yield from cursor


def report_lines(checks: list[TableCheck]) -> list[str]:
    """The verification as a table: name, rows, checksum (both sides where they differ), ok."""
    lines = [f"{'table':<28} {'rows':>9}  {'checksum (SHA-256)':<16}  ok"]
    for check in checks:
        rows, digest = str(check.source_rows), check.source_checksum[:16]
        if not check.ok:
            rows = f"{check.source_rows}/{check.target_rows}"
            digest = f"{check.source_checksum[:7]}/{check.target_checksum[:8]}"
        lines.append(f"{check.name:<28} {rows:>9}  {digest:<16}  "
                     f"{'ok' if check.ok else 'DIFFERS'}")
    return lines


def _pair(source: tuple[int, str], target: tuple[int, str]) -> tuple[int, int, str, str]:
    return source[0], target[0], source[1], target[1]


def _rollup_check(target) -> TableCheck:
    columns = "level, week, area_id, unit_id, category_id, features, deadline, n"
    copied = target.execute(f"SELECT {columns} FROM stats_rollup ORDER BY {columns}")
    rebuilt = target.execute(
        f"SELECT {columns} FROM ({rollup_rebuild_sql()}) AS r"
        f" ({columns}) ORDER BY {columns}")
    return TableCheck("stats_rollup = rebuild", *_pair(checksum(copied), checksum(rebuilt)))


def _reason_rollup_check(target) -> TableCheck:
    """The counts by reason (m026) equal those the events and their problems give."""
    copied = target.execute(
        "SELECT day, area_id, kind, code, n FROM reason_rollup WHERE n != 0 ORDER BY 1, 2, 3, 4")
    rebuilt = target.execute(f"{REASON_ROLLUP_REBUILD} ORDER BY 1, 2, 3, 4")
    return TableCheck("reason_rollup = rebuild", *_pair(checksum(copied), checksum(rebuilt)))


def _latest_version_check(source, target) -> TableCheck:
    def latest(db) -> tuple[int, str]:
        row = db.execute(db.dialect.latest_version_sql).fetchone()
        version = row[0] if row and row[0] else 0
        return version, hashlib.sha256(b"%d" % version).hexdigest()

    return TableCheck("latest version", *_pair(latest(source), latest(target)))


def sampled_words(source, count: int = SAMPLED_WORDS) -> list[str]:
    """Words from problems spread over the ledger: a two-character Chinese word of a
    description where it has one, else one of its other words."""
    bounds = source.execute("SELECT min(rowid), max(rowid) FROM problems").fetchone()
    if bounds[0] is None:
        return []
    low, high = bounds
    chooser = random.Random(7)
    words = []
    for n in range(count):
        row = source.execute(
            "SELECT description FROM problems WHERE rowid >= ? ORDER BY rowid LIMIT 1",
            [low + (high - low) * n // count]).fetchone()
        text = row[0] or ""
        runs = _CJK_RUN.findall(text)
        if runs:
            run = chooser.choice(runs)
            start = chooser.randrange(len(run) - 1)
            words.append(run[start:start + 2])
        elif found := _WORD.findall(text):
            words.append(chooser.choice(found))
    return words


def _search_check(source, target) -> TableCheck:
    words = sampled_words(source)

    def found(db) -> tuple[int, str]:
        results = []
        for word in words:
            condition = search.search_condition(db, word)
            ids = sorted(row[0] for row in db.execute(
                f"SELECT p.id FROM problems p WHERE {condition.sql}", condition.params))
            results.append((word, len(ids), ",".join(ids)))
        return sum(n for _word, n, _ids in results), checksum(results)[1]

    return TableCheck(f"search ({len(words)} words)", *_pair(found(source), found(target)))
