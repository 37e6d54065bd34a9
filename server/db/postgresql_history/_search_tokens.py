"""``fl_search_tokens(description, place, resident_name, ledger_no) -> text[]``: the search
tokens of one problem (docs/postgresql.md, section 5.2).

A placeholder until the bigram rule lands: the lower-cased words between spaces.
"""

SEARCH_TOKENS_SQL = """
CREATE OR REPLACE FUNCTION fl_search_tokens(
    description text, place text, resident_name text, ledger_no text
) RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN array_remove(string_to_array(lower(
    description || ' ' || place || ' ' || resident_name || ' ' || coalesce(ledger_no, '')
), ' '), '');
"""
