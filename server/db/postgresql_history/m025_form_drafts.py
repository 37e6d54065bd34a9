"""Drafts of a form posted after its session expired (``server/drafts.py``), kept in the
database so that the return page may land on another worker."""

from server.db.postgresql_history._shared import run_script

SCRIPT = """
CREATE TABLE form_drafts (
    key_hash text PRIMARY KEY,
    owner_id bigint NOT NULL REFERENCES users(id) DEFERRABLE,
    path text NOT NULL,
    fields text NOT NULL,
    stored_at text NOT NULL
);
CREATE INDEX idx_form_drafts_owner ON form_drafts(owner_id, stored_at);
"""


def apply(db) -> None:
    run_script(db, SCRIPT)
