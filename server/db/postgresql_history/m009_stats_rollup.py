"""Statistics over long periods read a weekly roll-up instead of every problem (SQLite's
m009): ``responded_in_time`` worked out for problems signed before, ``stats_rollup`` per
district and per town kept by ``fl_stats_rollup``, the statistics indexes with m009's
features."""

import datetime as dt

from server.db.postgresql_history._shared import (
    ROLLUP_COLUMNS,
    ROLLUP_WATCHED_M009,
    STATS_FEATURES_M009,
    run_script,
    stats_build,
)

SCRIPT = f"""
DROP INDEX idx_problems_stats_features;
CREATE TABLE stats_rollup (
    level bigint NOT NULL,
    week bigint NOT NULL,
    area_id bigint NOT NULL,
    unit_id bigint NOT NULL,
    category_id bigint NOT NULL,
    features bigint NOT NULL,
    deadline text NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY ({ROLLUP_COLUMNS})
);
{stats_build(STATS_FEATURES_M009, ROLLUP_WATCHED_M009)}
"""


def backfill_responses(db) -> None:
    """Whether each signed problem was signed, with the resident contacted, within the
    response time of its local dispatch day (the settings and calendar of now)."""
    from server.settings import settings
    from server.workdays import WorkCalendar

    days = int(settings(db)["response_limit_days"])
    calendar = WorkCalendar.load(db)
    signed = "signed_at IS NOT NULL AND dispatched_at IS NOT NULL"
    dispatch_days = [row[0] for row in db.execute(
        f"SELECT DISTINCT fl_local_day(dispatched_at) FROM problems WHERE {signed}")]
    for day in filter(None, dispatch_days):
        last = calendar.add_working_days_or_weekdays(dt.date.fromisoformat(day), days)
        db.execute(
            "UPDATE problems SET responded_in_time = (resident_contacted IS NOT DISTINCT FROM 1"
            f" AND fl_local_day(signed_at) <= ?)::int WHERE {signed}"
            " AND fl_local_day(dispatched_at) = ?", [last.isoformat(), day])


def apply(db) -> None:
    db.execute("ALTER TABLE problems ADD COLUMN responded_in_time bigint")
    backfill_responses(db)
    run_script(db, SCRIPT)
