"""What the administration pages and the spreadsheet import need of a kind of record.

Each managed kind (areas, units, categories, users) subclasses ``Resource``
with its schema and its create/update rules. The generic admin views in
``server/views/admin.py`` and the importer in ``server/importer.py`` use only
this interface, so a rule such as "a handler must belong to a unit" is
written once and holds for forms and spreadsheets alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

import sqlite_utils

from server import authz
from server.errors import NotFound
from server.validation import Schema, ValidationError

PAGE_SIZE = 50


@dataclass(frozen=True)
class Column:
    key: str
    label: str  # catalog key


@dataclass
class Listing:
    rows: list[dict]
    total: int
    page: int
    page_size: int = PAGE_SIZE

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


class Resource:
    name: ClassVar[str]  # URL segment and catalog prefix, e.g. "users"
    table: ClassVar[str]
    columns: ClassVar[tuple[Column, ...]]
    search_columns: ClassVar[tuple[str, ...]] = ()
    order_by: ClassVar[str] = "id"

    # Schema ---------------------------------------------------------------

    def schema(self, creating: bool) -> Schema:
        raise NotImplementedError

    def options(self, db: sqlite_utils.Database, actor: authz.User) -> dict[str, list]:
        """Choices for fields that refer to other records: field name -> [(value, label)]."""
        return {}

    # Scope ------------------------------------------------------------------

    def scope(self, actor: authz.User) -> tuple[str, list]:
        """Which rows of this table the administrator manages."""
        return authz.admin_scope(actor, self.table)

    # Reading ----------------------------------------------------------------

    def select_sql(self) -> str:
        return f"SELECT {self.table}.* FROM {self.table}"

    def list(self, db, actor: authz.User, query: str = "", page: int = 1) -> Listing:
        clause, params = self.scope(actor)
        where = [clause]
        if query and self.search_columns:
            like = "%" + re.sub(r"([\\%_])", r"\\\1", query) + "%"
            where.append(
                "("
                + " OR ".join(f"{self.table}.{c} LIKE ? ESCAPE '\\'" for c in self.search_columns)
                + ")"
            )
            params = [*params, *([like] * len(self.search_columns))]
        condition = " AND ".join(where)
        total = db.execute(
            f"SELECT count(*) FROM {self.table} WHERE {condition}", params
        ).fetchone()[0]
        rows = db.query(
            f"{self.select_sql()} WHERE {condition} ORDER BY {self.order_by} LIMIT ? OFFSET ?",
            [*params, PAGE_SIZE, (page - 1) * PAGE_SIZE],
        )
        return Listing(list(rows), total, page)

    def get(self, db, actor: authz.User, record_id: int) -> dict:
        clause, params = self.scope(actor)
        rows = list(
            db.query(
                f"{self.select_sql()} WHERE {self.table}.id = ? AND {clause}",
                [record_id, *params],
            )
        )
        if not rows:
            raise NotFound(f"{self.name} {record_id}")
        return rows[0]

    def form_values(self, db, actor: authz.User, record_id: int) -> dict[str, Any]:
        """The record as the edit form shows it (references as codes and names)."""
        return self.get(db, actor, record_id)

    # Writing ----------------------------------------------------------------

    def clean(self, raw, creating: bool) -> dict[str, Any]:
        return self.schema(creating).clean(raw)

    def prepare(self, data: dict[str, Any]) -> dict[str, Any]:
        """Slow work on cleaned data that needs no database, done outside the write lock."""
        return data

    def create(self, db, actor: authz.User, data: dict[str, Any]) -> int:
        raise NotImplementedError

    def update(self, db, actor: authz.User, record_id: int, data: dict[str, Any]) -> None:
        raise NotImplementedError

    def unique(self, db, column: str, value: Any, field: str, message: str, exclude_id=None):
        """Raise a field error if another row already has this value."""
        row = db.execute(
            f"SELECT id FROM {self.table} WHERE {column} = ? AND id IS NOT ?",
            [value, exclude_id],
        ).fetchone()
        if row:
            raise ValidationError({field: message})


def resolve(field: str, resolver, *args):
    """Run a reference resolver, turning its ValueError into a field error."""
    try:
        return resolver(*args)
    except ValueError as error:
        raise ValidationError({field: str(error)}) from None
