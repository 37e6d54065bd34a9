from __future__ import annotations

import sqlite_utils

from server.db.sqlite_history._shared import run_script

# The events that choose a reason from a list (server.ledger.reasons.KINDS), as they
# were when this migration was written.
REASON_KINDS = "'reject', 'return', 'request_extension', 'close_explained'"


def m026_reason_rollup(db: sqlite_utils.Database) -> None:
    """The statistics' counts by reason (``metrics.reason_counts``) without reading a problem
    per event: per local day of the event, the problem's area, the event's kind and the
    reason code chosen ('' for none), how many events. Kept by triggers as events are
    added and problems move between areas; events are never changed or deleted."""
    run_script(
        db,
        f"""
        CREATE TABLE reason_rollup (
            day TEXT NOT NULL,
            area_id INTEGER NOT NULL REFERENCES areas(id),
            kind TEXT NOT NULL,
            code TEXT NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (day, area_id, kind, code)
        ) WITHOUT ROWID;
        INSERT INTO reason_rollup (day, area_id, kind, code, n)
            SELECT date(e.at, '+8 hours'), p.area_id, e.kind,
                ifnull(json_extract(e.data, '$.reason_code'), ''), count(*)
            FROM problem_events e JOIN problems p ON p.id = e.problem_id
            WHERE e.kind IN ({REASON_KINDS})
            GROUP BY 1, 2, 3, 4;
        CREATE TRIGGER problem_events_reasons AFTER INSERT ON problem_events
        WHEN NEW.kind IN ({REASON_KINDS})
        BEGIN
            INSERT INTO reason_rollup (day, area_id, kind, code, n)
                SELECT date(NEW.at, '+8 hours'), p.area_id, NEW.kind,
                    ifnull(json_extract(NEW.data, '$.reason_code'), ''), 1
                FROM problems p WHERE p.id = NEW.problem_id
                ON CONFLICT DO UPDATE SET n = n + 1;
        END;
        CREATE TRIGGER problems_reasons_moved AFTER UPDATE OF area_id ON problems
        WHEN OLD.area_id IS NOT NEW.area_id
        BEGIN
            INSERT INTO reason_rollup (day, area_id, kind, code, n)
                SELECT date(e.at, '+8 hours'), moved.area_id, e.kind,
                    ifnull(json_extract(e.data, '$.reason_code'), ''), moved.sign * count(*)
                FROM problem_events e,
                    (SELECT OLD.area_id AS area_id, -1 AS sign
                     UNION ALL SELECT NEW.area_id, 1) AS moved
                WHERE e.problem_id = NEW.id AND e.kind IN ({REASON_KINDS})
                GROUP BY 1, 2, 3, 4
                ON CONFLICT DO UPDATE SET n = n + excluded.n;
            DELETE FROM reason_rollup WHERE area_id = OLD.area_id AND n = 0;
        END;
        """,
    )
