from __future__ import annotations

import sqlite_utils

from server.db.sqlite_history._shared import run_script


def m016_supervision(db: sqlite_utils.Database) -> None:
    """Supervision as paperwork with answers (``server/ledger/supervision.py``).

    A row of ``supervision_orders`` is an office's 督办单 (``kind`` 'order': a requirement and
    a date ``answer_by`` for the lead unit's 督办回复) or a leader's 挂牌督办 (``kind`` 'flag':
    ``requirement`` holds the 批示). ``number`` (``DB-2026-0001``) counts each year without
    gaps in ``ledger_counters.supervision_last_no``, beside the ledger's own ``last_no``.
    ``unit_id`` is the lead unit when it was issued. ``closed_at`` NULL is open; ``outcome``
    says how it ended: an order 'closed' (销号) or 'escalated' (提请挂牌), a flag 'lifted' (摘牌).
    """
    run_script(
        db,
        """
        ALTER TABLE ledger_counters ADD COLUMN supervision_last_no INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE supervision_orders (
            id INTEGER PRIMARY KEY,
            problem_id TEXT NOT NULL REFERENCES problems(id),
            number TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL CHECK (kind IN ('order', 'flag')),
            requirement TEXT NOT NULL,
            answer_by TEXT,
            issued_by INTEGER NOT NULL REFERENCES users(id),
            issued_at TEXT NOT NULL,
            unit_id INTEGER REFERENCES units(id),
            answer TEXT,
            answered_by INTEGER REFERENCES users(id),
            answered_at TEXT,
            closed_by INTEGER REFERENCES users(id),
            closed_at TEXT,
            outcome TEXT CHECK (outcome IN ('closed', 'escalated', 'lifted'))
        );
        CREATE INDEX idx_supervision_problem ON supervision_orders(problem_id, issued_at);
        CREATE INDEX idx_supervision_open_unit ON supervision_orders(unit_id, issued_at)
            WHERE closed_at IS NULL;
        """,
    )
