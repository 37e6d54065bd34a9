"""The statistics' counts by reason (``metrics.reason_counts``) without reading a problem per
event: per local day of the event, the problem's area, the event's kind and the reason code
chosen ('' for none), how many events. Kept by triggers as events are added and problems
move between areas; events are never changed or deleted."""

from server.db.postgresql_history._shared import (
    REASON_KINDS,
    REASON_ROLLUP_REBUILD,
    run_script,
)

SCRIPT = f"""
CREATE TABLE reason_rollup (
    day text NOT NULL,
    area_id bigint NOT NULL REFERENCES areas(id) DEFERRABLE,
    kind text NOT NULL,
    code text NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (day, area_id, kind, code)
);
INSERT INTO reason_rollup (day, area_id, kind, code, n)
    {REASON_ROLLUP_REBUILD};
CREATE FUNCTION fl_reason_counted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO reason_rollup AS r (day, area_id, kind, code, n)
        SELECT fl_local_day(NEW.at), p.area_id, NEW.kind,
            coalesce(NEW.data::jsonb ->> 'reason_code', ''), 1
        FROM problems p WHERE p.id = NEW.problem_id
        ON CONFLICT (day, area_id, kind, code) DO UPDATE SET n = r.n + 1;
    RETURN NULL;
END
$$;
CREATE TRIGGER problem_events_reasons AFTER INSERT ON problem_events
    FOR EACH ROW WHEN (NEW.kind IN ({REASON_KINDS}))
    EXECUTE FUNCTION fl_reason_counted();
CREATE FUNCTION fl_reasons_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO reason_rollup AS r (day, area_id, kind, code, n)
        SELECT fl_local_day(e.at), moved.area_id, e.kind,
            coalesce(e.data::jsonb ->> 'reason_code', ''), moved.sign * count(*)
        FROM problem_events e,
            (VALUES (OLD.area_id, -1), (NEW.area_id, 1)) AS moved (area_id, sign)
        WHERE e.problem_id = NEW.id AND e.kind IN ({REASON_KINDS})
        GROUP BY 1, 2, 3, 4, moved.sign
        ON CONFLICT (day, area_id, kind, code) DO UPDATE SET n = r.n + excluded.n;
    DELETE FROM reason_rollup WHERE area_id = OLD.area_id AND n = 0;
    RETURN NULL;
END
$$;
CREATE TRIGGER problems_reasons_moved AFTER UPDATE OF area_id ON problems
    FOR EACH ROW WHEN (OLD.area_id IS DISTINCT FROM NEW.area_id)
    EXECUTE FUNCTION fl_reasons_moved();
"""


def apply(db) -> None:
    run_script(db, SCRIPT)
