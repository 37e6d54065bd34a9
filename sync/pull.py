"""Pull: what a phone holds of the ledger, and what changed in it since its cursor.

A new phone (cursor 0) gets a snapshot of its working set (``sync/working_set.py``),
read part by part through indexes, pinned at the change log's head; then, like
every phone after, the change log above its cursor. The log (table ``changes``,
kept by triggers) holds one row per record at the version of its latest change,
so a pull reads only the rows above its cursor through the primary key: its
cost follows the number of changes, not the size of the ledger. Call
``read_working_set_pull`` (or ``read_pull``, the log alone in the first
format) inside one read transaction so every row comes from the same snapshot.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from dataclasses import dataclass

import sqlite_utils

from server import authz, masking
from server.ledger import clock
from server.timeutil import to_iso
from sync import shared_pages, working_set
from sync.epoch import latest_version
from sync.push import epoch, last_mutation_id

MAX_LIMIT = 1000
MAX_CURSOR = 2**62
DEFAULT_LIMIT = 500


def _placeholders(ids) -> str:
    # ``IN ()`` is SQLite's only; ``IN (NULL)`` matches nothing on both engines.
    return ",".join("?" * len(ids)) or "NULL"


# Loaders look records up by id. Their scope conditions are ``unindexed``,
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


def _areas(db, user, ids, horizon=None):
    clause, params = authz.area_subtree(user, "areas.id")
    return {
        str(row["id"]): row
        for row in db.query(
            f"SELECT id, code, name, level, parent_id, lat, lng, active FROM areas"
            f" WHERE id IN ({_placeholders(ids)}) AND {clause}",
            [*ids, *params],
        )
    }


def _units(db, user, ids, horizon=None):
    return {
        str(row["id"]): row
        for row in db.query(
            f"SELECT id, name, area_id, active FROM units WHERE id IN ({_placeholders(ids)})", ids
        )
    }


def _categories(db, user, ids, horizon=None):
    return {
        str(row["id"]): row
        for row in db.query(
            "SELECT id, code, name, default_unit_id, time_limit_days, active FROM categories"
            f" WHERE id IN ({_placeholders(ids)})",
            ids,
        )
    }


# Records are read by their columns, named: a table's storage may hold more (PostgreSQL's
# explicit rowid column), which must never reach a phone.
VISIT_COLUMNS = (
    "id, author_id, area_id, place, method, checklist, companions, started_at, ended_at,"
    " lat, lng, accuracy_m, created_at, updated_at"
)
DIARY_COLUMNS = (
    "id, visit_id, author_id, area_id, person_name, person_kind, phone, address, content,"
    " recorded_at, created_at, updated_at"
)


def _visits(db, user, ids, horizon):
    clause, params = working_set.visit_condition(user, horizon)
    rows = {
        row["id"]: {**row, "checklist": json.loads(row["checklist"])}
        for row in db.query(
            f"SELECT {VISIT_COLUMNS} FROM visits WHERE id IN ({_placeholders(ids)})"
            f" AND {db.dialect.unindexed(clause)}",
            [*ids, *params],
        )
    }
    photos = _photos(db, "visit", list(rows))
    for record_id, row in rows.items():
        row["photos"] = photos.get(record_id, [])
    return rows


def _diaries(db, user, ids, horizon):
    clause, params = working_set.diary_condition(user, horizon)
    rows = {
        row["id"]: row
        for row in db.query(
            f"SELECT {DIARY_COLUMNS} FROM diary_entries WHERE id IN ({_placeholders(ids)})"
            f" AND {db.dialect.unindexed(clause)}",
            [*ids, *params],
        )
    }
    photos = _photos(db, "diary", list(rows))
    for record_id, row in rows.items():
        row["photos"] = photos.get(record_id, [])
    return rows


PROBLEM_COLUMNS = (
    "id, ledger_no, reporter_id, visit_id, diary_id, area_id, place, lat, lng, category_id,"
    " urgency, description, resident_name, resident_phone, suggested_unit_id, source, status,"
    " lead_unit_id, deadline, deadline_provisional, solved_on_spot, supervision, found_at,"
    " accepted_at, dispatched_at, closed_at, conflict, merged_into, info_request,"
    " return_visit_due, return_visit_result"
)


def _problems(db, user, ids, horizon):
    return problem_records(db, user, ids, working_set.problem_condition(user, horizon))


def problem_records(db, user, ids, condition: tuple[str, list]) -> dict[str, dict]:
    """The problems of ``ids`` that meet ``condition`` (on ``problems p``), as a phone
    receives them: with their events and photos, personal data masked for this user."""
    clause, params = condition
    rows = {
        row["id"]: row
        for row in db.query(
            f"SELECT {PROBLEM_COLUMNS} FROM problems p WHERE p.id IN ({_placeholders(ids)})"
            f" AND {db.dialect.unindexed(clause)}",
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


def _removed_problems(db, user, ids) -> set[str]:
    """Changed problems no longer on this phone that the user may have held: tombstones."""
    clause, params = working_set.may_have_held(user)
    return {
        row[0]
        for row in db.execute(
            f"SELECT id FROM problems p WHERE id IN ({_placeholders(ids)})"
            f" AND {db.dialect.unindexed(clause)}",
            [*ids, *params],
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


class BadCursor(ValueError):
    pass


@dataclass(frozen=True)
class Cursor:
    """Where a phone is: the change-log version it has everything up to (during a
    snapshot: the head pinned when the snapshot began), the cutoff of its
    previous pull (for records ageing out since), the cap's floor, and during a
    snapshot the part being read and the key to continue after."""

    version: int
    since: str | None = None
    floor: str | None = None
    part: str | None = None
    after: object = None

    def token(self) -> str:
        raw = json.dumps([self.version, self.since, self.floor, self.part, self.after],
                         separators=(",", ":"))
        return TOKEN_PREFIX + base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


TOKEN_PREFIX = "c2."
MAX_TOKEN = 400


def _text_or_none(value) -> bool:
    return value is None or (isinstance(value, str) and len(value) <= 40)


def parse_cursor(raw: str) -> Cursor | None:
    """A cursor as sent by a phone: ``0`` (or nothing) for a new snapshot (None),
    a bare version (a phone from before snapshots: it goes on from there), or a
    token from a previous answer. Raises BadCursor."""
    if raw in ("", "0"):
        return None
    if raw.isascii() and raw.isdigit() and int(raw) <= MAX_CURSOR:
        return Cursor(int(raw))
    if not raw.startswith(TOKEN_PREFIX) or len(raw) > MAX_TOKEN:
        raise BadCursor(raw)
    body = raw[len(TOKEN_PREFIX):]
    try:
        version, since, floor, part, after = json.loads(
            base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, TypeError, binascii.Error):
        raise BadCursor(raw) from None
    valid_after = after is None or (isinstance(after, int) and not isinstance(after, bool)) or (
        isinstance(after, list) and len(after) == 2 and _text_or_none(after[0])
        and isinstance(after[1], int))
    if not (isinstance(version, int) and not isinstance(version, bool)
            and 0 <= version <= MAX_CURSOR and _text_or_none(since) and _text_or_none(floor)
            and (part is None or part in working_set.SNAPSHOT_ENTITIES) and valid_after
            and (part is not None or after is None)):
        raise BadCursor(raw)
    return Cursor(version, since, floor, part, after)


def _load(db, user, wanted: dict[str, list[str]], horizon) -> dict[str, dict]:
    # No ids, no query: PostgreSQL refuses the empty list ``IN ()`` that SQLite takes.
    return {entity: LOADERS[entity](db, user, ids, horizon) if ids else {}
            for entity, ids in wanted.items()}


def _log_page(db, user, cursor: int, limit: int, horizon,
              end: int | None = None) -> tuple[list[dict], int, bool]:
    """The changes above ``cursor`` (the next ``limit`` rows of the log, or those up
    to version ``end``) this user holds, and tombstones for those the user may have
    held."""
    bound, bound_params = ("", []) if end is None else (" AND version <= ?", [end])
    rows = db.execute(
        f"SELECT version, entity, entity_id, deleted FROM changes WHERE version > ?{bound}"
        " ORDER BY version LIMIT ?",
        [cursor, *bound_params, limit],
    ).fetchall()
    changes = _log_changes(db, user, rows, horizon)
    if end is not None:
        return changes, end, True
    return changes, (rows[-1][0] if rows else cursor), len(rows) == limit


def _log_changes(db, user, rows, horizon) -> list[dict]:
    wanted: dict[str, list[str]] = {}
    for _version, entity, entity_id, deleted in rows:
        if not deleted:
            wanted.setdefault(entity, []).append(entity_id)
    visible = _load(db, user, wanted, horizon)
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
    return changes


# A phone's log pages after its first end on a multiple of this many versions, so
# that the phones of one view read the same pages, which are then shared.
LOG_ALIGN = 100


def log_page_end(db, cursor: int, limit: int) -> int | None:
    """Where the log page after ``cursor`` ends: at the ``limit``-th change above it,
    rounded down to a multiple of ``LOG_ALIGN`` unless that leaves nothing; None when
    fewer than ``limit`` changes are left (the page reads to the head)."""
    row = db.execute("SELECT version FROM changes WHERE version > ? ORDER BY version"
                     " LIMIT 1 OFFSET ?", [cursor, limit - 1]).fetchone()
    if row is None:
        return None
    end = row[0] // LOG_ALIGN * LOG_ALIGN
    return end if end > cursor else row[0]


def read_pull(db: sqlite_utils.Database, user: authz.User, client_id: str, cursor: int,
              limit: int = DEFAULT_LIMIT) -> dict:
    """A pull of the first format: the change log from ``cursor`` on, as a list of
    changes (a full replay from 0). Phones use ``read_working_set_pull``."""
    latest = latest_version(db)
    base = {
        "epoch": epoch(db),
        "last_mutation_id": last_mutation_id(db, client_id),
    }
    if cursor > latest:
        # The client has seen versions this database never reached: it was
        # restored from a backup. The client starts over and re-sends.
        return {**base, "reset": True, "cursor": 0, "has_more": True, "changes": []}
    horizon = working_set.Horizon(working_set.cutoff_at(clock.utcnow()))
    changes, next_cursor, has_more = _log_page(db, user, cursor, limit, horizon)
    return {
        **base,
        "latest_version": latest,
        "reset": False,
        "cursor": next_cursor,
        "has_more": has_more,
        "changes": changes,
    }


def _versions(db, entity: str, ids: list[str]) -> dict[str, int]:
    """The version of each record's latest change (the change log's (entity, entity_id) index)."""
    return dict(db.execute(
        f"SELECT entity_id, version FROM changes WHERE entity = ?"
        f" AND entity_id IN ({_placeholders(ids)})",
        [entity, *ids],
    ).fetchall())


def _snapshot_page(db, user, cursor: Cursor, limit: int) -> tuple[list[dict], Cursor]:
    horizon = working_set.Horizon(cursor.since, cursor.floor)
    parts = working_set.SNAPSHOT_ENTITIES
    part, after = cursor.part, cursor.after
    wanted: dict[str, list[str]] = {}
    budget = limit
    while part is not None and budget > 0:
        ids, after = working_set.snapshot_page(db, user, horizon, part, after, budget)
        wanted.setdefault(part, []).extend(ids)
        budget -= len(ids)
        if after is None:
            index = parts.index(part) + 1
            part = parts[index] if index < len(parts) else None
    visible = _load(db, user, wanted, horizon)
    versions = {entity: _versions(db, entity, list(records))
                for entity, records in visible.items() if records}
    changes = [{"entity": entity, "id": record_id,
                "version": versions[entity].get(record_id, cursor.version), "data": record}
               for entity, ids in wanted.items() for record_id in ids
               if (record := visible[entity].get(record_id)) is not None]
    return changes, Cursor(cursor.version, cursor.since, cursor.floor, part, after)


def compact(changes: list[dict]) -> dict:
    """A page's changes with each entity's column names given once: ``records``
    maps an entity to its ``columns``, the ``versions`` of its rows and the
    ``rows`` (lists of values in column order); ``deleted`` maps an entity to
    the ids to remove."""
    records: dict[str, dict] = {}
    deleted: dict[str, list] = {}
    for change in changes:
        entity = change["entity"]
        if change.get("deleted"):
            deleted.setdefault(entity, []).append(change["id"])
            continue
        data = change["data"]
        page = records.get(entity)
        if page is None:
            page = records[entity] = {"columns": list(data), "versions": [], "rows": []}
        elif len(data) != len(page["columns"]) or any(k not in data for k in page["columns"]):
            raise ValueError(f"{entity} records of one page differ in their columns")
        page["versions"].append(change["version"])
        page["rows"].append([data[column] for column in page["columns"]])
    return {"records": records, "deleted": deleted}


@dataclass(frozen=True)
class Answer:
    """A pull's answer: the members of this phone (``head``: epoch, cursor, ...) and
    the page's records, either as a dict (``records``: in format 2 ``records`` and
    ``deleted``) or as a snapshot page shared between phones (``shared``)."""

    head: dict
    records: dict | None = None
    shared: shared_pages.SharedPage | None = None

    def as_dict(self) -> dict:
        records = self.records
        if self.shared is not None:
            records = json.loads(b"{" + self.shared.members + b"}")
        return {**self.head, **(records or {})}


def dump(value) -> bytes:
    """JSON as the server's JSON answers write it."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def _shared(db, user, pages: shared_pages.SharedPages, latest: int, key: tuple,
            read) -> shared_pages.SharedPage:
    """The page of ``key`` as the phones of this user's view share it: ``read`` gives its
    changes and where a snapshot goes on after it (part, after). A log page (``key``
    ending at ``log_page_end``) read at version V >= its end holds the records whose
    latest change lies in it as they were at V; one changed again comes further on."""

    def build() -> shared_pages.SharedPage:
        changes, part, after = read()
        return shared_pages.SharedPage(dump(compact(changes))[1:-1], latest, part, after)

    return pages.get((working_set.view_of(db, user), *key), latest, build)


