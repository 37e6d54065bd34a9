"""The problem's states, the values its actions take, and the error an action not allowed
now raises. The transitions between the states are workflow.ACTIONS."""

from __future__ import annotations

OPEN_STATES = ("submitted", "accepted", "dispatched", "handling", "returned", "replied", "callback")
FINISHED_STATES = ("closed", "rejected", "merged")
ALL_STATES = OPEN_STATES + FINISHED_STATES
OUTCOMES = ("solved", "partial", "explained", "untrue")
SATISFACTION = ("satisfied", "basically", "unsatisfied")
# A callback attempt: how the office tried, and what came of it. Only "reached" goes on to
# the resident's answers; the others are failed attempts (see unreachable_progress).
CALLBACK_METHODS = ("phone", "visit", "sms")
CALLBACK_RESULTS = ("reached", "no_answer", "refused", "invalid_number")
# How a closed problem was closed when no callback judged it (problems.closure_kind).
CLOSURE_KINDS = ("unreachable", "no_contact", "explained")
SUPERVISION_LEVELS = ("none", "reminded", "supervised", "flagged")


class TransitionError(Exception):
    """The action is not allowed for this problem in its state (409), or for this user (403)."""

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.message = message
        self.status = status
