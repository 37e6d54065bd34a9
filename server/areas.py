"""Areas: the tree 市 → 县/区 → 乡镇/街道 → 村/社区 → 网格 that scopes every user."""

from __future__ import annotations

import threading

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
    area_column = "id"

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

    def insert(self, db, actor, data):
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

    def change(self, db, actor, record_id, data):
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


# Area paths for lists ------------------------------------------------------------

PATH_SEPARATOR = " › "
LISTED_LEVELS = range(2, 5)  # 县/区 › 乡镇/街道 › 村/社区: below the city, above the grid


class _PathCache:
    """Every area's path as lists show it, built once per database and rebuilt when an area
    changes: each write of an area moves it to the top of the change log, so the number
    and latest version of the areas' entries there say whether the map is current."""

    def __init__(self):
        self._built: dict[str, tuple[tuple, dict[int, tuple[str, str]]]] = {}
        self._lock = threading.Lock()

    def get(self, db) -> dict[int, tuple[str, str]]:
        file = db.identity
        stamp = tuple(db.execute(
            "SELECT count(*), max(version) FROM changes WHERE entity = 'area'"
        ).fetchone())
        with self._lock:
            cached = self._built.get(file)
        if cached and cached[0] == stamp:
            return cached[1]
        paths = _build_paths(db)
        with self._lock:
            self._built[file] = (stamp, paths)
        return paths


def _build_paths(db) -> dict[int, tuple[str, str]]:
    areas = {row[0]: row[1:] for row in db.execute("SELECT id, name, level, parent_id FROM areas")}
    paths = {}
    for area_id in areas:
        chain, seen, current = [], set(), area_id
        while current in areas and current not in seen:
            seen.add(current)
            name, level, parent_id = areas[current]
            chain.append((level, name))
            current = parent_id
        chain.reverse()
        listed = [name for level, name in chain if level in LISTED_LEVELS]
        full = [name for level, name in chain if level > 1]
        paths[area_id] = (PATH_SEPARATOR.join(listed) or areas[area_id][0],
                          PATH_SEPARATOR.join(full) or areas[area_id][0])
    return paths


_PATHS = _PathCache()


def path_names(db) -> dict[int, tuple[str, str]]:
    """{area id: (区 › 镇 › 村/社区, the same down to the grid)} for every area, cached."""
    return _PATHS.get(db)


def add_area_paths(db, rows: list[dict]) -> list[dict]:
    """Give each problem row (with ``area_id``) its ``area_path`` and ``area_full_path``:
    one cached map for all the rows, never a query per row."""
    paths = path_names(db)
    for row in rows:
        row["area_path"], row["area_full_path"] = paths.get(
            row["area_id"], (row.get("area_name") or "", row.get("area_name") or ""))
    return rows
