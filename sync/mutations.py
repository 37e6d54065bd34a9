"""What each mutation does to the database.

Every handler runs inside the push's write transaction, after its args passed
their JSON Schema. It raises ``Rejected`` for anything that can never succeed.
Ids are made on the phone, so applying the same mutation twice changes
nothing the second time, and saving the same id again is an update by its
owner — never a second row.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass

import sqlite_utils

from server import authz
from server.timeutil import now_iso, to_iso
from sync import sql
from sync.errors import Rejected
from sync.ids import derived_id, uuid7
from sync.validate import parse_time

EDITABLE_PROBLEM_FIELDS = (
    "area_id", "place", "lat", "lng", "category_id", "urgency", "description",
    "resident_name", "resident_phone", "suggested_unit_id",
)
CAPTURE = "sync.capture"


@dataclass(frozen=True)
class Context:
    user: authz.User
    client_id: str
    # Reference rows (areas, categories, units) looked up during this push:
    # no mutation changes them, so each is read once per push.
    references: dict[tuple[str, object], bool] = dataclasses.field(default_factory=dict)


Handler = Callable[[sqlite_utils.Database, Context, dict], None]
HANDLERS: dict[str, Handler] = {}


def handler(name: str):
    def register(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        return fn

    return register


# Checks shared by the handlers ---------------------------------------------


def _require(ctx: Context, permission: str) -> None:
    if not ctx.user.can(permission):
        raise Rejected("forbidden")


def _reference_exists(db, ctx: Context, table: str, record_id, condition: str = "",
                      params=()) -> bool:
    key = (table, record_id)
    if key not in ctx.references:
        row = db.execute(f"SELECT 1 FROM {table} WHERE id = ? {condition}",
                         [record_id, *params]).fetchone()
        ctx.references[key] = row is not None
    return ctx.references[key]


def _area_in_scope(db, ctx: Context, area_id: int | None) -> int | None:
    if area_id is None:
        return None
    clause, params = authz.area_subtree(ctx.user, "areas.id")
    if not _reference_exists(db, ctx, "areas", area_id, f"AND {clause}", params):
        raise Rejected("area_out_of_scope")
    return area_id


def _reference_id(db, ctx: Context, table: str, record_id) -> object:
    """The id of a category or unit if it exists, else None (see ``_existing_id``)."""
    if record_id is None:
        return None
    return record_id if _reference_exists(db, ctx, table, record_id) else None


def _existing_id(db, table: str, record_id, extra: str = "", params=()) -> object:
    """The id if such a row exists (and matches ``extra``), else None.

    References that went stale on the phone (a category retired since the
    last pull, a visit that was itself rejected) are dropped rather than
    losing the record that names them.
    """
    if record_id is None:
        return None
    row = db.execute(f"SELECT id FROM {table} WHERE id = ? {extra}", [record_id, *params])
    return record_id if row.fetchone() else None


def _check_photos(db, ctx: Context, photos: list[str], field: str) -> None:
    # Only photos this user uploaded, or announced while the server does not
    # hold them yet (text syncs before photos): knowing a stored photo's hash
    # must not be a way to attach it to one's own record and then view it.
    for sha in photos:
        upload = db.execute(
            "SELECT max(CASE WHEN completed_at IS NULL THEN 0 ELSE 1 END) FROM uploads"
            " WHERE sha256 = ? AND user_id = ?",
            [sha, ctx.user.id],
        ).fetchone()[0]
        if upload is None:
            raise Rejected("unknown_photo", field=field)
        if not upload and db.execute(
            "SELECT 1 FROM attachments WHERE sha256 = ?", [sha]
        ).fetchone():
            raise Rejected("unknown_photo", field=field)


def _link_photos(db, record_type: str, record_id: str, photos: list[str]) -> bool:
    """Set a record's photos, in order; True if they changed."""
    current = [row[0] for row in db.execute(
        "SELECT sha256 FROM attachment_links WHERE record_type = ? AND record_id = ?"
        " ORDER BY position",
        [record_type, record_id],
    )]
    if current == list(photos):
        return False
    db.execute(
        "DELETE FROM attachment_links WHERE record_type = ? AND record_id = ?",
        [record_type, record_id],
    )
    for position, sha in enumerate(photos):
        sql.insert(db, "attachment_links", {
            "sha256": sha, "record_type": record_type, "record_id": record_id,
            "position": position,
        })
    return True


