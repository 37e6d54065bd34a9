"""SQL that several PostgreSQL steps share: the script runner, the change log's and the
refusing triggers, and the statistics' roll-up (docs/postgresql.md, sections 1.4 and 3).

Frozen like the steps that use it: a later change belongs in a new step.
"""

from __future__ import annotations

import re

from server.db.locks import WRITE_LOCK


def statements(script: str) -> list[str]:
    """The statements of ``script``: each ends with ``;`` at the end of a line, outside a
    ``$$`` body (one statement per ``execute``: a backend may bind even empty parameters)."""
    found, statement = [], ""
    for line in script.splitlines(keepends=True):
        statement += line
        inside_body = statement.count("$$") % 2 == 1
        if line.rstrip().endswith(";") and not inside_body:
            found.append(statement.strip())
            statement = ""
    if statement.strip():
        raise ValueError(f"incomplete SQL statement: {statement!r}")
    return found


def run_script(db, script: str) -> None:
    for statement in statements(script):
        db.execute(statement)


SEARCH_TEXT_COLUMNS = ("description", "place", "resident_name", "ledger_no")


def tokens_sql(row: str) -> str:
    """The search tokens of the problem ``row`` (NEW, OLD or an alias)."""
    columns = ", ".join(f"{row}.{column}" for column in SEARCH_TEXT_COLUMNS)
    return f"fl_search_tokens({columns})"


# (table, entity name in the change log), as SQLite's m002 froze them.
SYNCED_TABLES = (
    ("areas", "area"), ("units", "unit"), ("categories", "category"),
    ("visits", "visit"), ("diary_entries", "diary"), ("problems", "problem"),
)

# The change log's one writer (section 4.4): the write lock first, so versions become
# visible in the order they are drawn; then the record's row moves to a new version.
BUMP_CHANGE_FUNCTION = f"""
CREATE FUNCTION fl_bump_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    entity_key text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        entity_key := to_jsonb(OLD) ->> TG_ARGV[1];
    ELSE
        entity_key := to_jsonb(NEW) ->> TG_ARGV[1];
    END IF;
    PERFORM pg_advisory_xact_lock({WRITE_LOCK});
    INSERT INTO changes (version, entity, entity_id, deleted)
        VALUES (nextval('changes_version_seq'), TG_ARGV[0], entity_key,
                CASE WHEN TG_OP = 'DELETE' THEN 1 ELSE 0 END)
        ON CONFLICT (entity, entity_id)
        DO UPDATE SET version = EXCLUDED.version, deleted = EXCLUDED.deleted;
    RETURN NULL;
END
$$;
"""

# restrict_violation (SQLSTATE 23001) is an integrity error, as SQLite's RAISE(ABORT) is.
REFUSE_FUNCTION = """
CREATE FUNCTION fl_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'restrict_violation';
END
$$;
"""


def change_log_triggers() -> str:
    """Triggers that move a row to the top of the change log whenever it is written."""
    triggers = []
    for table, entity in SYNCED_TABLES:
        for event in ("INSERT", "UPDATE", "DELETE"):
            triggers.append(
                f"CREATE TRIGGER {table}_changed_{event.lower()} AFTER {event} ON {table}"
                f" FOR EACH ROW EXECUTE FUNCTION fl_bump_change('{entity}', 'id');")
    # A new event changes its problem: phones receive problems with their history.
    triggers.append(
        "CREATE TRIGGER problem_events_changed AFTER INSERT ON problem_events"
        " FOR EACH ROW EXECUTE FUNCTION fl_bump_change('problem', 'problem_id');")
    return "\n".join(triggers) + "\n"


def refusing_triggers(table: str, message: str) -> str:
    """``{table}_no_update`` and ``{table}_no_delete``: the table is written once."""
    return "".join(
        f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table}"
        f" FOR EACH ROW EXECUTE FUNCTION fl_refuse('{message}');\n"
        for event in ("UPDATE", "DELETE"))


