"""The working set: which records a phone holds, in one place.

For a user, the phone holds

- their own visits and diary entries begun in the last 90 days;
- the problems they reported, and those of their scope (``authz.problem_scope``:
  their area subtree; a handler's unit's), while open or closed in the last
  90 days (for 回头看), capped at the setting ``phone_problem_cap``: when more
  than that many would be held, only those found at or after a *floor* are
  kept, the found_at of the cap-th newest (the scope is already the user's own
  area, the nearest there is: newest is what decides);
- the areas of their subtree, and all units and categories.

A set is described by a ``Horizon``: the cutoff (now - 90 days) and the floor.
The floor is fixed when a phone takes a snapshot and travels in its cursor, so
that membership is a function of a record's state and the horizon alone: a
record enters only by a change (a new problem is newer than any floor; none
enters because others left), and leaves by a change (closed long ago, merged,
moved away) or by time (its closure crosses the 90-day line), which
``aged_out`` finds through the closed_at index. Between snapshots the set grows
past the cap by the problems found since; the next snapshot (a reset, a
restore, a new phone) tightens it. Anything outside the set is looked up
online (``sync/lookup.py``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from server import authz
from server.ledger.states import FINISHED_STATES
from server.settings import settings
from server.timeutil import to_iso

RECENTLY_CLOSED = dt.timedelta(days=90)
# A phone's previous pull is trusted at most this far back when looking for
# records that aged out since (a forged or ancient cursor must not scan the
# ledger); older ones are dropped by the phone's own housekeeping anyway.
MAX_AGEING_WINDOW = dt.timedelta(days=400)
_FINISHED_SQL = "(" + ", ".join(f"'{state}'" for state in FINISHED_STATES) + ")"
# Newest problems first with the columns that decide membership (m023): read alone.
WORKING_SET_INDEX = "idx_problems_working_set"


@dataclass(frozen=True)
class Horizon:
    cutoff: str  # ISO time: finished problems closed before it are out
    floor: str | None = None  # found_at below which scope problems are out (the cap)


def cutoff_at(now: dt.datetime) -> str:
    return to_iso(now - RECENTLY_CLOSED)


def problem_cap(db) -> int:
    return int(settings(db)["phone_problem_cap"])


def _live(table: str) -> str:
    return f"({table}.status NOT IN {_FINISHED_SQL} OR {table}.closed_at >= ?)"


def scope_clause(user: authz.User, table: str = "p") -> tuple[str, list]:
    """The problems the user may see (``authz.problem_scope``): the capped part of the set."""
    return authz.problem_scope(user, table)


def _area_or_unit(user: authz.User, table: str) -> tuple[str, list]:
    """Rows of ``table`` (problems, or their former places in problem_moves) whose area
    or lead unit puts them in the user's scope."""
    clauses = []
    if user.roles & {authz.OFFICE, authz.LEADER, authz.FIELD}:
        clauses.append(authz.area_subtree(user, f"{table}.area_id"))
    if authz.HANDLER in user.roles and user.unit_id is not None:
        clauses.append((f"{table}.lead_unit_id = ?", [user.unit_id]))
    if not clauses:
        return "1 = 0", []
    return ("(" + " OR ".join(f"({clause})" for clause, _ in clauses) + ")",
            [param for _, clause_params in clauses for param in clause_params])


def may_have_held(user: authz.User) -> tuple[str, list]:
    """The condition on ``problems p`` for a problem this user's phone may have held,
    now or before, whatever its state: the user's own reports, problems in their
    area or unit, problems that were there before they moved (problem_moves, kept
    by a trigger), and problems their unit helps or helped with (joint_parts,
    removed parts included). Only such users receive a problem's tombstone."""
    now_clause, now_params = _area_or_unit(user, "p")
    before_clause, before_params = _area_or_unit(user, "m")
    helper_clause, helper_params = "1 = 0", []
    if authz.HANDLER in user.roles and user.unit_id is not None:
        helper_clause = "p.id IN (SELECT problem_id FROM joint_parts WHERE unit_id = ?)"
        helper_params = [user.unit_id]
    return (f"(p.reporter_id = ? OR {now_clause} OR EXISTS (SELECT 1 FROM problem_moves m"
            f" WHERE m.problem_id = p.id AND {before_clause}) OR {helper_clause})",
            [user.id, *now_params, *before_params, *helper_params])