def _touch(db, table: str, record_id: str, now: str) -> None:
    """Photos are not a column: an UPDATE stamps the row in the change log, so phones
    that hold the record receive its new photos."""
    db.execute(f"UPDATE {table} SET updated_at = ? WHERE id = ?", [now, record_id])


def _owned(db, table: str, owner_column: str, record_id: str, ctx: Context) -> dict | None:
    """The existing row with this id, if any; refuses one that belongs to someone else."""
    row = sql.row(db, f"SELECT * FROM {table} WHERE id = ?", [record_id])
    if row is not None and row[owner_column] != ctx.user.id:
        raise Rejected("not_owner")
    return row


def _upsert_changed(db, table: str, existing: dict | None, row: dict) -> None:
    """Insert, or update only if something differs (so a re-send bumps no version)."""
    if existing is None:
        sql.insert(db, table, row)
        return
    changed = {k: v for k, v in row.items() if k != "created_at" and existing.get(k) != v}
    changed.pop("updated_at", None)
    if changed:
        sql.update(db, table, row["id"], {**changed, "updated_at": row["updated_at"]})


def _stamp(value: str | None, field: str) -> str | None:
    return to_iso(parse_time(value, field)) if value else None


# Handlers -------------------------------------------------------------------


@handler("visit.save")
def visit_save(db, ctx: Context, args: dict) -> None:
    _require(ctx, CAPTURE)
    existing = _owned(db, "visits", "author_id", args["id"], ctx)
    photos = args.get("photos", [])
    _check_photos(db, ctx, photos, "photos")
    now = now_iso()
    _upsert_changed(db, "visits", existing, {
        "id": args["id"],
        "author_id": ctx.user.id,
        "area_id": _area_in_scope(db, ctx, args.get("area_id")),
        "place": args.get("place", ""),
        "method": args["method"],
        "checklist": json.dumps(args.get("checklist", [])),
        "companions": args.get("companions", ""),
        "started_at": _stamp(args["started_at"], "started_at"),
        "ended_at": _stamp(args.get("ended_at"), "ended_at"),
        "lat": args.get("lat"),
        "lng": args.get("lng"),
        "accuracy_m": args.get("accuracy_m"),
        "created_at": now,
        "updated_at": now,
    })
    if "photos" in args and _link_photos(db, "visit", args["id"], photos) and existing:
        _touch(db, "visits", args["id"], now)


@handler("diary.save")
def diary_save(db, ctx: Context, args: dict) -> None:
    _require(ctx, CAPTURE)
    existing = _owned(db, "diary_entries", "author_id", args["id"], ctx)
    photos = args.get("photos", [])
    _check_photos(db, ctx, photos, "photos")
    now = now_iso()
    visit_id = _existing_id(db, "visits", args.get("visit_id"), "AND author_id = ?",
                            [ctx.user.id])
    _upsert_changed(db, "diary_entries", existing, {
        "id": args["id"],
        "visit_id": visit_id,
        "author_id": ctx.user.id,
        "area_id": _area_in_scope(db, ctx, args.get("area_id")),
        "person_name": args.get("person_name", ""),
        "person_kind": args["person_kind"],
        "phone": args.get("phone", ""),
        "address": args.get("address", ""),
        "content": args["content"],
        "recorded_at": _stamp(args["recorded_at"], "recorded_at"),
        "created_at": now,
        "updated_at": now,
    })
    if "photos" in args and _link_photos(db, "diary", args["id"], photos) and existing:
        _touch(db, "diary_entries", args["id"], now)


def _problem_fields(db, ctx: Context, args: dict) -> dict:
    """The editable problem fields present in args, with references checked."""
    fields = {key: args[key] for key in EDITABLE_PROBLEM_FIELDS if key in args}
    if "area_id" in fields:
        if fields["area_id"] is None:
            fields["area_id"] = ctx.user.area_id
        _area_in_scope(db, ctx, fields["area_id"])
    if "category_id" in fields:
        fields["category_id"] = _reference_id(db, ctx, "categories", fields["category_id"])
    if "suggested_unit_id" in fields:
        fields["suggested_unit_id"] = _reference_id(db, ctx, "units", fields["suggested_unit_id"])
    return fields


def _event(db, problem_id: str, kind: str, actor_id: int, at: str, event_id: str | None = None,
           note: str = "", data: dict | None = None, from_status=None, to_status=None) -> str:
    event_id = event_id or uuid7()
    sql.insert(db, "problem_events", {
        "id": event_id, "problem_id": problem_id, "kind": kind, "actor_id": actor_id,
        "at": at, "from_status": from_status, "to_status": to_status, "note": note,
        "data": json.dumps(data or {}, ensure_ascii=False),
    })
    return event_id


