from __future__ import annotations

import sqlite_utils

from server.db.sqlite_history._shared import run_script


def m020_reports(db: sqlite_utils.Database) -> None:
    """Reports handed up (周报/月报/季报, ``server/ledger/reports.py``).

    A row of ``reports`` is one issued report: ``number`` (``BG-2026-0001``) counts each
    year without gaps in ``ledger_counters.report_last_no``; ``kind`` and the period's
    first and last local day; ``area_id`` the scope (that area's subtree, as the
    statistics page counts it); ``data`` the JSON of everything the report shows, frozen
    as issued: the whole output of ``metrics.compute``, the assessment with the weights
    it used, and the lists. Reports are never edited: triggers refuse UPDATE and DELETE.
    The assessment's weights are a row of ``settings`` (``assessment_weights``).
    """
    run_script(
        db,
        """
        ALTER TABLE ledger_counters ADD COLUMN report_last_no INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE reports (
            id INTEGER PRIMARY KEY,
            number TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL CHECK (kind IN ('week', 'month', 'quarter')),
            period_start TEXT NOT NULL,
            period_end TEXT NOT NULL,
            area_id INTEGER NOT NULL REFERENCES areas(id),
            issued_by INTEGER NOT NULL REFERENCES users(id),
            issued_at TEXT NOT NULL,
            data TEXT NOT NULL
        );
        CREATE INDEX idx_reports_area ON reports(area_id, issued_at);
        CREATE TRIGGER reports_no_update BEFORE UPDATE ON reports
        BEGIN
            SELECT RAISE(ABORT, 'reports are issued once');
        END;
        CREATE TRIGGER reports_no_delete BEFORE DELETE ON reports
        BEGIN
            SELECT RAISE(ABORT, 'reports are issued once');
        END;
        """,
    )
