"""Extensions, returns and 重办 with rules (``server/ledger/rules.py``): the unit's own
dispatch, counts of extensions and unjustified returns, a pending 重办 decision; the
statistics' features become m021's. The roll-up's triggers are dropped before the
backfill, so it does not count every problem out and in."""

from server.db.postgresql_history._shared import (
    ROLLUP_WATCHED_M009,
    STATS_DROP,
    STATS_FEATURES_M021,
    run_script,
    stats_build,
)

WATCHED = (ROLLUP_WATCHED_M009 + ", closure_kind, relapsed, resident_rating, replied_at,"
           " original_deadline, redo_count, unjustified_returns, unit_dispatched_at")

SCRIPT = """
ALTER TABLE problems ADD COLUMN unit_dispatched_at text;
ALTER TABLE problems ADD COLUMN extension_count bigint NOT NULL DEFAULT 0;
ALTER TABLE problems ADD COLUMN unjustified_returns bigint NOT NULL DEFAULT 0;
ALTER TABLE problems ADD COLUMN redo_pending bigint NOT NULL DEFAULT 0;
UPDATE problems SET unit_dispatched_at = dispatched_at
    WHERE dispatched_at IS NOT NULL AND lead_unit_id IS NOT NULL;
UPDATE problems SET extension_count = granted.n
    FROM (SELECT problem_id, count(*) AS n FROM problem_events
          WHERE kind = 'approve_extension' GROUP BY problem_id) AS granted
    WHERE problems.id = granted.problem_id;
"""


def apply(db) -> None:
    run_script(db, STATS_DROP + SCRIPT + stats_build(STATS_FEATURES_M021, WATCHED))
