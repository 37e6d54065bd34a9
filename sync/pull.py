"""Pull: the changes above a cursor that this user may have on their phone.

The change log (table ``changes``, kept by triggers) holds one row per record
at the version of its latest change, so a pull reads only the rows above its
cursor through the primary key: its cost follows the number of changes, not
the size of the ledger. Call ``read_pull`` inside one read transaction so
every row comes from the same snapshot.
"""

from __future__ import annotations

import datetime as dt
import json

import sqlite_utils

from server import authz, masking
from server.timeutil import to_iso, utcnow
from sync.epoch import latest_version
from sync.push import epoch, last_mutation_id

MAX_LIMIT = 1000
MAX_CURSOR = 2**62
DEFAULT_LIMIT = 500
# Closed problems of the official's area stay on the phone this long, for
# return visits (回头看); the app drops older ones by the same rule.
RECENTLY_CLOSED = dt.timedelta(days=90)
FINISHED = ("closed", "rejected", "merged")


def _placeholders(ids) -> str:
    return ",".join("?" * len(ids))


# Loaders look records up by id. Their scope conditions are wrapped in ``+( )``,
# which keeps SQLite from using an index for them: with a long id list it would
# otherwise scan the user's (or the area's) records through the author, reporter
# or area index — seconds per page on a ledger of a million problems — instead
# of looking up the ids.


def _photos(db, record_type: str, ids: list[str]) -> dict[str, list[str]]:
    photos: dict[str, list[str]] = {}
    if not ids:
        return photos
    for record_id, sha in db.execute(
        f"SELECT record_id, sha256 FROM attachment_links WHERE record_type = ?"
        f" AND record_id IN ({_placeholders(ids)}) ORDER BY record_id, position",
        [record_type, *ids],
    ):
        photos.setdefault(record_id, []).append(sha)
    return photos


def _areas(db, user, ids):
    clause, params = authz.area_subtree(user, "areas.id")
    return {
        str(row["id"]): row
        for row in db.query(
            f"SELECT id, code, name, level, parent_id, lat, lng, active FROM areas"
            f" WHERE id IN ({_placeholders(ids)}) AND {clause}",
            [*ids, *params],
        )
    }


def _units(db, user, ids):
    return {
        str(row["id"]): row
        for row in db.query(
            f"SELECT id, name, area_id, active FROM units WHERE id IN ({_placeholders(ids)})", ids
        )
    }


def _categories(db, user, ids):
    return {
        str(row["id"]): row
        for row in db.query(
            "SELECT id, code, name, default_unit_id, time_limit_days, active FROM categories"
            f" WHERE id IN ({_placeholders(ids)})",
            ids,
        )
    }


def _visits(db, user, ids):
    rows = {
        row["id"]: {**row, "checklist": json.loads(row["checklist"])}
        for row in db.query(
            f"SELECT * FROM visits WHERE id IN ({_placeholders(ids)}) AND +author_id = ?",
            [*ids, user.id],
        )
    }
    photos = _photos(db, "visit", list(rows))
    for record_id, row in rows.items():
        row["photos"] = photos.get(record_id, [])
    return rows


def _diaries(db, user, ids):
    rows = {
        row["id"]: row
        for row in db.query(
            f"SELECT * FROM diary_entries WHERE id IN ({_placeholders(ids)})"
            " AND +author_id = ?",
            [*ids, user.id],
        )
    }
    photos = _photos(db, "diary", list(rows))
    for record_id, row in rows.items():
        row["photos"] = photos.get(record_id, [])
    return rows


def phone_problem_scope(user: authz.User) -> tuple[str, list]:
    """Problems a phone holds: the user's own reports, and the open or recently
    closed problems the user may see."""
    clause, params = authz.problem_scope(user, "p")
    cutoff = to_iso(utcnow() - RECENTLY_CLOSED)
    return (
        f"(p.reporter_id = ? OR ({clause} AND (p.status NOT IN ('closed', 'rejected', 'merged')"
        " OR p.closed_at >= ?)))",
        [user.id, *params, cutoff],
    )


PROBLEM_COLUMNS = (
    "id, ledger_no, reporter_id, visit_id, diary_id, area_id, place, lat, lng, category_id,"
    " urgency, description, resident_name, resident_phone, suggested_unit_id, source, status,"
    " lead_unit_id, deadline, deadline_provisional, solved_on_spot, supervision, found_at,"
    " accepted_at, dispatched_at, closed_at, conflict, merged_into, info_request,"
    " return_visit_due, return_visit_result"
)


