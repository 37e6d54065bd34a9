"""The indexes the ledger's pages are read in order through, as SQLite's hold them.

A SQLite index ends with the rowid and sorts NULL first, so one index gives a page in
either direction of the ledger's order (``queries.order_by``: ``… ASC NULLS FIRST, rowid``
or ``… DESC NULLS LAST, rowid DESC``). m001–m004 copied the columns alone; PostgreSQL
then sorted every match (a full read of a million problems for the ledger's first
page). Each is made again ending with ``rowid``, NULL first; ``ledger_no``'s unique
constraint gets an ordering index of its own, as SQLite's gets one too.
"""

from server.db.postgresql_history._shared import run_script

ORDERED = {
    "idx_problems_found": "found_at",
    "idx_problems_deadline_only": "deadline",
    "idx_problems_status_found": "status, found_at",
    "idx_problems_category_found": "category_id, found_at",
    "idx_problems_unit_found": "lead_unit_id, found_at",
    "idx_problems_supervision_found": "supervision, found_at",
    "idx_problems_urgency_found": "urgency, found_at",
    "idx_problems_source_found": "source, found_at",
    "idx_problems_reporter": "reporter_id, found_at",
}


def _nulls_first(columns: str) -> str:
    return ", ".join(f"{column.strip()} NULLS FIRST" for column in [*columns.split(","), "rowid"])


SCRIPT = "\n".join(
    f"DROP INDEX {name};\nCREATE INDEX {name} ON problems({_nulls_first(columns)});"
    for name, columns in ORDERED.items()
) + f"\nCREATE INDEX idx_problems_ledger_no_order ON problems({_nulls_first('ledger_no')});\n"


def apply(db) -> None:
    run_script(db, SCRIPT)
