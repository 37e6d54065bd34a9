"""Areas: the tree 市 → 县/区 → 乡镇/街道 → 村/社区 → 网格 that scopes every user."""

from __future__ import annotations

from server import authz, refs
from server.i18n import gettext as _
from server.resource import Column, Resource, resolve
from server.validation import Field, Schema, ValidationError

LEVELS = {
    "1": "area.level_1",
    "2": "area.level_2",
    "3": "area.level_3",
    "4": "area.level_4",
    "5": "area.level_5",
}

SCHEMA = Schema(
    Field("code", "area.code", required=True, max_length=20, pattern=r"[0-9A-Za-z_-]+"),
    Field("name", "area.name", required=True, max_length=50),
    Field("level", "area.level", kind="choice", required=True, choices=LEVELS),
    Field("parent_code", "area.parent", max_length=20),
    Field("active", "common.active", kind="bool"),
)


def insert_area(db, code: str, name: str, level: int, parent_id: int | None, **extra) -> int:
    """Insert an area and set its materialized path ("/1/4/17/")."""
    if parent_id is None:
        parent_path = "/"
    else:
        parent_path = db.execute("SELECT path FROM areas WHERE id = ?", [parent_id]).fetchone()[0]
    area_id = (
        db["areas"]
        .insert(
            {
                "code": code,
                "name": name,
                "level": level,
                "parent_id": parent_id,
                "path": f"pending:{code}",
                **extra,
            }
        )
        .last_pk
    )
    db.execute("UPDATE areas SET path = ? WHERE id = ?", [f"{parent_path}{area_id}/", area_id])
    return area_id


class Areas(Resource):
    name = "areas"
    table = "areas"
    columns = (
        Column("code", "area.code"),
        Column("name", "area.name"),
        Column("level_name", "area.level"),
        Column("parent_name", "area.parent"),
        Column("active", "common.active"),
    )
    search_columns = ("code", "name")
    order_by = "areas.path"

    def schema(self, creating: bool) -> Schema:
        return SCHEMA

    def scope(self, actor):
        return authz.admin_scope(actor, "areas", "id")

    def select_sql(self) -> str:
        return (
            "SELECT areas.*, parent.name AS parent_name, parent.code AS parent_code"
            " FROM areas LEFT JOIN areas parent ON parent.id = areas.parent_id"
        )

    def list(self, db, actor, query="", page=1):
        listing = super().list(db, actor, query, page)
        for row in listing.rows:
            row["level_name"] = _(LEVELS[str(row["level"])])
        return listing

    def options(self, db, actor):
        return {"parent_code": refs.area_options(db, actor)}

    def form_values(self, db, actor, record_id):
        row = self.get(db, actor, record_id)
        return {**row, "level": str(row["level"]), "parent_code": row["parent_code"] or ""}

    def _parent(self, db, actor, data) -> int | None:
        level = int(data["level"])
        if not data["parent_code"]:
            if level != 1:
                raise ValidationError(
                    {"parent_code": _("validation.required", label=_("area.parent"))}
                )
            if db.execute("SELECT 1 FROM areas WHERE level = 1").fetchone():
                raise ValidationError({"level": _("area.one_root")})
            return None
        parent_id = resolve("parent_code", refs.area_id, db, actor, data["parent_code"])
        parent_level = db.execute("SELECT level FROM areas WHERE id = ?", [parent_id]).fetchone()[0]
        if parent_level != level - 1:
            raise ValidationError({"level": _("area.level_mismatch")})
        return parent_id

    def create(self, db, actor, data):
        self.unique(
            db, "code", data["code"], "code", _("validation.duplicate", label=_("area.code"))
        )
        parent_id = self._parent(db, actor, data)
        return insert_area(
            db,
            data["code"],
            data["name"],
            int(data["level"]),
            parent_id,
            active=int(data["active"]),
        )

    def update(self, db, actor, record_id, data):
        current = self.get(db, actor, record_id)
        self.unique(
            db,
            "code",
            data["code"],
            "code",
            _("validation.duplicate", label=_("area.code")),
            exclude_id=record_id,
        )
        if int(data["level"]) != current["level"] or data["parent_code"] != (
            current["parent_code"] or ""
        ):
            raise ValidationError({"parent_code": _("area.cannot_move")})
        if record_id == actor.area_id and not data["active"]:
            raise ValidationError({"active": _("area.cannot_disable_own")})
        db["areas"].update(
            record_id, {"code": data["code"], "name": data["name"], "active": int(data["active"])}
        )


RESOURCE = Areas()
