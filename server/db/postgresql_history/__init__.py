"""PostgreSQL's schema history: the same steps as SQLite's, by number and name, each
creating what its SQLite twin leaves behind (docs/postgresql.md, section 3).

``migrate`` applies the missing steps in order, each in its own transaction after the
write lock (two servers starting together migrate once), recording each in
``fieldledger_migrations``. It needs only ``db.execute(sql, params)`` with ``?``
placeholders on a connection in autocommit mode.
"""

from __future__ import annotations

import importlib

from server.db.locks import WRITE_LOCK
from server.timeutil import now_iso

STEPS = (
    "m001_foundation", "m002_sync", "m003_ledger", "m004_search", "m005_search_function",
    "m006_stats_features", "m007_problem_moves", "m008_search_areas", "m009_stats_rollup",
    "m010_pilot", "m011_closures", "m013_lockout", "m014_accounts", "m015_audit",
    "m016_supervision", "m017_tracking", "m018_joint", "m019_reasons", "m020_reports",
    "m021_rules", "m022_device_health", "m023_working_set", "m024_ask_reporter",
    "m025_form_drafts", "m026_reason_rollup", "m027_events_kind_index",
    "m028_order_indexes", "m029_row_search_tokens",
)
LOCK = f"SELECT pg_advisory_xact_lock({WRITE_LOCK})"


def migrate(db, stop_before: str | None = None) -> list[str]:
    """Apply every step not yet applied, up to (not including) ``stop_before``; return
    the names applied."""
    if stop_before is not None and stop_before not in STEPS:
        raise ValueError(f"no migration named {stop_before!r}")
    _in_transaction(db, lambda: db.execute(
        "CREATE TABLE IF NOT EXISTS fieldledger_migrations"
        " (name text PRIMARY KEY, applied_at text NOT NULL)"))
    applied = []
    for name in STEPS:
        if name == stop_before:
            break
        if _in_transaction(db, lambda name=name: _apply_once(db, name)):
            applied.append(name)
    return applied


def _apply_once(db, name: str) -> bool:
    done = db.execute("SELECT 1 FROM fieldledger_migrations WHERE name = ?", [name])
    if done.fetchone():
        return False
    importlib.import_module(f"{__name__}.{name}").apply(db)
    db.execute("INSERT INTO fieldledger_migrations (name, applied_at) VALUES (?, ?)",
               [name, now_iso()])
    return True


def _in_transaction(db, work):
    db.execute("BEGIN")
    try:
        db.execute(LOCK)
        result = work()
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return result