def _candidates(user: authz.User, horizon: Horizon, table: str) -> tuple[str, list]:
    """The user's own problems and their scope's, open or closed recently (no cap)."""
    scope, params = scope_clause(user, table)
    return (f"(({table}.reporter_id = ? OR {scope}) AND {_live(table)})",
            [user.id, *params, horizon.cutoff])


def problem_condition(user: authz.User, horizon: Horizon, table: str = "p") -> tuple[str, list]:
    """The SQL condition on ``problems <table>`` for a problem in the working set."""
    clause, params = _candidates(user, horizon, table)
    if horizon.floor is not None:
        clause, params = f"({clause} AND {table}.found_at >= ?)", [*params, horizon.floor]
    return clause, params


def visit_condition(user: authz.User, horizon: Horizon, table: str = "visits") -> tuple[str, list]:
    return f"({table}.author_id = ? AND {table}.started_at >= ?)", [user.id, horizon.cutoff]


def diary_condition(user: authz.User, horizon: Horizon,
                    table: str = "diary_entries") -> tuple[str, list]:
    return f"({table}.author_id = ? AND {table}.recorded_at >= ?)", [user.id, horizon.cutoff]


def problem_floor(db, user: authz.User, cutoff: str, cap: int) -> str | None:
    """The found_at of the cap-th newest problem of the set, or None when the set
    holds at most ``cap`` problems.

    Counted first through the reporter, area and unit indexes (at most cap + 1
    rows), so that a small set is never sorted; a larger one walks the newest
    problems down the covering index of m023 until cap of them are in the set.
    """
    clause, params = _candidates(user, Horizon(cutoff), "p")
    count = db.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM problems p WHERE {clause} LIMIT ?) AS found",
        [*params, cap + 1],
    ).fetchone()[0]
    if count <= cap:
        return None
    row = db.execute(
        f"SELECT p.found_at FROM problems p {db.dialect.index_hint(WORKING_SET_INDEX)}"
        f" WHERE {clause}"
        " ORDER BY p.found_at DESC LIMIT 1 OFFSET ?",
        [*params, cap - 1],
    ).fetchone()
    return row[0] if row else None


def pull_cutoff(now: dt.datetime) -> str:
    """The cutoff of a pull (a snapshot or a log page) now: that of the start of the
    hour, so that the phones pulling within one hour share pages
    (``sync/shared_pages.py``). A record closed in the hour before the 90-day line
    leaves at the first pull of the next hour (the phone drops it offline on time)."""
    return cutoff_at(now.replace(minute=0, second=0, microsecond=0))


def horizon_for(db, user: authz.User, now: dt.datetime) -> Horizon:
    """The horizon of a new snapshot taken now."""
    cutoff = pull_cutoff(now)
    return Horizon(cutoff, problem_floor(db, user, cutoff, problem_cap(db)))


def view_of(db, user: authz.User) -> tuple:
    """What a snapshot page holds for this user besides its horizon and position: two
    users with the same view receive the same pages. The conditions above and the
    masking rule (``authz.may_see_resident_phone``) read the user's roles, area and
    unit, and the user's id only through their own records (reports, visits, diary
    entries): a user who has none shares the view of everyone with the same roles,
    area and unit (a new official's first phone, a rollout of many)."""
    owns = db.execute(
        "SELECT EXISTS (SELECT 1 FROM problems WHERE reporter_id = ?)"
        " OR EXISTS (SELECT 1 FROM visits WHERE author_id = ?)"
        " OR EXISTS (SELECT 1 FROM diary_entries WHERE author_id = ?)",
        [user.id, user.id, user.id],
    ).fetchone()[0]
    return (user.id if owns else None, tuple(sorted(user.roles)), user.area_path,
            user.unit_id)


# Snapshot pages -------------------------------------------------------------------
#
# A snapshot reads each entity's part of the set in turn, in pages keyed by
# rowid (problems: newest first, keyed by (found_at, rowid)), each page through
# an index of that part: its cost follows the set, not the ledger.

