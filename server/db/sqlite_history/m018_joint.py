from __future__ import annotations

import sqlite_utils

from server.db.sqlite_history._shared import run_script


def m018_joint(db: sqlite_utils.Database) -> None:
    """Joint handling (协办, ``server/ledger/joint.py``): one row of ``joint_parts`` per helper
    unit a problem was dispatched to, its part's life: ``dispatched`` → ``signed`` (签收) →
    ``answered`` (协办意见 in ``opinion``), or ``removed`` when a re-dispatch drops the unit
    (the row stays: the history; a unit added again gets a new row). At most one row per
    (problem, unit) is not removed. ``legacy`` marks the parts backfilled here for problems
    already finished: nobody could answer them, so the statistics leave them out.
    """
    run_script(
        db,
        """
        CREATE TABLE joint_parts (
            id INTEGER PRIMARY KEY,
            problem_id TEXT NOT NULL REFERENCES problems(id),
            unit_id INTEGER NOT NULL REFERENCES units(id),
            state TEXT NOT NULL DEFAULT 'dispatched'
                CHECK (state IN ('dispatched', 'signed', 'answered', 'removed')),
            dispatched_at TEXT NOT NULL,
            dispatched_by INTEGER REFERENCES users(id),
            signed_at TEXT,
            signed_by INTEGER REFERENCES users(id),
            answered_at TEXT,
            answered_by INTEGER REFERENCES users(id),
            opinion TEXT,
            answer_event_id TEXT,
            removed_at TEXT,
            removed_by INTEGER REFERENCES users(id),
            legacy INTEGER NOT NULL DEFAULT 0
        );
        CREATE UNIQUE INDEX idx_joint_parts_current ON joint_parts(problem_id, unit_id)
            WHERE state != 'removed';
        -- A unit's parts by state: the 协办 queues and the handlers' problem scope.
        CREATE INDEX idx_joint_parts_unit ON joint_parts(unit_id, state, problem_id);
        INSERT INTO joint_parts (problem_id, unit_id, state, dispatched_at, dispatched_by, legacy)
            SELECT p.id, h.value, 'dispatched',
                coalesce((SELECT e.at FROM problem_events e WHERE e.problem_id = p.id
                          AND e.kind = 'dispatch' ORDER BY e.at DESC, e.rowid DESC LIMIT 1),
                         p.dispatched_at),
                (SELECT e.actor_id FROM problem_events e WHERE e.problem_id = p.id
                 AND e.kind = 'dispatch' ORDER BY e.at DESC, e.rowid DESC LIMIT 1),
                p.status IN ('closed', 'rejected', 'merged')
            FROM problems p, json_each(CASE WHEN json_valid(p.helper_unit_ids)
                                       THEN p.helper_unit_ids ELSE '[]' END) h
            WHERE p.dispatched_at IS NOT NULL
                AND h.value IN (SELECT id FROM units) AND h.value IS NOT p.lead_unit_id
            GROUP BY p.id, h.value;
        """,
    )
