"""Nothing to do on PostgreSQL: SQLite's step makes its search triggers call a Python
function and defers FTS5 writes to the end of a push; ``fl_search_tokens`` is already SQL,
and a GIN index keeps its own pending list. Recorded so both histories name the same steps.
"""


def apply(db) -> None:
    pass
