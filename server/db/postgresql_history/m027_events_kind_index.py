"""Drop m019's index of the events by kind and time: the counts by reason read the roll-up
(m026), and SQLite's history drops it (the histories keep the same indexes)."""

from server.db.postgresql_history._shared import run_script

SCRIPT = """
DROP INDEX idx_problem_events_kind;
"""


def apply(db) -> None:
    run_script(db, SCRIPT)
