"""The office's question to a problem's reporter (请补充), NULL when none is open."""


def apply(db) -> None:
    db.execute("ALTER TABLE problems ADD COLUMN info_request text")