# The statistics' row-only features, frozen per step as SQLite's STATS_FEATURES_M0xx,
# spelt for PostgreSQL: a comparison becomes a number with ::int, date(x, '+8 hours')
# is fl_local_day(x), and `x IS 1` is `x IS NOT DISTINCT FROM 1`.
STATS_FEATURES_M006 = (
    "(coalesce((status = 'closed')::int, 0) << 0)"
    " | (coalesce((status = 'closed' AND coalesce(closed_on_time, (deadline IS NULL"
    " OR fl_local_day(closed_at) <= deadline)::int) = 1)::int, 0) << 1)"
    " | (coalesce((outcome IS NOT NULL)::int, 0) << 2)"
    " | (coalesce((outcome = 'solved')::int, 0) << 3)"
    " | (coalesce((callback_reached = 1 AND callback_solved IS NOT NULL"
    " AND satisfaction IS NOT NULL)::int, 0) << 4)"
    " | (coalesce((callback_solved = 1)::int, 0) << 5)"
    " | (coalesce((CASE satisfaction WHEN 'satisfied' THEN 1 WHEN 'basically' THEN 2"
    " WHEN 'unsatisfied' THEN 3 ELSE 0 END), 0) << 6)"
    " | (coalesce((dispatched_at IS NOT NULL)::int, 0) << 8)"
)
STATS_FEATURES_M009 = (
    STATS_FEATURES_M006
    + " | (coalesce((responded_in_time IS NOT DISTINCT FROM 1)::int, 0) << 9)"
)
STATS_FEATURES_M011 = (
    STATS_FEATURES_M009
    + " | (coalesce((CASE closure_kind WHEN 'unreachable' THEN 1 WHEN 'no_contact' THEN 2"
    " WHEN 'explained' THEN 3 ELSE 0 END), 0) << 10)"
    " | (coalesce((relapsed = 1)::int, 0) << 12)"
)
STATS_FEATURES_M017 = (
    STATS_FEATURES_M011
    + " | (coalesce((CASE resident_rating WHEN 'satisfied' THEN 1 WHEN 'basically' THEN 2"
    " WHEN 'unsatisfied' THEN 3 ELSE 0 END), 0) << 13)"
)
STATS_FEATURES_M021 = (
    STATS_FEATURES_M017.replace("(dispatched_at IS NOT NULL)", "(unit_dispatched_at IS NOT NULL)")
    + " | (coalesce((CASE WHEN lead_unit_id IS NULL OR deadline IS NULL THEN 0"
    " WHEN status IN ('dispatched', 'handling') THEN 3 WHEN replied_at IS NULL THEN 0"
    " WHEN fl_local_day(replied_at) <= deadline THEN 1 ELSE 2 END), 0) << 15)"
    " | (coalesce((status = 'closed' AND (coalesce(original_deadline, deadline) IS NULL"
    " OR fl_local_day(closed_at) <= coalesce(original_deadline, deadline)))::int, 0) << 17)"
    " | (coalesce((redo_count > 0)::int, 0) << 18)"
    " | (coalesce((unjustified_returns > 0)::int, 0) << 19)"
)

_STATS_COLUMNS = re.compile(
    r"\b(status|closed_on_time|deadline|closed_at|outcome|callback_reached|callback_solved"
    r"|satisfaction|dispatched_at|responded_in_time|closure_kind|relapsed|resident_rating"
    r"|lead_unit_id|replied_at|original_deadline|redo_count|unjustified_returns"
    r"|unit_dispatched_at)\b")
ROLLUP_COLUMNS = "level, week, area_id, unit_id, category_id, features, deadline"
ROLLUP_LEVELS = (2, 3)
ROLLUP_WATCHED_M009 = (
    "accepted_at, status, area_id, lead_unit_id, category_id, deadline, closed_at,"
    " closed_on_time, outcome, callback_reached, callback_solved, satisfaction,"
    " dispatched_at, responded_in_time")


def rollup_key_sql(row: str, level: int, features: str) -> str:
    """The roll-up key (ROLLUP_COLUMNS) of the problem ``row`` at the area ``level``, as
    SQLite's ``rollup_key_sql``: local weeks from 2000-01-03 in whole milliseconds, the
    area's ancestor at ``level`` (the level-th id of its path "/1/4/17/", or the area
    itself when the path is shorter), the packed ``features``, the deadline's state."""
    path = f"(SELECT path FROM areas WHERE id = {row}.area_id)"
    features = _STATS_COLUMNS.sub(lambda m: f"{row}.{m.group(1)}", features)
    return (
        f"{level},"
        f" coalesce((round((fl_julianday({row}.accepted_at) - fl_julianday('2000-01-03'))"
        " * 86400000)::bigint + 28800000) / 604800000, -1),"
        f" coalesce(nullif(split_part({path}, '/', {level + 1}), '')::bigint, {row}.area_id),"
        f" coalesce({row}.lead_unit_id, 0), coalesce({row}.category_id, 0), {features},"
        f" CASE WHEN {row}.deadline IS NULL THEN '' WHEN {row}.status = 'closed' THEN '0'"
        f" ELSE {row}.deadline END"
    )