def _restore_links(db, ctx: Context, existing: dict, args: dict) -> None:
    """Fill the visit and diary links a report lost when what it names was not on
    the server yet (after a restore, the visit can wait for its photo while the
    report is applied)."""
    links = {}
    for column, table in (("visit_id", "visits"), ("diary_id", "diary_entries")):
        if existing[column] is None:
            found = _existing_id(db, table, args.get(column), "AND author_id = ?",
                                 [ctx.user.id])
            if found:
                links[column] = found
    if links:
        if "visit_id" in links and existing["source"] == "field":
            links["source"] = "visit"
        sql.update(db, "problems", existing["id"], {**links, "updated_at": now_iso()})
        existing.update(links)


@handler("problem.report")
def problem_report(db, ctx: Context, args: dict) -> None:
    _require(ctx, CAPTURE)
    existing = _owned(db, "problems", "reporter_id", args["id"], ctx)
    if existing is not None:
        # The same report sent again (a retry, or a re-send after a restore):
        # while nobody has accepted it, it corrects the report; afterwards the
        # office owns the record and the re-send changes nothing but the links
        # its first sending had to drop.
        _restore_links(db, ctx, existing, args)
        if existing["status"] == "submitted":
            area_id = args.get("area_id") or existing["area_id"]
            fields = _problem_fields(db, ctx, {**args, "area_id": area_id})
            _edit(db, ctx, existing, fields, base_version=None)
        return
    photos = args.get("photos", [])
    _check_photos(db, ctx, photos, "photos")
    solved = args.get("solved_on_spot")
    if solved:
        _check_photos(db, ctx, solved.get("photos", []), "solved_on_spot.photos")
    fields = _problem_fields(db, ctx, {"area_id": None, **args})
    visit_id = _existing_id(db, "visits", args.get("visit_id"), "AND author_id = ?",
                            [ctx.user.id])
    if fields["area_id"] == ctx.user.area_id and visit_id and args.get("area_id") is None:
        visit_area = db.execute("SELECT area_id FROM visits WHERE id = ?", [visit_id]).fetchone()
        fields["area_id"] = visit_area[0] or ctx.user.area_id
    found_at = _stamp(args["found_at"], "found_at")
    tracking_hash = args.get("tracking_hash")
    if tracking_hash and db.execute("SELECT 1 FROM problems WHERE tracking_hash = ?",
                                    [tracking_hash]).fetchone():
        raise Rejected("tracking_hash_taken")
    now = now_iso()
    status = "callback" if solved else "submitted"
    sql.insert(db, "problems", {
        "id": args["id"],
        "reporter_id": ctx.user.id,
        "visit_id": visit_id,
        "diary_id": _existing_id(db, "diary_entries", args.get("diary_id"),
                                 "AND author_id = ?", [ctx.user.id]),
        "urgency": "normal",
        "place": "",
        **fields,
        "source": "visit" if visit_id else "field",
        "status": "submitted",
        "solved_on_spot": int(bool(solved)),
        "tracking_hash": tracking_hash,
        "found_at": found_at,
        "created_at": now,
        "updated_at": now,
    })
    _link_photos(db, "problem", args["id"], photos)
    _event(db, args["id"], "reported", ctx.user.id, found_at, to_status="submitted",
           event_id=derived_id(args["id"], "reported"))
    if solved:
        event_id = _event(
            db, args["id"], "solved_on_spot", ctx.user.id, found_at, note=solved["note"],
            from_status="submitted", to_status=status,
            event_id=derived_id(args["id"], "solved_on_spot"),
        )
        _link_photos(db, "event", event_id, solved.get("photos", []))
        # Solved on the spot: it enters the ledger at once, awaiting the callback.
        from server.ledger.clock import local_today
        from server.ledger.numbering import next_ledger_no

        sql.update(db, "problems", args["id"], {
            "status": status, "accepted_at": now, "closed_on_time": 1,
            "ledger_no": next_ledger_no(db, local_today().year),
        })


