"""A county's first weeks on the ledger: provisional deadlines, how a problem was closed
without a valid callback, and who entered which year's holidays."""

from server.db.postgresql_history._shared import run_script

SCRIPT = """
ALTER TABLE problems ADD COLUMN deadline_provisional bigint NOT NULL DEFAULT 0;
ALTER TABLE problems ADD COLUMN closure_kind text;
ALTER TABLE problems ADD COLUMN closure_reason text;
CREATE TABLE calendar_years (
    year bigint PRIMARY KEY,
    holidays bigint NOT NULL,
    workdays bigint NOT NULL,
    entered_by bigint REFERENCES users(id) DEFERRABLE,
    entered_at text NOT NULL,
    source text NOT NULL DEFAULT ''
);
"""


def apply(db) -> None:
    run_script(db, SCRIPT)
