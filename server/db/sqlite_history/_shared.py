"""What SQLite's schema history shares: running a script in the migration's
transaction, the change log's triggers, the indexed search text, and the
statistics' packed features and weekly roll-up.

The ``STATS_FEATURES_M0xx`` values and every SQL spelling a migration used are
frozen: a migration that shipped is never edited, and neither is what it ran.
"""

from __future__ import annotations

import re
import sqlite3

import sqlite_utils


def run_script(db: sqlite_utils.Database, script: str) -> None:
    """Run SQL statements one by one.

    ``executescript`` would commit the migration's open transaction first, so
    the script is split into complete statements instead.
    """
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            if statement.strip():
                db.execute(statement)
            statement = ""
    if statement.strip():
        raise ValueError(f"incomplete SQL statement: {statement!r}")


# (table, entity name in the change log). Frozen with m002: a later change
# to the synced tables belongs in a new migration.
SYNCED_TABLES = (
    ("areas", "area"), ("units", "unit"), ("categories", "category"),
    ("visits", "visit"), ("diary_entries", "diary"), ("problems", "problem"),
)


def _bump(entity: str, id_expression: str, deleted: int = 0) -> str:
    key = f"CAST({id_expression} AS TEXT)"
    return (
        f"DELETE FROM changes WHERE entity = '{entity}' AND entity_id = {key};\n"
        f"INSERT INTO changes (entity, entity_id, deleted) VALUES ('{entity}', {key}, {deleted});"
    )


def _change_log_triggers(tables) -> str:
    """Triggers that move a row to the top of the change log whenever it is written."""
    statements = []
    for table, entity in tables:
        for event in ("INSERT", "UPDATE"):
            statements.append(
                f"CREATE TRIGGER {table}_changed_{event.lower()} AFTER {event} ON {table}\n"
                f"BEGIN\n{_bump(entity, 'NEW.id')}\nEND;"
            )
        statements.append(
            f"CREATE TRIGGER {table}_changed_delete AFTER DELETE ON {table}\n"
            f"BEGIN\n{_bump(entity, 'OLD.id', deleted=1)}\nEND;"
        )
    # A new event changes its problem: phones receive problems with their history.
    statements.append(
        "CREATE TRIGGER problem_events_changed AFTER INSERT ON problem_events\n"
        f"BEGIN\n{_bump('problem', 'NEW.problem_id')}\nEND;"
    )
    return "\n".join(statements) + "\n"


def _search_body(row: str) -> str:
    """SQL for the indexed text of one problem row (``row`` is NEW, OLD or a table alias).

    ASCII and other non-CJK characters are copied as they are (FTS5's unicode61
    tokenizer makes words of them); each CJK character becomes the bigram it
    starts, or itself at the end of a run: 漏水 -> " 漏水  水 ". Frozen with
    m004: server/ledger/queries.py builds its queries on this shape.
    """
    text = (
        f"{row}.description || ' ' || {row}.place || ' ' || {row}.resident_name"
        f" || ' ' || ifnull({row}.ledger_no, '')"
    )
    return f"""(WITH RECURSIVE s(rest) AS (SELECT {text}
            UNION ALL SELECT substr(rest, 2) FROM s WHERE length(rest) > 1)
        SELECT group_concat(CASE
            WHEN unicode(rest) NOT BETWEEN 13312 AND 40959 THEN substr(rest, 1, 1)
            WHEN unicode(substr(rest, 2)) BETWEEN 13312 AND 40959
                THEN ' ' || substr(rest, 1, 2) || ' '
            ELSE ' ' || substr(rest, 1, 1) || ' ' END, '')
        FROM s)"""


SEARCH_BODY_FUNCTION = "fl_search_body"
# The CJK code points of m004's rule (13312-40959), which become bigrams.
_CJK_RUN = re.compile("[\u3400-\u9fff]+")


def _bigrams(run: re.Match) -> str:
    chars = run.group()
    return "".join(f" {chars[i:i + 2]} " for i in range(len(chars) - 1)) + f" {chars[-1]} "


def search_body(description, place, resident_name, ledger_no) -> str | None:
    """The indexed text of one problem: the rule of m004's ``_search_body``, in Python.

    Frozen with m005: the full-text index holds this text (the index m004
    built included, as the rule is the same), and a contentless FTS5 index
    can only remove a row given the very text it indexed.
    """
    if description is None or place is None or resident_name is None:
        return None  # as SQL's || gives
    text = f"{description} {place} {resident_name} {ledger_no or ''}"
    # SQLite's text functions stop at a NUL character; m004's rule did too.
    text, nul, _rest = text.partition("\0")
    if nul and not text:
        return "  "
    return _CJK_RUN.sub(_bigrams, text)


def register_functions(conn: sqlite3.Connection) -> None:
    """The SQL functions the schema's triggers call; every connection that writes needs them."""
    conn.create_function(SEARCH_BODY_FUNCTION, 4, search_body, deterministic=True)


SEARCH_TEXT_COLUMNS = ("description", "place", "resident_name", "ledger_no")


