"""Each search key carries its problem's area, so a search inside an area reads few keys
(``(area_id, key)``); the triggers keep the area in step with the problem's."""

from server.db.postgresql_history._shared import run_script, tokens_sql

SCRIPT = f"""
ALTER TABLE problem_search_keys ADD COLUMN area_id bigint;
UPDATE problem_search_keys
    SET area_id = (SELECT area_id FROM problems WHERE id = problem_id);
CREATE INDEX idx_problem_search_keys_area ON problem_search_keys(area_id, key);

CREATE OR REPLACE FUNCTION fl_search_index() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO problem_search_keys (problem_id, area_id, tokens)
            VALUES (NEW.id, NEW.area_id, {tokens_sql("NEW")});
    ELSIF TG_OP = 'DELETE' THEN
        DELETE FROM problem_search_keys WHERE problem_id = OLD.id;
    ELSIF TG_ARGV[0] = 'area' THEN
        UPDATE problem_search_keys SET area_id = NEW.area_id WHERE problem_id = NEW.id;
    ELSE
        UPDATE problem_search_keys SET tokens = {tokens_sql("NEW")} WHERE problem_id = NEW.id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER problems_search_area AFTER UPDATE OF area_id ON problems
    FOR EACH ROW WHEN (OLD.area_id IS DISTINCT FROM NEW.area_id)
    EXECUTE FUNCTION fl_search_index('area');
"""


def apply(db) -> None:
    run_script(db, SCRIPT)