def _problems(db, user, ids):
    clause, params = phone_problem_scope(user)
    rows = {
        row["id"]: row
        for row in db.query(
            f"SELECT {PROBLEM_COLUMNS} FROM problems p WHERE p.id IN ({_placeholders(ids)})"
            f" AND +({clause})",
            [*ids, *params],
        )
    }
    if not rows:
        return rows
    events: dict[str, list] = {}
    for event in db.query(
        "SELECT e.id, e.problem_id, e.kind, e.at, e.from_status, e.to_status, e.note, e.data,"
        " u.display_name AS actor_name FROM problem_events e"
        " LEFT JOIN users u ON u.id = e.actor_id"
        f" WHERE e.problem_id IN ({_placeholders(rows)}) ORDER BY e.at, e.rowid",
        list(rows),
    ):
        event["data"] = json.loads(event["data"])
        events.setdefault(event.pop("problem_id"), []).append(event)
    event_photos = _photos(db, "event", [e["id"] for evs in events.values() for e in evs])
    photos = _photos(db, "problem", list(rows))
    for problem_id, row in rows.items():
        row["events"] = masking.events(user, row, events.get(problem_id, []))
        row["resident_phone"] = masking.resident_phone(user, row) or row["resident_phone"]
        row["photos"] = photos.get(problem_id, [])
        for event in row["events"]:
            event["photos"] = event_photos.get(event["id"], [])
    return rows


def _area_or_unit_scope(user, table: str) -> tuple[str, list]:
    """Rows of ``table`` (problems, or their former places in problem_moves)
    whose area or lead unit puts them in the user's scope."""
    clauses = []
    if user.roles & {authz.OFFICE, authz.LEADER, authz.FIELD}:
        clauses.append(authz.area_subtree(user, f"{table}.area_id"))
    if authz.HANDLER in user.roles and user.unit_id is not None:
        clauses.append((f"{table}.lead_unit_id = ?", [user.unit_id]))
    if not clauses:
        return "0", []
    return (" OR ".join(f"({clause})" for clause, _ in clauses),
            [param for _, clause_params in clauses for param in clause_params])


def _removed_problems(db, user, ids) -> set[str]:
    """Changed problems no longer on this phone that the user may have held: tombstones.

    That is the user's own reports, problems still in their area or unit (but
    closed long ago, rejected or merged), problems that were in their area
    or unit before they moved (problem_moves, kept by a trigger), and problems their
    unit helps or helped with (joint_parts, removed parts included).
    """
    now_clause, now_params = _area_or_unit_scope(user, "p")
    before_clause, before_params = _area_or_unit_scope(user, "m")
    # A helper unit (协办), now or before a re-dispatch removed its part.
    helper_clause, helper_params = "0", []
    if authz.HANDLER in user.roles and user.unit_id is not None:
        helper_clause = "p.id IN (SELECT problem_id FROM joint_parts WHERE unit_id = ?)"
        helper_params = [user.unit_id]
    return {
        row[0]
        for row in db.execute(
            f"SELECT id FROM problems p WHERE id IN ({_placeholders(ids)})"
            f" AND +(p.reporter_id = ? OR ({now_clause}) OR EXISTS (SELECT 1 FROM"
            f" problem_moves m WHERE m.problem_id = p.id AND ({before_clause}))"
            f" OR {helper_clause})",
            [*ids, user.id, *now_params, *before_params, *helper_params],
        )
    }


LOADERS = {
    "area": _areas,
    "unit": _units,
    "category": _categories,
    "visit": _visits,
    "diary": _diaries,
    "problem": _problems,
}


REFERENCE_ENTITIES = ("area", "unit", "category")


def read_pull(db: sqlite_utils.Database, user: authz.User, client_id: str, cursor: int,
              limit: int = DEFAULT_LIMIT) -> dict:
    latest = latest_version(db)
    base = {
        "epoch": epoch(db),
        "last_mutation_id": last_mutation_id(db, client_id),
    }
    if cursor > latest:
        # The client has seen versions this database never reached: it was
        # restored from a backup. The client starts over and re-sends.
        return {**base, "reset": True, "cursor": 0, "has_more": True, "changes": []}
    rows = db.execute(
        "SELECT version, entity, entity_id, deleted FROM changes WHERE version > ?"
        " ORDER BY version LIMIT ?",
        [cursor, limit],
    ).fetchall()
    wanted: dict[str, list[str]] = {}
    for _version, entity, entity_id, deleted in rows:
        if not deleted:
            wanted.setdefault(entity, []).append(entity_id)
    visible = {entity: LOADERS[entity](db, user, ids) for entity, ids in wanted.items()}
    hidden_problems = [pid for pid in wanted.get("problem", []) if pid not in visible["problem"]]
    removed = _removed_problems(db, user, hidden_problems) if hidden_problems else set()
    changes = []
    for version, entity, entity_id, deleted in rows:
        record = visible.get(entity, {}).get(entity_id)
        if record is not None:
            changes.append({"entity": entity, "id": entity_id, "version": version,
                            "data": record})
        elif (deleted and entity in REFERENCE_ENTITIES) or entity_id in removed:
            changes.append({"entity": entity, "id": entity_id, "version": version,
                            "deleted": True})
    return {
        **base,
        "latest_version": latest,
        "reset": False,
        "cursor": rows[-1][0] if rows else cursor,
        "has_more": len(rows) == limit,
        "changes": changes,
    }
