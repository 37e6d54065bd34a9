"""Personal data masking: the one rule for how a resident's phone is shown to those who may
not see it, wherever it travels (pages, exports, pull, event data).

Who may see it unmasked is ``authz.may_see_resident_phone``; how it is masked is here.
"""

from __future__ import annotations

from server import authz


def mask_phone(phone: str | None) -> str:
    """Keep the first three and last four characters: 13812345678 -> 138****5678; a short
    number keeps its last two: 12345 -> ***45."""
    if not phone:
        return ""
    phone = str(phone).strip()
    if len(phone) <= 7:
        return "*" * (len(phone) - 2) + phone[-2:]
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]


def resident_phone(user: authz.User, problem: dict, phone: str | None = None) -> str:
    """The problem's resident phone (or ``phone``, a value it had) as this user may see it."""
    value = problem.get("resident_phone") if phone is None else phone
    if not value:
        return ""
    return str(value) if authz.may_see_resident_phone(user, problem) else mask_phone(value)
