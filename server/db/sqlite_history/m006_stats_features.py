from __future__ import annotations

import sqlite_utils

from server.db.sqlite_history._shared import STATS_FEATURES_M006, run_script


def m006_stats_features(db: sqlite_utils.Database) -> None:
    """Statistics read the cohort's time-independent features from an index.

    The index holds, besides the columns the statistics query reads, the
    values of three expressions of that query (``server.ledger.metrics``): the packed
    features that depend on the problem row alone (its ``stored_features_sql``,
    frozen here as text), and the Julian days of acceptance and dispatch.
    SQLite reads an indexed expression from the index when the query's
    expression is the same, and otherwise computes it from the row, so the
    figures never depend on this index, only the speed. It replaces
    ``idx_problems_stats`` (m004), which the statistics alone used.

    Also an index on ``visit_id`` (each listed visit counts its problems, which
    without it reads every problem), and visits in order of time, for the home
    page's latest visits.
    """
    features = STATS_FEATURES_M006
    run_script(
        db,
        f"""
        DROP INDEX idx_problems_stats;
        CREATE INDEX idx_problems_stats_features ON problems(
            accepted_at, status, area_id, lead_unit_id, category_id, ({features}),
            julianday(accepted_at), julianday(dispatched_at), resident_contacted, signed_at,
            deadline
        );
        CREATE INDEX idx_problems_visit ON problems(visit_id);
        CREATE INDEX idx_visits_started ON visits(started_at);
        """,
    )
