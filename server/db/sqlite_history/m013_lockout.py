from __future__ import annotations

import sqlite_utils

from server.db.sqlite_history._shared import run_script


def m013_lockout(db: sqlite_utils.Database) -> None:
    """Sign-in attempts are counted before the password is checked, per account and per
    (account, source address) pair (server/auth.py, "Sign-in throttling").

    A row is written, in the write transaction that decides whether the attempt may go
    on, before its password is checked (``checking``); a failure marks it ``failed``, a
    success deletes it with its pair's failures. Rows older than the attempt window are
    deleted. The old per-username counter is dropped: its counts are 15 minutes long at
    most.
    """
    run_script(
        db,
        """
        DROP TABLE login_failures;
        CREATE TABLE login_attempts (
            id INTEGER PRIMARY KEY,
            account TEXT NOT NULL,
            address TEXT NOT NULL,
            at TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'checking' CHECK (state IN ('checking', 'failed'))
        );
        CREATE INDEX idx_login_attempts_account ON login_attempts(account, address, at);
        CREATE INDEX idx_login_attempts_at ON login_attempts(at);
        """,
    )
