"""The ledger's tunable settings: defaults, overridden by rows of the ``settings`` table.

Read by the statistics (``server.ledger.metrics``), by the workflow, which freezes
whether a signing was a response (``response_limit_days``) when it happens and
says when a resident counts as unreachable (``unreachable_*``), and by the web
sessions, which end when idle (``session_idle_minutes``).
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
    # Extensions (server/ledger/rules.py): at most this many approved per problem; one of more
    # working days than extension_leader_days, or any after the first, needs a leader's
    # approval after the office's
    "extension_max_count": 1,
    "extension_leader_days": 10,
    # a web session unused for this many minutes ends (server/auth.py)
    "session_idle_minutes": 120,
    # a phone holds at most this many problems, the newest when the cap bites
    # (sync/working_set.py)
    "phone_problem_cap": 5000,
}
# The range a stored value must lie in, where it is not 0 < value <= 100.
BOUNDS = {
    "satisfaction_weight": (0, 1),
    # at least 5 minutes, at most the sessions' whole lifetime (12 hours)
    "session_idle_minutes": (5, 12 * 60),
    "extension_max_count": (1, 10),
    "extension_leader_days": (1, 60),
    "phone_problem_cap": (100, 100_000),
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
        low, high = BOUNDS.get(key, (0, 100))
        if low <= value <= high and (key in BOUNDS or value > 0):
            values[key] = value
    return values
