from __future__ import annotations

import sqlite_utils

from server.db.sqlite_history._shared import (
    ROLLUP_WATCHED_M009,
    STATS_DROP,
    STATS_FEATURES_M021,
    _stats_build,
    run_script,
)


def m021_rules(db: sqlite_utils.Database) -> None:
    """Extensions, returns and 重办 with rules (``server/ledger/rules.py``), and the figures
    they need (docs/metrics.md).

    ``unit_dispatched_at``: the current lead unit's dispatch, which starts its response
    clock (``dispatched_at`` stays the first dispatch); NULL while no unit holds the
    problem. ``extension_count``: extensions approved. ``unjustified_returns``: returns the
    office found not justified. ``redo_pending``: a callback said "solved but 不满意" and
    the office has not yet decided 重办 or a closure with an explanation.

    The statistics' row-only features become STATS_FEATURES_M021: the indexes are rebuilt,
    the roll-up's triggers watch the new columns, and the roll-up is rebuilt. The triggers
    are dropped before the backfill, so it does not count every problem out and in.
    Independent of m022 and m024: a database that has them applies it after them.
    """
    watched = (ROLLUP_WATCHED_M009 + ", closure_kind, relapsed, resident_rating, replied_at,"
               " original_deadline, redo_count, unjustified_returns, unit_dispatched_at")
    run_script(
        db,
        f"""
        {STATS_DROP}

        ALTER TABLE problems ADD COLUMN unit_dispatched_at TEXT;
        ALTER TABLE problems ADD COLUMN extension_count INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE problems ADD COLUMN unjustified_returns INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE problems ADD COLUMN redo_pending INTEGER NOT NULL DEFAULT 0;
        UPDATE problems SET unit_dispatched_at = dispatched_at
            WHERE dispatched_at IS NOT NULL AND lead_unit_id IS NOT NULL;
        UPDATE problems SET extension_count = granted.n
            FROM (SELECT problem_id, count(*) AS n FROM problem_events
                  WHERE kind = 'approve_extension' GROUP BY problem_id) AS granted
            WHERE problems.id = granted.problem_id;

        {_stats_build(STATS_FEATURES_M021, watched)}
        """,
    )
