from __future__ import annotations

import sqlite_utils

from server.db.sqlite_history._shared import (
    ROLLUP_WATCHED_M009,
    STATS_DROP,
    STATS_FEATURES_M017,
    _stats_build,
    run_script,
)


def m017_tracking(db: sqlite_utils.Database) -> None:
    """The resident's tracking page (``server/ledger/tracking.py``): a link without login.

    ``tracking_hash`` is the SHA-256 (hex) of the link's random token, made on the phone
    (or by the office on re-issue); the token itself is never stored. NULL: no link, or
    revoked. ``resident_rating`` (satisfied, basically, unsatisfied), ``resident_comment``,
    ``resident_rated_at`` (the first rating: the change window counts from it) and
    ``resident_rating_changed_at`` hold the resident's own rating of the handling.
    ``tracking_hits`` counts the page's requests per client address and per link for the
    rate limit (rows older than the window are deleted as new ones come).

    The rating joins the row-only statistics features (STATS_FEATURES_M017), as m011's
    did: the statistics indexes are rebuilt to store it, the roll-up's triggers watch the
    column and pack it, and the roll-up is rebuilt from the problems.
    """
    watched = ROLLUP_WATCHED_M009 + ", closure_kind, relapsed, resident_rating"
    run_script(
        db,
        f"""
        ALTER TABLE problems ADD COLUMN tracking_hash TEXT;
        CREATE UNIQUE INDEX idx_problems_tracking ON problems(tracking_hash)
            WHERE tracking_hash IS NOT NULL;
        ALTER TABLE problems ADD COLUMN resident_rating TEXT
            CHECK (resident_rating IN ('satisfied', 'basically', 'unsatisfied'));
        ALTER TABLE problems ADD COLUMN resident_comment TEXT NOT NULL DEFAULT '';
        ALTER TABLE problems ADD COLUMN resident_rated_at TEXT;
        ALTER TABLE problems ADD COLUMN resident_rating_changed_at TEXT;
        CREATE TABLE tracking_hits (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL,
            at TEXT NOT NULL
        );
        CREATE INDEX idx_tracking_hits_key ON tracking_hits(key, at);
        CREATE INDEX idx_tracking_hits_at ON tracking_hits(at);

        {STATS_DROP}
        {_stats_build(STATS_FEATURES_M017, watched)}
        """,
    )