SNAPSHOT_ENTITIES = ("area", "unit", "category", "visit", "diary", "problem")


def _rowid_page(db, table: str, condition: tuple[str, list], after, limit: int):
    clause, params = condition
    after = after or 0
    rows = db.execute(
        f"SELECT rowid, id FROM {table} WHERE {clause} AND rowid > ? ORDER BY rowid LIMIT ?",
        [*params, after, limit],
    ).fetchall()
    return [str(row[1]) if table in ("areas", "units", "categories") else row[1]
            for row in rows], (rows[-1][0] if len(rows) == limit else None)


def _problem_page(db, user, horizon: Horizon, after, limit: int):
    """The set's problems, newest first. Under a cap, read down the covering index
    to the floor; else through the reporter, area and unit indexes (at most cap
    problems, sorted)."""
    clause, params = problem_condition(user, horizon, "p")
    indexed = (f" {db.dialect.index_hint(WORKING_SET_INDEX)}" if horizon.floor is not None
               else "")
    key_clause, key_params = "", []
    if after:
        key_clause, key_params = " AND (p.found_at, p.rowid) < (?, ?)", list(after)
    # found_at and rowid only, so that the walk reads the index alone; then the page's ids.
    rows = db.execute(
        f"SELECT p.found_at, p.rowid FROM problems p{indexed} WHERE {clause}{key_clause}"
        " ORDER BY p.found_at DESC, p.rowid DESC LIMIT ?",
        [*params, *key_params, limit],
    ).fetchall()
    ids = dict(db.execute(
        f"SELECT rowid, id FROM problems WHERE rowid IN ({','.join('?' * len(rows))})",
        [row[1] for row in rows],
    ).fetchall()) if rows else {}
    return ([ids[row[1]] for row in rows],
            [rows[-1][0], rows[-1][1]] if len(rows) == limit else None)


def snapshot_page(db, user: authz.User, horizon: Horizon, part: str, after, limit: int):
    """The ids of the next page of one part of the set, and the key to continue
    after (None when the part is done)."""
    if part == "area":
        clause, params = authz.area_subtree(user, "areas.id")
        return _rowid_page(db, "areas", (clause, params), after, limit)
    if part == "unit":
        return _rowid_page(db, "units", ("1 = 1", []), after, limit)
    if part == "category":
        return _rowid_page(db, "categories", ("1 = 1", []), after, limit)
    if part == "visit":
        return _rowid_page(db, "visits", visit_condition(user, horizon), after, limit)
    if part == "diary":
        return _rowid_page(db, "diary_entries", diary_condition(user, horizon), after, limit)
    return _problem_page(db, user, horizon, after, limit)


# Leaving by time --------------------------------------------------------------------


def aged_out(db, user: authz.User, since: str, horizon: Horizon) -> dict[str, list[str]]:
    """Records that left the set because time passed from ``since`` (the cutoff of
    the phone's previous pull) to ``horizon.cutoff``: finished problems whose
    closure crossed the 90-day line, and visits and diary entries that did.
    Read through the closed_at, (author, started_at) and (author, recorded_at)
    indexes: the cost follows the records that aged out."""
    if since >= horizon.cutoff:
        return {}
    held, held_params = may_have_held(user)
    problems = [row[0] for row in db.execute(
        f"SELECT p.id FROM problems p {db.dialect.index_hint('idx_problems_closed')}"
        f" WHERE p.closed_at >= ? AND p.closed_at < ?"
        f" AND p.status IN {_FINISHED_SQL} AND {db.dialect.unindexed(held)}",
        [since, horizon.cutoff, *held_params],
    )]
    visits = [row[0] for row in db.execute(
        "SELECT id FROM visits WHERE author_id = ? AND started_at >= ? AND started_at < ?",
        [user.id, since, horizon.cutoff],
    )]
    diaries = [row[0] for row in db.execute(
        "SELECT id FROM diary_entries WHERE author_id = ? AND recorded_at >= ? AND recorded_at < ?",
        [user.id, since, horizon.cutoff],
    )]
    return {name: ids for name, ids in
            (("problem", problems), ("visit", visits), ("diary", diaries)) if ids}