@handler("problem.note")
def problem_note(db, ctx: Context, args: dict) -> None:
    existing = db.execute(
        "SELECT problem_id, actor_id FROM problem_events WHERE id = ?", [args["id"]]
    ).fetchone()
    if existing is not None:
        if existing[1] != ctx.user.id or existing[0] != args["problem_id"]:
            raise Rejected("id_taken")
        return  # already recorded: events are append-only
    clause, params = authz.problem_scope(ctx.user, "p")
    row = db.execute(
        f"SELECT p.id, p.status, p.merged_into, p.reporter_id, p.info_request FROM problems p"
        f" WHERE p.id = ? AND {clause}",
        [args["problem_id"], *params],
    ).fetchone()
    if row is None:
        raise Rejected("problem_not_found")
    photos = args.get("photos", [])
    if not args.get("note", "").strip() and not photos:
        raise Rejected("empty", field="note")
    _check_photos(db, ctx, photos, "photos")
    # Notes on a merged duplicate land on the original it was merged into — only if the
    # user may see that original. The office may merge a field report into a problem of
    # another area: a note there would be written where its author has no say, and one
    # kept on the closed duplicate would be read by nobody who handles the problem. So
    # it is refused, and the official learns that the note was not recorded.
    problem_id = row[2] or row[0]
    if problem_id != row[0] and db.execute(
        f"SELECT 1 FROM problems p WHERE p.id = ? AND {clause}", [problem_id, *params]
    ).fetchone() is None:
        raise Rejected("merged_out_of_scope")
    data = {}
    if args.get("lat") is not None and args.get("lng") is not None:
        data = {"lat": args["lat"], "lng": args["lng"]}
    if problem_id != args["problem_id"]:
        data["via"] = args["problem_id"]
    if problem_id == row[0] and row[3] == ctx.user.id and row[4]:
        # The reporter's note answers the office's question (请补充).
        data["answers"] = "info_request"
        sql.update(db, "problems", problem_id, {"info_request": None})
    _event(db, problem_id, "note", ctx.user.id, _stamp(args["at"], "at"),
           event_id=args["id"], note=args.get("note", ""), data=data)
    _link_photos(db, "event", args["id"], photos)


def update_problem_fields(db, problem: dict, fields: dict,
                          base_version: int | None) -> tuple[dict, list[str]]:
    """Write field changes last-writer-wins; returns ({field: {old, new}}, conflicting fields).

    The one path every change of a problem's reported fields takes (a phone's
    edit, the office restoring an overwritten value): each changed field's
    version in ``field_versions`` moves to the version this write gets in the
    change log, so a later edit based on an older version is flagged, and
    phones pull the new value. A field is conflicting when it changed after
    ``base_version`` (the version the editing phone had); None checks nothing.
    """
    versions = json.loads(problem["field_versions"] or "{}")
    changes, conflicts = {}, []
    for field, new in fields.items():
        old = problem[field]
        if old == new:
            continue
        changes[field] = {"old": old, "new": new}
        if base_version is not None and versions.get(field, 0) > base_version:
            conflicts.append(field)
    if not changes:
        return changes, conflicts
    assignments = ", ".join(f"{field} = ?" for field in changes)
    # Each field at the version the change-log trigger is about to give this row.
    field_versions_sql = "field_versions"
    for field in changes:
        field_versions_sql = db.dialect.json_set(
            field_versions_sql, field, db.dialect.next_version_sql)
    db.execute(
        f"UPDATE problems SET {assignments}, field_versions = {field_versions_sql},"
        f" conflict = CASE WHEN ? = 1 THEN 1 ELSE conflict END, updated_at = ? WHERE id = ?",
        [*(change["new"] for change in changes.values()), int(bool(conflicts)), now_iso(),
         problem["id"]],
    )
    return changes, sorted(conflicts)


def _edit(db, ctx: Context, problem: dict, fields: dict, base_version: int | None) -> None:
    """Apply a phone's field changes, flagging fields changed since base_version."""
    changes, conflicts = update_problem_fields(db, problem, fields, base_version)
    if changes:
        _event(db, problem["id"], "edited", ctx.user.id, now_iso(),
               data={"changes": changes, "conflicts": conflicts,
                     "base_version": base_version})


@handler("problem.edit")
def problem_edit(db, ctx: Context, args: dict) -> None:
    problem = sql.row(db, "SELECT * FROM problems WHERE id = ?", [args["problem_id"]])
    if problem is None:
        raise Rejected("problem_not_found")
    if problem["reporter_id"] != ctx.user.id:
        raise Rejected("not_owner")
    if problem["status"] != "submitted":
        raise Rejected("already_accepted")
    _edit(db, ctx, problem, _problem_fields(db, ctx, args["changes"]), args["base_version"])
