"""The statistics read how a problem was closed without a valid callback and whether it
relapsed: the indexes, the roll-up and its triggers are rebuilt with m011's features."""

from server.db.postgresql_history._shared import (
    ROLLUP_WATCHED_M009,
    STATS_DROP,
    STATS_FEATURES_M011,
    run_script,
    stats_build,
)

WATCHED = ROLLUP_WATCHED_M009 + ", closure_kind, relapsed"


def apply(db) -> None:
    run_script(db, STATS_DROP + stats_build(STATS_FEATURES_M011, WATCHED))
