"""Each problem carries its search words in its own row (``problems.search_tokens``), under
the GIN index that ``problem_search_keys.tokens`` had.

With the words in a table of their own, a ledger page read in sort order probed that
table once per problem it passed (four index and heap pages each), and the matches
of a word could only be fetched whole, through their keys: a broad word took
150 ms to 4.7 s at a million problems. In the row, the check costs nothing more
than the row read already does, and the GIN index intersects with the problems'
other indexes (an area, a date range). A trigger before each insert, and before
each update of the searched columns, fills the words; ``problem_search_keys``
keeps each problem's key and area, as SQLite's keeps them beside FTS5.
"""

from server.db.postgresql_history._shared import SEARCH_TEXT_COLUMNS, run_script, tokens_sql

CHANGED = " OR ".join(
    f"OLD.{column} IS DISTINCT FROM NEW.{column}" for column in SEARCH_TEXT_COLUMNS)

SCRIPT = f"""
ALTER TABLE problems ADD COLUMN search_tokens text[];
UPDATE problems p SET search_tokens = k.tokens
    FROM problem_search_keys k WHERE k.problem_id = p.id;
CREATE INDEX idx_problems_search_tokens ON problems USING gin (search_tokens);

DROP TRIGGER problems_search_update ON problems;
DROP INDEX idx_problem_search_keys_tokens;
ALTER TABLE problem_search_keys DROP COLUMN tokens;

CREATE OR REPLACE FUNCTION fl_search_index() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO problem_search_keys (problem_id, area_id) VALUES (NEW.id, NEW.area_id);
    ELSIF TG_OP = 'DELETE' THEN
        DELETE FROM problem_search_keys WHERE problem_id = OLD.id;
    ELSE
        UPDATE problem_search_keys SET area_id = NEW.area_id WHERE problem_id = NEW.id;
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION fl_search_tokens_of_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.search_tokens := {tokens_sql("NEW")};
    RETURN NEW;
END
$$;
CREATE TRIGGER problems_search_tokens_insert BEFORE INSERT ON problems
    FOR EACH ROW EXECUTE FUNCTION fl_search_tokens_of_row();
CREATE TRIGGER problems_search_tokens_update
    BEFORE UPDATE OF {", ".join(SEARCH_TEXT_COLUMNS)} ON problems
    FOR EACH ROW WHEN ({CHANGED}) EXECUTE FUNCTION fl_search_tokens_of_row();
"""


def apply(db) -> None:
    run_script(db, SCRIPT)
