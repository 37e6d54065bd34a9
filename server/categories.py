"""Problem categories, each with a default responsible unit and time limit."""

from __future__ import annotations

from server import refs
from server.i18n import gettext as _
from server.resource import Column, Resource, resolve
from server.validation import Field, Schema

SCHEMA = Schema(
    Field("code", "category.code", required=True, max_length=20, pattern=r"[0-9A-Za-z_-]+"),
    Field("name", "category.name", required=True, max_length=30),
    Field("default_unit_name", "category.default_unit", max_length=60),
    Field(
        "time_limit_days",
        "category.time_limit_days",
        kind="int",
        required=True,
        min_value=1,
        max_value=365,
    ),
    Field("active", "common.active", kind="bool"),
)


class Categories(Resource):
    name = "categories"
    table = "categories"
    columns = (
        Column("code", "category.code"),
        Column("name", "category.name"),
        Column("default_unit_name", "category.default_unit"),
        Column("time_limit_days", "category.time_limit_days"),
        Column("active", "common.active"),
    )
    search_columns = ("code", "name")
    order_by = "categories.code"
    area_column = None  # shared by the whole deployment

    def schema(self, creating):
        return SCHEMA

    def scope(self, actor):
        # Categories are shared by the whole deployment.
        return "1 = 1", []

    def select_sql(self):
        return (
            "SELECT categories.*, COALESCE(units.name, '') AS default_unit_name FROM categories"
            " LEFT JOIN units ON units.id = categories.default_unit_id"
        )

    def options(self, db, actor):
        return {"default_unit_name": refs.unit_options(db)}

    def _row(self, db, data):
        unit_id = None
        if data["default_unit_name"]:
            unit_id = resolve("default_unit_name", refs.unit_id, db, data["default_unit_name"])
        return {
            "code": data["code"],
            "name": data["name"],
            "default_unit_id": unit_id,
            "time_limit_days": data["time_limit_days"],
            "active": int(data["active"]),
        }

    def _unique(self, db, data, exclude_id=None):
        for column, label in (("code", "category.code"), ("name", "category.name")):
            self.unique(
                db,
                column,
                data[column],
                column,
                _("validation.duplicate", label=_(label)),
                exclude_id=exclude_id,
            )

    def insert(self, db, actor, data):
        self._unique(db, data)
        return db["categories"].insert(self._row(db, data)).last_pk

    def change(self, db, actor, record_id, data):
        self._unique(db, data, exclude_id=record_id)
        db["categories"].update(record_id, self._row(db, data))


RESOURCE = Categories()
