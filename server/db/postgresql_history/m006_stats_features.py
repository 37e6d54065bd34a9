"""Statistics read the cohort's time-independent features from an index (SQLite's m006):
the packed row-only features and the Julian days of acceptance and dispatch. Also indexes
on a problem's visit and on visits in order of time."""

from server.db.postgresql_history._shared import STATS_FEATURES_M006, run_script

SCRIPT = f"""
DROP INDEX idx_problems_stats;
CREATE INDEX idx_problems_stats_features ON problems(
    accepted_at, status, area_id, lead_unit_id, category_id, ({STATS_FEATURES_M006}),
    fl_julianday(accepted_at), fl_julianday(dispatched_at), resident_contacted, signed_at,
    deadline
);
CREATE INDEX idx_problems_visit ON problems(visit_id);
CREATE INDEX idx_visits_started ON visits(started_at);
"""


def apply(db) -> None:
    run_script(db, SCRIPT)
