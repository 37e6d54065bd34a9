"""The ledger's tunable settings: defaults, overridden by rows of the ``settings`` table.

Read by the statistics (``server.metrics``) and by the workflow, which freezes
whether a signing was a response (``response_limit_days``) when it happens and
says when a resident counts as unreachable (``unreachable_*``).
"""

from __future__ import annotations

SETTINGS = {
    # 满意率 = (satisfied + w x basically satisfied) / valid callbacks
    "satisfaction_weight": 0.9,
    # 响应率: signed (and resident contacted) within this many working days after dispatch
    "response_limit_days": 1,
    # units, categories and areas with fewer problems than this are not ranked
    "stats_min_sample": 5,
    # 无法回访: the office may close a problem whose resident could not be reached after this
    # many failed callback attempts, made on at least this many different local days
    "unreachable_attempts": 3,
    "unreachable_min_days": 2,
}


def settings(db) -> dict:
    """SETTINGS, overridden by the ``settings`` table where it holds a valid number."""
    values = dict(SETTINGS)
    keys = list(SETTINGS)
    rows = db.execute(
        f"SELECT key, value FROM settings WHERE key IN ({', '.join('?' * len(keys))})", keys
    ).fetchall()
    for key, raw in rows:
        try:
            value = type(SETTINGS[key])(raw)
        except ValueError:
            continue
        if (key == "satisfaction_weight" and 0 <= value <= 1) or (
            key != "satisfaction_weight" and 0 < value <= 100
        ):
            values[key] = value
    return values
