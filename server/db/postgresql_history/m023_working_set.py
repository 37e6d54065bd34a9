"""A phone's working set read newest first (``sync/working_set.py``)."""


def apply(db) -> None:
    db.execute(
        "CREATE INDEX idx_problems_working_set ON problems("
        "found_at, area_id, status, closed_at, reporter_id, lead_unit_id)")
