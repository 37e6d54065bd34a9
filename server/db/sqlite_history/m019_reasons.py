from __future__ import annotations

import sqlite_utils

from server.db.sqlite_history._shared import run_script


def m019_reasons(db: sqlite_utils.Database) -> None:
    """The reasons an office or a unit chooses from (``server/ledger/reasons.py``).

    ``reason_options`` holds four lists (``list``): why a report is not accepted
    (``reject``, 不予立案), why a unit sends a problem back (``return``, 退单), why it asks
    for more time (``extension``, 延期) and why a problem is closed by explanation
    (``explained``, 解释说明办结). An option is deactivated, never deleted, so the events
    that name its ``code`` keep their label; ``position`` orders a list; at most one option
    of a list ``needs_text`` (其他: the note says what). The lists start with the defaults
    below (labels from the string catalog, ``reasons.default.<list>.<code>``).

    The problem keeps the latest code of each list (``reject_reason_code``,
    ``return_reason_code``, ``extension_reason_code``, ``explained_reason_code``) for the
    export; the statistics count the events by kind and time (``idx_problem_events_kind``).
    """
    from server.i18n import gettext

    run_script(
        db,
        """
        CREATE TABLE reason_options (
            id INTEGER PRIMARY KEY,
            list TEXT NOT NULL CHECK (list IN ('reject', 'return', 'extension', 'explained')),
            code TEXT NOT NULL,
            label TEXT NOT NULL,
            active INTEGER NOT NULL DEFAULT 1,
            position INTEGER NOT NULL,
            needs_text INTEGER NOT NULL DEFAULT 0,
            UNIQUE (list, code),
            UNIQUE (list, label)
        );
        CREATE UNIQUE INDEX idx_reason_options_needs_text ON reason_options(list)
            WHERE needs_text;
        ALTER TABLE problems ADD COLUMN reject_reason_code TEXT;
        ALTER TABLE problems ADD COLUMN return_reason_code TEXT;
        ALTER TABLE problems ADD COLUMN extension_reason_code TEXT;
        ALTER TABLE problems ADD COLUMN explained_reason_code TEXT;
        CREATE INDEX idx_problem_events_kind ON problem_events(kind, at);
        """,
    )
    defaults = {
        "reject": ("out_of_scope", "duplicate", "unreasonable", "unverifiable", "other"),
        "return": ("not_our_duty", "handled_elsewhere", "wrong_info", "other"),
        "extension": ("departments", "funding", "season", "long_works", "other"),
        "explained": ("policy", "legacy", "beyond_law", "accepted", "other"),
    }
    for name, codes in defaults.items():
        for position, code in enumerate(codes, start=1):
            db.execute(
                "INSERT INTO reason_options (list, code, label, position, needs_text)"
                " VALUES (?, ?, ?, ?, ?)",
                [name, code, gettext(f"reasons.default.{name}.{code}"), position,
                 int(code == "other")],
            )
