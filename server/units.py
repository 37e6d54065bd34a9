"""Responsible units (责任单位): the bureaus, townships and utilities problems are assigned to."""

from __future__ import annotations

from server import refs
from server.i18n import gettext as _
from server.resource import Column, Resource, resolve
from server.validation import Field, Schema

SCHEMA = Schema(
    Field("name", "unit.name", required=True, max_length=60),
    Field("area_code", "unit.area", required=True, max_length=20),
    Field("contact_name", "unit.contact_name", max_length=30),
    Field("contact_phone", "unit.contact_phone", kind="phone"),
    Field("active", "common.active", kind="bool"),
)


class Units(Resource):
    name = "units"
    table = "units"
    columns = (
        Column("name", "unit.name"),
        Column("area_name", "unit.area"),
        Column("contact_name", "unit.contact_name"),
        Column("contact_phone", "unit.contact_phone"),
        Column("active", "common.active"),
    )
    search_columns = ("name", "contact_name")
    order_by = "units.name"

    def schema(self, creating):
        return SCHEMA

    def select_sql(self):
        return (
            "SELECT units.*, areas.name AS area_name, areas.code AS area_code"
            " FROM units JOIN areas ON areas.id = units.area_id"
        )

    def options(self, db, actor):
        return {"area_code": refs.area_options(db, actor)}

    def _row(self, db, actor, data):
        return {
            "name": data["name"],
            "area_id": resolve("area_code", refs.area_id, db, actor, data["area_code"]),
            "contact_name": data["contact_name"],
            "contact_phone": data["contact_phone"],
            "active": int(data["active"]),
        }

    def insert(self, db, actor, data):
        self.unique(
            db, "name", data["name"], "name", _("validation.duplicate", label=_("unit.name"))
        )
        return db["units"].insert(self._row(db, actor, data)).last_pk

    def change(self, db, actor, record_id, data):
        self.unique(
            db,
            "name",
            data["name"],
            "name",
            _("validation.duplicate", label=_("unit.name")),
            exclude_id=record_id,
        )
        db["units"].update(record_id, self._row(db, actor, data))


RESOURCE = Units()
