"""SQLite's schema history: every change is a named migration, one module each, applied
in order, each in one transaction (``sqlite_utils`` ``Migrations``).

Never edit a migration that has shipped; add a new one: a module named after its
function, and its place at the end of ``HISTORY``. A database records each migration
applied by the set's name and the function's name, so neither ever changes.
The tables are described in docs/architecture.md.
"""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

from server.db.sqlite_history._shared import (
    INDEX_PENDING_SQL,
    ROLLUP_LEVELS,
    register_functions,
    rollup_key_sql,
    search_body,
)
from server.db.sqlite_history.m001_foundation import m001_foundation
from server.db.sqlite_history.m002_sync import m002_sync
from server.db.sqlite_history.m003_ledger import m003_ledger
from server.db.sqlite_history.m004_search import m004_search
from server.db.sqlite_history.m005_search_function import m005_search_function
from server.db.sqlite_history.m006_stats_features import m006_stats_features
from server.db.sqlite_history.m007_problem_moves import m007_problem_moves
from server.db.sqlite_history.m008_search_areas import m008_search_areas
from server.db.sqlite_history.m009_stats_rollup import m009_stats_rollup
from server.db.sqlite_history.m010_pilot import m010_pilot
from server.db.sqlite_history.m011_closures import m011_closures
from server.db.sqlite_history.m013_lockout import m013_lockout
from server.db.sqlite_history.m014_accounts import m014_accounts
from server.db.sqlite_history.m015_audit import m015_audit
from server.db.sqlite_history.m016_supervision import m016_supervision
from server.db.sqlite_history.m017_tracking import m017_tracking
from server.db.sqlite_history.m018_joint import m018_joint
from server.db.sqlite_history.m019_reasons import m019_reasons
from server.db.sqlite_history.m020_reports import m020_reports
from server.db.sqlite_history.m021_rules import m021_rules
from server.db.sqlite_history.m022_device_health import m022_device_health
from server.db.sqlite_history.m023_working_set import m023_working_set
from server.db.sqlite_history.m024_ask_reporter import m024_ask_reporter
from server.db.sqlite_history.m025_form_drafts import m025_form_drafts
from server.db.sqlite_history.m026_reason_rollup import m026_reason_rollup
from server.db.sqlite_history.m027_events_kind_index import m027_events_kind_index
from server.db.sqlite_history.m028_order_indexes import m028_order_indexes
from server.db.sqlite_history.m029_row_search_tokens import m029_row_search_tokens

HISTORY = (
    m001_foundation,
    m002_sync,
    m003_ledger,
    m004_search,
    m005_search_function,
    m006_stats_features,
    m007_problem_moves,
    m008_search_areas,
    m009_stats_rollup,
    m010_pilot,
    m011_closures,
    m013_lockout,
    m014_accounts,
    m015_audit,
    m016_supervision,
    m017_tracking,
    m018_joint,
    m019_reasons,
    m020_reports,
    m021_rules,
    m022_device_health,
    m023_working_set,
    m024_ask_reporter,
    m025_form_drafts,
    m026_reason_rollup,
    m027_events_kind_index,
    m028_order_indexes,
    m029_row_search_tokens,
)

migrations = Migrations("fieldledger")
for _migration in HISTORY:
    migrations()(_migration)


def migrate(db: sqlite_utils.Database) -> None:
    migrations.apply(db)


__all__ = [
    "HISTORY",
    "INDEX_PENDING_SQL",
    "ROLLUP_LEVELS",
    "migrate",
    "migrations",
    "register_functions",
    "rollup_key_sql",
    "search_body",
]
