"""Web sessions remember when they were last used; sessions already open count from when
they began."""

from server.db.postgresql_history._shared import run_script

SCRIPT = """
ALTER TABLE web_sessions ADD COLUMN last_seen_at text;
UPDATE web_sessions SET last_seen_at = created_at;
"""


def apply(db) -> None:
    run_script(db, SCRIPT)