def search_body_sql(row: str) -> str:
    """SQL for the indexed text of the problem row ``row`` (NEW, OLD or an alias)."""
    columns = ", ".join(f"{row}.{column}" for column in SEARCH_TEXT_COLUMNS)
    return f"{SEARCH_BODY_FUNCTION}({columns})"


# Problems written while a deferral is open enter the index once, at its end
# (``server.db.search_indexed_at_end``). CROSS JOIN keeps SQLite reading the
# few pending keys first, not every key.
INDEX_PENDING_SQL = f"""INSERT INTO problems_fts (rowid, body)
    SELECT k.key, {search_body_sql("p")} FROM problems_search_pending s
    CROSS JOIN problem_search_keys k ON k.key = s.key
    CROSS JOIN problems p ON p.id = k.problem_id"""


# m006's row-only statistics features, as its index stores them (and m009's extend them).
STATS_FEATURES_M006 = (
    "(ifnull((status = 'closed'), 0) << 0)"
    " | (ifnull((status = 'closed' AND coalesce(closed_on_time, deadline IS NULL"
    " OR date(closed_at, '+8 hours') <= deadline) = 1), 0) << 1)"
    " | (ifnull((outcome IS NOT NULL), 0) << 2)"
    " | (ifnull((outcome = 'solved'), 0) << 3)"
    " | (ifnull((callback_reached = 1 AND callback_solved IS NOT NULL"
    " AND satisfaction IS NOT NULL), 0) << 4)"
    " | (ifnull((callback_solved = 1), 0) << 5)"
    " | (ifnull((CASE satisfaction WHEN 'satisfied' THEN 1 WHEN 'basically' THEN 2"
    " WHEN 'unsatisfied' THEN 3 ELSE 0 END), 0) << 6)"
    " | (ifnull((dispatched_at IS NOT NULL), 0) << 8)"
)

# m009's row-only statistics features: m006's, and whether a signing was a response.
# Frozen here as text: the index and the roll-up's triggers spell them exactly as
# server.ledger.metrics.stored_features_sql() does (tests/test_metrics_fast.py checks it).
STATS_FEATURES_M009 = STATS_FEATURES_M006 + " | (ifnull((responded_in_time IS 1), 0) << 9)"

# m011's: m009's, and how a problem was closed without a valid callback, and whether it
# ever relapsed (反弹) at a 回头看.
STATS_FEATURES_M011 = (
    STATS_FEATURES_M009
    + " | (ifnull((CASE closure_kind WHEN 'unreachable' THEN 1 WHEN 'no_contact' THEN 2"
    " WHEN 'explained' THEN 3 ELSE 0 END), 0) << 10)"
    " | (ifnull((relapsed = 1), 0) << 12)"
)

# m017's row-only statistics features: m011's, and the resident's own rating on the tracking
# page (群众自评): 1 satisfied, 2 basically, 3 unsatisfied, 0 none.
STATS_FEATURES_M017 = (
    STATS_FEATURES_M011
    + " | (ifnull((CASE resident_rating WHEN 'satisfied' THEN 1 WHEN 'basically' THEN 2"
    " WHEN 'unsatisfied' THEN 3 ELSE 0 END), 0) << 13)"
)

# m021's: m017's with a unit's dispatch for the first dispatch, and the lead unit's reply
# against the deadline, closing by the original deadline, 重办 and unjustified returns.
STATS_FEATURES_M021 = (
    STATS_FEATURES_M017.replace("(dispatched_at IS NOT NULL)", "(unit_dispatched_at IS NOT NULL)")
    + " | (ifnull((CASE WHEN lead_unit_id IS NULL OR deadline IS NULL THEN 0"
    " WHEN status IN ('dispatched', 'handling') THEN 3 WHEN replied_at IS NULL THEN 0"
    " WHEN date(replied_at, '+8 hours') <= deadline THEN 1 ELSE 2 END), 0) << 15)"
    " | (ifnull((status = 'closed' AND (coalesce(original_deadline, deadline) IS NULL"
    " OR date(closed_at, '+8 hours') <= coalesce(original_deadline, deadline))), 0) << 17)"
    " | (ifnull((redo_count > 0), 0) << 18)"
    " | (ifnull((unjustified_returns > 0), 0) << 19)"
)

# The features rollup_key_sql packs by default (the triggers of the newest migration).
STATS_FEATURES_LATEST = STATS_FEATURES_M021

_STATS_COLUMNS = re.compile(
    r"\b(status|closed_on_time|deadline|closed_at|outcome|callback_reached|callback_solved"
    r"|satisfaction|dispatched_at|responded_in_time|closure_kind|relapsed|resident_rating"
    r"|lead_unit_id|replied_at|original_deadline|redo_count|unjustified_returns"
    r"|unit_dispatched_at)\b")
ROLLUP_COLUMNS = "level, week, area_id, unit_id, category_id, features, deadline"
ROLLUP_LEVELS = (2, 3)  # districts (for the city's statistics) and towns (for a district's)


