"""The kinds of a problem's events: one per workflow action, and the few written outside it.

Every kind is labelled by the catalog's ``event.<kind>`` string, on the office
pages and on the phone alike (the app's strings module carries the ``event``
part of the catalog). tests/test_i18n.py checks that each kind has its string
and that every kind the code writes is listed here.
"""

from __future__ import annotations

from server.i18n import gettext as _
from server.ledger.workflow import ACTIONS

# Kinds that are not actions of server/ledger/workflow.py's ACTIONS table.
NON_ACTION_KINDS = (
    "reported",  # the phone's problem.report (sync/mutations.py)
    "solved_on_spot",  # the same report, solved where it was found
    "note",  # the phone's problem.note, a follow-up with photos
    "edited",  # the reporter's problem.edit before acceptance
    "merged_in",  # on the original, when a duplicate is merged into it (workflow)
    "deadline_recomputed",  # a provisional deadline moved by entering a year (calendar_entry)
    "tracking_issued",  # the office issued a new tracking link (tracking.reissue)
    "tracking_revoked",  # the office revoked the tracking link (tracking.revoke)
    "resident_rating",  # the resident rated, or changed the rating, on the tracking page
)


def kinds() -> tuple[str, ...]:
    return (*ACTIONS, *NON_ACTION_KINDS)


def label(kind: str) -> str:
    return _(f"event.{kind}")