def _in_cohort(row: str) -> str:
    return f"{row}.accepted_at IS NOT NULL AND {row}.status NOT IN ('rejected', 'merged')"


def _rollup_function(features: str) -> str:
    """``fl_stats_rollup()``: counts a problem out of the roll-up (OLD) and in (NEW)."""
    old_keys = [f"({ROLLUP_COLUMNS}) = (SELECT {rollup_key_sql('OLD', level, features)})"
                for level in ROLLUP_LEVELS]
    count_out = "\n".join(f"""
        UPDATE stats_rollup SET n = n - 1 WHERE {old_key};
        DELETE FROM stats_rollup WHERE n = 0 AND {old_key};""" for old_key in old_keys)
    count_in = "\n".join(f"""
        INSERT INTO stats_rollup ({ROLLUP_COLUMNS}, n)
            SELECT {rollup_key_sql("NEW", level, features)}, 1
            ON CONFLICT ({ROLLUP_COLUMNS}) DO UPDATE SET n = stats_rollup.n + 1;"""
        for level in ROLLUP_LEVELS)
    return f"""
CREATE OR REPLACE FUNCTION fl_stats_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' AND {_in_cohort("OLD")} THEN{count_out}
    END IF;
    IF TG_OP <> 'DELETE' AND {_in_cohort("NEW")} THEN{count_in}
    END IF;
    RETURN NULL;
END
$$;
"""


STATS_FEATURES_LATEST = STATS_FEATURES_M021  # the head's (a step that changes them moves this)


def rollup_rebuild_sql(features: str = STATS_FEATURES_LATEST) -> str:
    """The roll-up's rows (ROLLUP_COLUMNS, n) computed from the problems, as a rebuild
    would insert them."""
    return _rebuild_sql(features)


def _rebuild_sql(features: str) -> str:
    return " UNION ALL ".join(
        f"SELECT {rollup_key_sql('p', level, features)}, count(*) FROM problems p"
        f" WHERE {_in_cohort('p')} GROUP BY 1, 2, 3, 4, 5, 6, 7" for level in ROLLUP_LEVELS)


# A step that changes the statistics' row-only features drops their indexes and the
# roll-up's triggers (STATS_DROP), changes the problems, then builds them (stats_build).
STATS_DROP = """
DROP TRIGGER problems_stats_insert ON problems;
DROP TRIGGER problems_stats_update ON problems;
DROP TRIGGER problems_stats_delete ON problems;
DROP INDEX idx_problems_stats_features;
DROP INDEX idx_problems_stats_area;
"""


def stats_indexes(features: str) -> str:
    return f"""
CREATE INDEX idx_problems_stats_features ON problems (
    accepted_at, status, area_id, lead_unit_id, category_id, ({features}),
    fl_julianday(accepted_at), deadline
);
CREATE INDEX idx_problems_stats_area ON problems (
    area_id, accepted_at, status, lead_unit_id, category_id, ({features}),
    fl_julianday(accepted_at), deadline
);
"""


def stats_build(features: str, watched: str) -> str:
    """The indexes that store ``features``, the roll-up rebuilt from the problems, and the
    triggers that keep it as problems are inserted, updated in ``watched``, deleted."""
    return f"""{stats_indexes(features)}
DELETE FROM stats_rollup;
INSERT INTO stats_rollup ({ROLLUP_COLUMNS}, n) {_rebuild_sql(features)};
{_rollup_function(features)}
CREATE TRIGGER problems_stats_insert AFTER INSERT ON problems
    FOR EACH ROW EXECUTE FUNCTION fl_stats_rollup();
CREATE TRIGGER problems_stats_update AFTER UPDATE OF {watched} ON problems
    FOR EACH ROW EXECUTE FUNCTION fl_stats_rollup();
CREATE TRIGGER problems_stats_delete AFTER DELETE ON problems
    FOR EACH ROW EXECUTE FUNCTION fl_stats_rollup();
"""


# The events that choose a reason from a list (server.ledger.reasons.KINDS) as m026 froze
# them, and the reason roll-up's rows (day, area_id, kind, code, n) computed from the
# events and their problems' areas, as m026 fills it and ``copy-to`` checks it.
REASON_KINDS = "'reject', 'return', 'request_extension', 'close_explained'"
REASON_ROLLUP_REBUILD = f"""SELECT fl_local_day(e.at), p.area_id, e.kind,
        coalesce(e.data::jsonb ->> 'reason_code', ''), count(*)
    FROM problem_events e JOIN problems p ON p.id = e.problem_id
    WHERE e.kind IN ({REASON_KINDS})
    GROUP BY 1, 2, 3, 4"""
