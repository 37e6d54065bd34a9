"""Looking up, online, a problem outside the phone's working set: by ledger number or
words, within what the user may see, answered as a pull answers it (masked alike)
and not kept by the phone."""

from __future__ import annotations

from server import authz
from server.ledger.search import search_condition
from sync.pull import problem_records

MAX_QUERY = 100
LIMIT = 20


def lookup(db, user: authz.User, text: str) -> dict:
    """The newest ``LIMIT`` problems the user may see matching ``text``, and whether
    there are more."""
    search = search_condition(db, text)
    scope, params = authz.problem_scope(user, "p")
    ids = [row[0] for row in db.execute(
        f"SELECT p.id FROM problems p WHERE {search.sql} AND {scope}"
        " ORDER BY p.found_at DESC LIMIT ?",
        [*search.params, *params, LIMIT + 1],
    )]
    records = problem_records(db, user, ids[:LIMIT], (scope, params))
    return {"problems": [records[i] for i in ids[:LIMIT] if i in records],
            "more": len(ids) > LIMIT}
