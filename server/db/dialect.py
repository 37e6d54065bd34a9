"""The SQL the two backends spell differently, one member per construct.

Queries are written once, in the subset SQLite and PostgreSQL both accept, with
``?`` placeholders; where the engines differ the query asks ``db.dialect``.
docs/postgresql.md (section 2) lists every member and why it exists.

The PostgreSQL spellings call ``fl_local_day``, ``fl_julianday`` and
``fl_ascii_fold``, immutable SQL functions the PostgreSQL schema history defines.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Dialect:
    name: str
    # True when the engine chooses indexes from its own statistics, so the
    # hand-steering written for SQLite's planner is skipped.
    plans_itself: bool

    @property
    def _postgresql(self) -> bool:
        return self.name == "postgresql"

    # The planner steering (SQLite has no statistics) -------------------------------

    def index_hint(self, name: str) -> str:
        """Make the table read through index ``name``; follows the table's alias."""
        return "" if self._postgresql else f"INDEXED BY {name}"

    @property
    def not_indexed(self) -> str:
        """Make the table read by its rowid, no index; follows the table's alias."""
        return "" if self._postgresql else "NOT INDEXED"

    def likely(self, expr: str) -> str:
        """``expr``, which the planner is told is true for about half of the rows."""
        return expr if self._postgresql else f"likelihood({expr}, 0.5)"

    def unindexed(self, expr: str) -> str:
        """``expr``, hidden from the planner's choice of index."""
        return f"({expr})" if self._postgresql else f"+({expr})"

    @property
    def no_limit(self) -> str:
        """A LIMIT clause that limits nothing (on SQLite, a fence the planner keeps)."""
        return "" if self._postgresql else "LIMIT -1"

    # Values ---------------------------------------------------------------------------

    def local_day(self, expr: str) -> str:
        """The Asia/Shanghai day (YYYY-MM-DD) of the UTC stamp ``expr``."""
        return f"fl_local_day({expr})" if self._postgresql else f"date({expr}, '+8 hours')"

    def julianday(self, expr: str) -> str:
        return f"fl_julianday({expr})" if self._postgresql else f"julianday({expr})"

    def flag(self, expr: str) -> str:
        """The condition or small number ``expr`` as an integer, NULL as 0."""
        return f"coalesce(({expr})::int, 0)" if self._postgresql else f"ifnull(({expr}), 0)"

    def as_int(self, expr: str) -> str:
        """The condition ``expr`` as 0 or 1 (SQLite's comparisons already are numbers)."""
        return f"({expr})::int" if self._postgresql else expr

    def int_sum(self, expr: str) -> str:
        """The sum of the integers ``expr`` as an integer (PostgreSQL sums bigints as
        numeric, which is slower to read back)."""
        return f"sum({expr})::bigint" if self._postgresql else f"sum({expr})"

    def same(self, a: str, b: str) -> str:
        """``a`` equals ``b``, NULL equal to NULL."""
        return f"{a} IS NOT DISTINCT FROM {b}" if self._postgresql else f"{a} IS {b}"

    def in_list(self, expr: str, values: Iterable) -> tuple[str, object]:
        """``expr`` is one of ``values``: the condition (one ``?``) and its parameter."""
        if self._postgresql:
            return f"{expr} = ANY(?)", list(values)
        return f"{expr} IN (SELECT value FROM json_each(?))", json.dumps(list(values))

    # JSON held in text columns ----------------------------------------------------

    def json_text(self, expr: str, key: str) -> str:
        """The member ``key`` of the JSON object ``expr`` (a string read as text)."""
        if self._postgresql:
            return f"(({expr})::jsonb ->> '{key}')"
        return f"json_extract({expr}, '$.{key}')"

    def json_is_false(self, expr: str, key: str) -> str:
        """The member ``key`` of the JSON object ``expr`` is false (or 0)."""
        if self._postgresql:
            return f"(({expr})::jsonb -> '{key}') IN ('false', '0')"
        return f"json_extract({expr}, '$.{key}') = 0"

    def json_set(self, expr: str, key: str, value: str) -> str:
        """The JSON object ``expr`` (text) with ``key`` set to the number or text ``value``."""
        if self._postgresql:
            return f"jsonb_set(({expr})::jsonb, '{{{key}}}', to_jsonb({value}))::text"
        return f"json_set({expr}, '$.{key}', {value})"

    def json_rows(self, *exprs: str) -> str:
        """An aggregate: the JSON array (text) of one array of ``exprs`` per row, ``[]`` for
        no rows."""
        values = ", ".join(exprs)
        if self._postgresql:
            return f"coalesce(json_agg(json_build_array({values}))::text, '[]')"
        return f"json_group_array(json_array({values}))"

    def byte_at(self, blob: str, index: str, byte_values: str) -> str:
        """The byte at 0-based ``index`` of ``blob`` as a number, 0 past its end.

        SQLite has no such function: it finds the one-byte blob in ``byte_values``,
        the 256 byte values in order (a parameter bound once per statement)."""
        if self._postgresql:
            return (f"(CASE WHEN {index} < length({blob})"
                    f" THEN get_byte({blob}, ({index})::int) ELSE 0 END)")
        return f"(instr({byte_values}, substr({blob}, {index} + 1, 1)) - 1)"

    # Text ----------------------------------------------------------------------------

    def like(self, expr: str) -> str:
        """``expr`` matches the LIKE pattern of one ``?`` (escaped with ``\\``), ASCII case
        folded as SQLite's LIKE does."""
        if self._postgresql:
            return f"fl_ascii_fold({expr}) LIKE fl_ascii_fold(?) ESCAPE '\\'"
        return f"{expr} LIKE ? ESCAPE '\\'"

    # The change log's head (docs/postgresql.md, 4.4) ---------------------------------

    @property
    def latest_version_sql(self) -> str:
        """A query of one row: the highest version the change log has given (NULL or no
        row when it has given none)."""
        if self._postgresql:
            return "SELECT coalesce(max(version), 0) FROM changes"
        return "SELECT seq FROM sqlite_sequence WHERE name = 'changes'"

    @property
    def next_version_sql(self) -> str:
        """An expression: the version the change log's next change will get, or on
        PostgreSQL a lower bound of it (larger than every version committed)."""
        if self._postgresql:
            return "(SELECT coalesce(max(version), 0) + 1 FROM changes)"
        return "(SELECT seq FROM sqlite_sequence WHERE name = 'changes') + 1"


SQLITE = Dialect(name="sqlite", plans_itself=False)
POSTGRESQL = Dialect(name="postgresql", plans_itself=True)
