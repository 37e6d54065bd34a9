from __future__ import annotations

import sqlite_utils

from server.db.sqlite_history._shared import (
    ROLLUP_WATCHED_M009,
    STATS_DROP,
    STATS_FEATURES_M011,
    _stats_build,
    run_script,
)


def m011_closures(db: sqlite_utils.Database) -> None:
    """The statistics read how a problem was closed without a valid callback and whether it
    relapsed.

    Two row-only features join m009's (STATS_FEATURES_M011): ``closure_kind``
    (无法回访, 无回访对象 and 解释说明办结 are counted apart: the first two leave the
    samples of 解决率 and 满意率, see docs/metrics.md) and ``relapsed``. The statistics
    indexes are rebuilt to store them, the roll-up's triggers watch the two columns and
    pack them, and the roll-up is rebuilt from the problems.
    """
    watched = ROLLUP_WATCHED_M009 + ", closure_kind, relapsed"
    run_script(
        db,
        f"""
        {STATS_DROP}
        {_stats_build(STATS_FEATURES_M011, watched)}
        """,
    )
