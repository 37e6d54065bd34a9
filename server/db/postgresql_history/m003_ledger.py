"""The problem ledger's workflow: numbering, deadlines, replies, callbacks, return visits."""

from server.db.postgresql_history._shared import run_script

SCRIPT = """
CREATE TABLE ledger_counters (
    year bigint PRIMARY KEY,
    last_no bigint NOT NULL
);

CREATE TABLE calendar_days (
    day text PRIMARY KEY,
    is_workday bigint NOT NULL,
    note text NOT NULL DEFAULT ''
);

ALTER TABLE categories ADD COLUMN return_visit_days bigint NOT NULL DEFAULT 30;

ALTER TABLE problems ADD COLUMN helper_unit_ids text NOT NULL DEFAULT '[]';
ALTER TABLE problems ADD COLUMN original_deadline text;
ALTER TABLE problems ADD COLUMN extension_request text;
ALTER TABLE problems ADD COLUMN signed_at text;
ALTER TABLE problems ADD COLUMN resident_contacted bigint;
ALTER TABLE problems ADD COLUMN replied_at text;
ALTER TABLE problems ADD COLUMN outcome text;
ALTER TABLE problems ADD COLUMN redo_count bigint NOT NULL DEFAULT 0;
ALTER TABLE problems ADD COLUMN callback_reached bigint;
ALTER TABLE problems ADD COLUMN callback_solved bigint;
ALTER TABLE problems ADD COLUMN satisfaction text;
ALTER TABLE problems ADD COLUMN closed_on_time bigint;
ALTER TABLE problems ADD COLUMN return_visit_due text;
ALTER TABLE problems ADD COLUMN return_visit_result text;
ALTER TABLE problems ADD COLUMN relapsed bigint NOT NULL DEFAULT 0;
ALTER TABLE problems ADD COLUMN supervision_note text NOT NULL DEFAULT '';
CREATE INDEX idx_problems_deadline ON problems(status, deadline);
CREATE INDEX idx_problems_return_due ON problems(return_visit_due);
"""


def apply(db) -> None:
    run_script(db, SCRIPT)
