from __future__ import annotations

import sqlite_utils

from server.db.sqlite_history._shared import run_script


def m015_audit(db: sqlite_utils.Database) -> None:
    """The administration's audit trail (``server/audit.py``): one row per change an
    administrator makes, written in the change's own transaction, never updated or deleted.

    ``actor_id`` NULL is the command line. ``entity`` names the kind of record (users, units,
    areas, categories, devices, calendar, import) and ``entity_id`` the record (a device's id,
    a calendar's year; NULL for an import as a whole); ``label`` is its name at the time.
    ``old`` and ``new`` hold the changed values as JSON (phones masked, passwords never).
    ``area_id`` and ``old_area_id`` are the record's area after and before the change (NULL
    for records the whole deployment shares): they decide which administrators see the row.
    """
    run_script(
        db,
        """
        CREATE TABLE admin_audit (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            actor_id INTEGER REFERENCES users(id),
            action TEXT NOT NULL,
            entity TEXT NOT NULL,
            entity_id INTEGER,
            label TEXT NOT NULL DEFAULT '',
            area_id INTEGER REFERENCES areas(id),
            old_area_id INTEGER REFERENCES areas(id),
            old TEXT,
            new TEXT
        );
        CREATE INDEX idx_admin_audit_actor ON admin_audit(actor_id, id);
        CREATE INDEX idx_admin_audit_entity ON admin_audit(entity, entity_id, id);
        CREATE TRIGGER admin_audit_no_update BEFORE UPDATE ON admin_audit
        BEGIN
            SELECT RAISE(ABORT, 'admin_audit is append-only');
        END;
        CREATE TRIGGER admin_audit_no_delete BEFORE DELETE ON admin_audit
        BEGIN
            SELECT RAISE(ABORT, 'admin_audit is append-only');
        END;
        """,
    )