def working_set_answer(db: sqlite_utils.Database, user: authz.User, client_id: str,
                       cursor: Cursor | None, limit: int = DEFAULT_LIMIT,
                       now: dt.datetime | None = None,
                       pages: shared_pages.SharedPages | None = None) -> Answer:
    """A phone's pull (format 2, docs/sync-protocol.md): with no cursor a snapshot
    of the working set, read through indexes and paged, pinned at the change
    log's head; then the log from there, with tombstones for records that left
    the set by a change or by time. Answers in the compact page format. With
    ``pages``, snapshot pages and whole log pages are shared between phones of the
    same view (``sync/shared_pages.py``)."""
    now = now or clock.utcnow()
    latest = latest_version(db)
    ledger_epoch = epoch(db)
    base = {"epoch": ledger_epoch, "last_mutation_id": last_mutation_id(db, client_id)}
    snapshot = cursor is None
    if snapshot:
        horizon = working_set.horizon_for(db, user, now)
        cursor = Cursor(latest, horizon.cutoff, horizon.floor, working_set.SNAPSHOT_ENTITIES[0])
    if cursor.version > latest:
        return Answer({**base, "format": 2, "reset": True, "snapshot": False, "cursor": "0",
                       "has_more": True}, {"records": {}, "deleted": {}})
    shared = records = None
    if cursor.part is not None:
        if pages is None:
            changes, next_cursor = _snapshot_page(db, user, cursor, limit)
            records = compact(changes)
        else:
            def read_snapshot_page():
                changes, following = _snapshot_page(db, user, cursor, limit)
                return changes, following.part, following.after

            shared = _shared(db, user, pages, latest,
                             (ledger_epoch, cursor.since, cursor.floor, cursor.part,
                              json.dumps(cursor.after), limit), read_snapshot_page)
            next_cursor = Cursor(min(cursor.version, shared.built_at), cursor.since,
                                 cursor.floor, shared.part, shared.after)
        has_more = True  # after the snapshot, the log from its head
    else:
        horizon = working_set.Horizon(working_set.pull_cutoff(now), cursor.floor)
        oldest = to_iso(now - working_set.RECENTLY_CLOSED - working_set.MAX_AGEING_WINDOW)
        since = max(cursor.since or horizon.cutoff, oldest)
        aged = working_set.aged_out(db, user, since, horizon)
        end = log_page_end(db, cursor.version, limit)
        if pages is not None and end is not None and not aged:
            shared = _shared(
                db, user, pages, latest,
                (ledger_epoch, "log", cursor.version, end, horizon.cutoff, horizon.floor, limit),
                lambda: (_log_page(db, user, cursor.version, limit, horizon, end)[0], None, None))
            version, has_more = end, True
        else:
            changes, version, has_more = _log_page(db, user, cursor.version, limit, horizon,
                                                   end)
            listed = {(c["entity"], c["id"]) for c in changes}
            for entity, ids in aged.items():
                changes.extend({"entity": entity, "id": record_id, "version": version,
                                "deleted": True}
                               for record_id in ids if (entity, record_id) not in listed)
            records = compact(changes)
        next_cursor = Cursor(version, horizon.cutoff, cursor.floor)
    head = {
        **base,
        "format": 2,
        "latest_version": latest,
        "reset": False,
        "snapshot": snapshot,
        "cursor": next_cursor.token(),
        "has_more": has_more,
    }
    return Answer(head, records, shared)


def read_working_set_pull(db: sqlite_utils.Database, user: authz.User, client_id: str,
                          cursor: Cursor | None, limit: int = DEFAULT_LIMIT,
                          now: dt.datetime | None = None) -> dict:
    """``working_set_answer`` as one dict."""
    return working_set_answer(db, user, client_id, cursor, limit, now).as_dict()