def rollup_key_sql(row: str, level: int, features: str | None = None) -> str:
    """SQL for the roll-up key (ROLLUP_COLUMNS) of the problem ``row`` (NEW, OLD or an alias)
    at the area ``level``.

    The week counts local Monday-to-Sunday weeks from 2000-01-03, in whole
    milliseconds (Julian days hold them), exactly. The area is the problem's
    area's ancestor at ``level`` (the level-th id of its path), or the area
    itself when its path is shorter; areas never move, so it never changes. A
    closed problem keeps only whether it had a deadline ('0'), an open one its
    deadline, which the statistics compare with today. ``features``: the packed row-only
    features as a migration froze them (STATS_FEATURES_M009, ...), the latest by default.
    """
    path = f"(SELECT path FROM areas WHERE id = {row}.area_id)"
    rest = f"substr({path}, 2)"
    for _ in range(level - 1):
        rest = f"substr({rest}, instr({rest}, '/') + 1)"
    features = _STATS_COLUMNS.sub(lambda m: f"{row}.{m.group(1)}",
                                  features or STATS_FEATURES_LATEST)
    return (
        f"{level},"
        f" ifnull((CAST(round((julianday({row}.accepted_at) - julianday('2000-01-03'))"
        " * 86400000) AS INTEGER) + 28800000) / 604800000, -1),"
        f" ifnull(nullif(CAST({rest} AS INTEGER), 0), {row}.area_id),"
        f" ifnull({row}.lead_unit_id, 0), ifnull({row}.category_id, 0), {features},"
        f" CASE WHEN {row}.deadline IS NULL THEN '' WHEN {row}.status = 'closed' THEN '0'"
        f" ELSE {row}.deadline END"
    )


def _in_cohort(row: str) -> str:
    return f"{row}.accepted_at IS NOT NULL AND {row}.status NOT IN ('rejected', 'merged')"


ROLLUP_WATCHED_M009 = (
    "accepted_at, status, area_id, lead_unit_id, category_id, deadline, closed_at,"
    " closed_on_time, outcome, callback_reached, callback_solved, satisfaction,"
    " dispatched_at, responded_in_time")


def _rollup_sql(features: str) -> tuple[str, str, str]:
    """The roll-up's trigger statements that count a problem in (NEW) and out (OLD), and
    the SELECT that rebuilds it, for the packed ``features`` of a migration."""
    count_in = "\n".join(f"""INSERT INTO stats_rollup ({ROLLUP_COLUMNS}, n)
            SELECT {rollup_key_sql("NEW", level, features)}, 1 WHERE {_in_cohort("NEW")}
            ON CONFLICT DO UPDATE SET n = n + 1;""" for level in ROLLUP_LEVELS)
    old_keys = [rollup_key_sql("OLD", level, features) for level in ROLLUP_LEVELS]
    count_out = "\n".join(f"""UPDATE stats_rollup SET n = n - 1
            WHERE {_in_cohort("OLD")}
            AND ({ROLLUP_COLUMNS}) = (SELECT {old_key});
            DELETE FROM stats_rollup
            WHERE n = 0 AND ({ROLLUP_COLUMNS}) = (SELECT {old_key});""" for old_key in old_keys)
    rebuild = " UNION ALL ".join(
        f"SELECT {rollup_key_sql('p', level, features)}, count(*) FROM problems p"
        f" WHERE {_in_cohort('p')} GROUP BY 1, 2, 3, 4, 5, 6, 7" for level in ROLLUP_LEVELS)
    return count_in, count_out, rebuild


# A migration that changes the statistics' row-only features drops their indexes and the
# roll-up's triggers (STATS_DROP), changes the problems, then builds them for its features
# (_stats_build): the indexes that store them, the roll-up rebuilt from the problems, and
# the triggers that keep it, watching ``watched``.
STATS_DROP = """
        DROP TRIGGER problems_stats_insert;
        DROP TRIGGER problems_stats_update;
        DROP TRIGGER problems_stats_delete;
        DROP INDEX idx_problems_stats_features;
        DROP INDEX idx_problems_stats_area;"""


def _stats_build(features: str, watched: str) -> str:
    count_in, count_out, rebuild = _rollup_sql(features)
    return f"""
        CREATE INDEX idx_problems_stats_features ON problems(
            accepted_at, status, area_id, lead_unit_id, category_id, ({features}),
            julianday(accepted_at), deadline
        );
        CREATE INDEX idx_problems_stats_area ON problems(
            area_id, accepted_at, status, lead_unit_id, category_id, ({features}),
            julianday(accepted_at), deadline
        );
        DELETE FROM stats_rollup;
        INSERT INTO stats_rollup ({ROLLUP_COLUMNS}, n) {rebuild};
        {_stats_triggers(count_in, count_out, watched)}"""


def _stats_triggers(count_in: str, count_out: str, watched: str) -> str:
    """The triggers that keep the roll-up as problems are inserted, updated in
    ``watched`` columns, and deleted."""
    return f"""
        CREATE TRIGGER problems_stats_insert AFTER INSERT ON problems
        BEGIN
            {count_in}
        END;
        CREATE TRIGGER problems_stats_update AFTER UPDATE OF {watched} ON problems
        BEGIN
            {count_out}
            {count_in}
        END;
        CREATE TRIGGER problems_stats_delete AFTER DELETE ON problems
        BEGIN
            {count_out}
        END;"""
