from __future__ import annotations

import sqlite_utils

from server.db.sqlite_history._shared import SYNCED_TABLES, _change_log_triggers, run_script


def m002_sync(db: sqlite_utils.Database) -> None:
    """The sync protocol: server epoch, per-client progress, the change log, uploads.

    Triggers keep the change log: whatever writes a synced table (a phone's
    push, the office, an import, the demo seeder) stamps the row with a new
    global version, so no write path can forget to.
    """
    import uuid

    db["settings"].insert({"key": "epoch", "value": str(uuid.uuid4())})
    run_script(
        db,
        """
        CREATE TABLE sync_clients (
            client_id TEXT PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id),
            device_id INTEGER REFERENCES devices(id),
            last_mutation_id INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );

        -- Mutations the server refused for good, with the reason shown on the phone.
        CREATE TABLE sync_rejections (
            client_id TEXT NOT NULL,
            mutation_id INTEGER NOT NULL,
            name TEXT NOT NULL,
            code TEXT NOT NULL,
            message TEXT NOT NULL,
            args TEXT NOT NULL,
            at TEXT NOT NULL,
            PRIMARY KEY (client_id, mutation_id)
        );

        -- One row per synced record, at the version of its latest change: a
        -- pull reads the rows above its cursor, so its cost follows the number
        -- of changes, not the size of the ledger.
        CREATE TABLE changes (
            version INTEGER PRIMARY KEY AUTOINCREMENT,
            entity TEXT NOT NULL,
            entity_id TEXT NOT NULL,
            deleted INTEGER NOT NULL DEFAULT 0,
            UNIQUE (entity, entity_id)
        );

        CREATE TABLE uploads (
            id TEXT PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id),
            length INTEGER NOT NULL,
            sha256 TEXT,
            filename TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            completed_at TEXT
        );
        CREATE INDEX idx_uploads_user_sha ON uploads(user_id, sha256);

        ALTER TABLE problems ADD COLUMN conflict INTEGER NOT NULL DEFAULT 0;
        -- A duplicate points at the original it was merged into.
        ALTER TABLE problems ADD COLUMN merged_into TEXT REFERENCES problems(id);
        -- For each editable field, the version at which it last changed.
        ALTER TABLE problems ADD COLUMN field_versions TEXT NOT NULL DEFAULT '{}';

        """,
    )
    run_script(db, _change_log_triggers(SYNCED_TABLES))
    for table, entity in SYNCED_TABLES:
        db.execute(
            f"INSERT INTO changes (entity, entity_id) SELECT '{entity}', id FROM {table}"
            " ORDER BY rowid"
        )
