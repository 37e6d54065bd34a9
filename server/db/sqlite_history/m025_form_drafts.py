from __future__ import annotations

import sqlite_utils

from server.db.sqlite_history._shared import run_script


def m025_form_drafts(db: sqlite_utils.Database) -> None:
    """What was typed into a form whose session had expired, between the sign-in and the
    page it returns to (``server/drafts.py``): in a table, so that another process may
    serve that page. ``key_hash`` is the SHA-256 of the random key in the URL, never the
    key; ``fields`` the typed ``[name, value]`` pairs as JSON; ``stored_at`` UTC ISO-8601
    with microseconds (the expiry and the owner's cap go by it)."""
    run_script(
        db,
        """
        CREATE TABLE form_drafts (
            key_hash TEXT PRIMARY KEY,
            owner_id INTEGER NOT NULL REFERENCES users(id),
            path TEXT NOT NULL,
            fields TEXT NOT NULL,
            stored_at TEXT NOT NULL
        );
        CREATE INDEX idx_form_drafts_owner ON form_drafts(owner_id, stored_at);
        """,
    )
