"""The latest health a phone reported with a push or pull: the JSON as sent, and when."""

from server.db.postgresql_history._shared import run_script

SCRIPT = """
ALTER TABLE devices ADD COLUMN health text;
ALTER TABLE devices ADD COLUMN health_at text;
"""


def apply(db) -> None:
    run_script(db, SCRIPT)
