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

from server import audit, authz, masking
from server.errors import NotFound
from server.paging import PAGE_SIZE, Listing
from server.validation import Schema, ValidationError


@dataclass(frozen=True)
class Column:
    key: str
    label: str  # catalog key



class Resource:
    name: ClassVar[str]  # URL segment and catalog prefix, e.g. "users"
    table: ClassVar[str]
    columns: ClassVar[tuple[Column, ...]]
    search_columns: ClassVar[tuple[str, ...]] = ()
    order_by: ClassVar[str] = "id"
    # The column naming a record in the audit trail, and the one holding its area (None:
    # the whole deployment shares the records).
    label_column: ClassVar[str] = "name"
    area_column: ClassVar[str | None] = "area_id"

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
                + " OR ".join(db.dialect.like(f"{self.table}.{c}") for c in self.search_columns)
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
        """Create a record from cleaned and prepared data, and record it in the audit trail
        (inside the caller's write transaction)."""
        record_id = self.insert(db, actor, data)
        row = self._audit_row(db, record_id)
        audit.record(db, actor.id, "create", self.name, record_id, label=row[self.label_column],
                     new=self.audit_values(row), area_id=self._area_of(row))
        return record_id

    def update(self, db, actor: authz.User, record_id: int, data: dict[str, Any]) -> None:
        """Change a record in the actor's scope, and record what changed in the audit trail."""
        self.get(db, actor, record_id)
        before = self._audit_row(db, record_id)
        self.change(db, actor, record_id, data)
        after = self._audit_row(db, record_id)
        old, new = audit.changed(self.audit_values(before), self.audit_values(after))
        new.update(self.audit_extra(data))
        if new:
            audit.record(db, actor.id, "update", self.name, record_id,
                         label=after[self.label_column], old=old, new=new,
                         area_id=self._area_of(after), old_area_id=self._area_of(before))

    def insert(self, db, actor: authz.User, data: dict[str, Any]) -> int:
        """Write a new record (subclasses); ``create`` audits it."""
        raise NotImplementedError

    def change(self, db, actor: authz.User, record_id: int, data: dict[str, Any]) -> None:
        """Write a record's new values (subclasses); ``update`` has checked that the record is
        in the actor's scope, and audits it."""
        raise NotImplementedError

    # Audit ------------------------------------------------------------------

    def _audit_row(self, db, record_id: int) -> dict:
        return next(iter(db.query(f"{self.select_sql()} WHERE {self.table}.id = ?", [record_id])))

    def _area_of(self, row: dict) -> int | None:
        return row[self.area_column] if self.area_column else None

    def audit_values(self, row: dict) -> dict[str, Any]:
        """A record as the audit trail keeps it: the form's fields (references by code or
        name), phone numbers masked, never a password."""
        values = {}
        for field in self.schema(creating=False).fields:
            if field.kind == "password":
                continue
            value = row.get(field.name)
            values[field.name] = masking.mask_phone(value) if field.kind == "phone" else value
        return values

    def audit_extra(self, data: dict[str, Any]) -> dict[str, Any]:
        """Changes an update makes beyond the record's values (a new password)."""
        return {}

    def unique(self, db, column: str, value: Any, field: str, message: str, exclude_id=None):
        """Raise a field error if another row already has this value."""
        row = db.execute(
            f"SELECT id FROM {self.table} WHERE {column} = ? AND id IS DISTINCT FROM ?",
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
