from __future__ import annotations

import datetime as dt

import sqlite_utils

from server.db.sqlite_history._shared import (
    ROLLUP_COLUMNS,
    ROLLUP_WATCHED_M009,
    STATS_FEATURES_M009,
    _rollup_sql,
    _stats_triggers,
    run_script,
)


def m009_stats_rollup(db: sqlite_utils.Database) -> None:
    """Statistics over long periods read a weekly roll-up instead of every problem.

    ``responded_in_time``: whether the unit signed, with the resident contacted,
    within the response time. The workflow freezes it at signing, as it does
    ``closed_on_time`` at closing; here it is worked out for the problems signed
    before, with the settings and calendar of now. With it, every feature but the
    deadline (compared with today) depends on the problem row alone.

    ``stats_rollup`` counts the problems of the statistics' cohort (accepted, not
    rejected or merged) per local week of acceptance, area, lead unit, category,
    row-only features and deadline, kept by triggers, twice: per district (level
    2, for the city's statistics: ~130,000 rows for a year of a million
    problems) and per town (level 3, for a district's: ~250,000). ``server.ledger.metrics``
    reads whole weeks from it for users above the town level and the days at a
    period's ends from the problems. The triggers expect ``recursive_triggers``
    (``server.db.connect`` sets it): an INSERT OR REPLACE of a problem must
    uncount the row it replaces.
    The statistics index now stores the new feature, not the response clock's
    columns; a copy led by the area serves users below the city.
    """
    from server.settings import settings
    from server.workdays import WorkCalendar

    db.execute("ALTER TABLE problems ADD COLUMN responded_in_time INTEGER")
    days = int(settings(db)["response_limit_days"])
    calendar = WorkCalendar.load(db)
    dispatch_days = [row[0] for row in db.execute(
        "SELECT DISTINCT date(dispatched_at, '+8 hours') FROM problems"
        " WHERE signed_at IS NOT NULL AND dispatched_at IS NOT NULL")]
    db.execute("CREATE TEMP TABLE response_last_days (day TEXT PRIMARY KEY, last TEXT)")
    db.conn.executemany("INSERT INTO temp.response_last_days VALUES (?, ?)", [
        (day, calendar.add_working_days_or_weekdays(dt.date.fromisoformat(day), days)
         .isoformat())
        for day in dispatch_days if day])
    db.execute(
        "UPDATE problems SET responded_in_time = (resident_contacted IS 1"
        " AND date(signed_at, '+8 hours') <= (SELECT last FROM temp.response_last_days"
        " WHERE day = date(dispatched_at, '+8 hours')))"
        " WHERE signed_at IS NOT NULL AND dispatched_at IS NOT NULL")
    db.execute("DROP TABLE temp.response_last_days")

    count_in, count_out, rebuild = _rollup_sql(STATS_FEATURES_M009)
    run_script(
        db,
        f"""
        DROP INDEX idx_problems_stats_features;
        CREATE INDEX idx_problems_stats_features ON problems(
            accepted_at, status, area_id, lead_unit_id, category_id, ({STATS_FEATURES_M009}),
            julianday(accepted_at), deadline
        );
        CREATE INDEX idx_problems_stats_area ON problems(
            area_id, accepted_at, status, lead_unit_id, category_id, ({STATS_FEATURES_M009}),
            julianday(accepted_at), deadline
        );

        CREATE TABLE stats_rollup (
            level INTEGER NOT NULL,
            week INTEGER NOT NULL,
            area_id INTEGER NOT NULL,
            unit_id INTEGER NOT NULL,
            category_id INTEGER NOT NULL,
            features INTEGER NOT NULL,
            deadline TEXT NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY ({ROLLUP_COLUMNS})
        ) WITHOUT ROWID;
        INSERT INTO stats_rollup ({ROLLUP_COLUMNS}, n) {rebuild};
        {_stats_triggers(count_in, count_out, ROLLUP_WATCHED_M009)}
        """,
    )
