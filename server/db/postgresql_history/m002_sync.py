"""The sync protocol: server epoch, per-client progress, the change log, uploads.

Triggers keep the change log (``fl_bump_change``, section 4.4 of docs/postgresql.md):
whatever writes a synced table stamps the row with a version drawn under the write
lock from ``changes_version_seq``, whose CACHE 1 keeps versions in the order drawn.
"""

import uuid

from server.db.postgresql_history._shared import SYNCED_TABLES, change_log_triggers, run_script

TABLES = """
CREATE TABLE sync_clients (
    client_id text PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users(id) DEFERRABLE,
    device_id bigint REFERENCES devices(id) DEFERRABLE,
    last_mutation_id bigint NOT NULL DEFAULT 0,
    created_at text NOT NULL,
    updated_at text NOT NULL
);

CREATE TABLE sync_rejections (
    client_id text NOT NULL,
    mutation_id bigint NOT NULL,
    name text NOT NULL,
    code text NOT NULL,
    message text NOT NULL,
    args text NOT NULL,
    at text NOT NULL,
    PRIMARY KEY (client_id, mutation_id)
);

CREATE SEQUENCE changes_version_seq CACHE 1;
CREATE TABLE changes (
    version bigint PRIMARY KEY,
    entity text NOT NULL,
    entity_id text NOT NULL,
    deleted bigint NOT NULL DEFAULT 0,
    UNIQUE (entity, entity_id)
);
ALTER SEQUENCE changes_version_seq OWNED BY changes.version;

CREATE TABLE uploads (
    id text PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users(id) DEFERRABLE,
    length bigint NOT NULL,
    sha256 text,
    filename text NOT NULL DEFAULT '',
    created_at text NOT NULL,
    completed_at text
);
CREATE INDEX idx_uploads_user_sha ON uploads(user_id, sha256);

ALTER TABLE problems ADD COLUMN conflict bigint NOT NULL DEFAULT 0;
ALTER TABLE problems ADD COLUMN merged_into text REFERENCES problems(id) DEFERRABLE;
ALTER TABLE problems ADD COLUMN field_versions text NOT NULL DEFAULT '{}';
"""


def apply(db) -> None:
    db.execute("INSERT INTO settings (key, value) VALUES ('epoch', ?)", [str(uuid.uuid4())])
    run_script(db, TABLES)
    run_script(db, change_log_triggers())
    for table, entity in SYNCED_TABLES:
        db.execute(
            "INSERT INTO changes (version, entity, entity_id)"
            f" SELECT nextval('changes_version_seq'), '{entity}', id FROM {table} ORDER BY rowid"
        )
