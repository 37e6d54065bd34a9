"""Personal data masking: the one rule for how a resident's phone is shown to those who may
not see it, wherever it travels (pages, exports, pull, event data), and how a person's name
is shown where it travels beyond the ledger (a visit's summary, shared as text, and the
走访报告).

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


def mask_name(name: str | None) -> str:
    """Keep the first character (the surname, for most Chinese names) and hide the rest:
    张三 -> 张*, 欧阳娜娜 -> 欧***; a one-character name -> *."""
    name = (name or "").strip()
    if not name:
        return ""
    if len(name) == 1:
        return "*"
    return name[0] + "*" * (len(name) - 1)


# Fields of a problem that hold personal data masked by ``resident_phone``; events carry their
# former and new values (an ``edited`` event's ``changes``, a restoring ``resolve_conflict``).
PHONE_FIELDS = ("resident_phone",)


def _mask_phone_values(value):
    if isinstance(value, dict):
        return {key: _mask_phone_values(inner) for key, inner in value.items()}
    if isinstance(value, str):
        return mask_phone(value)
    return value


def _mask_data(value):
    if isinstance(value, dict):
        return {key: _mask_phone_values(inner) if key in PHONE_FIELDS else _mask_data(inner)
                for key, inner in value.items()}
    if isinstance(value, list):
        return [_mask_data(inner) for inner in value]
    return value


def event_data(user: authz.User, problem: dict, data: dict | None) -> dict | None:
    """An event's data as this user may see it: every value of a personal field in it
    (``{"changes": {"resident_phone": {"old", "new"}}}`` and the like, at any depth) masked
    exactly as the problem's own ``resident_phone`` would be."""
    if not data or authz.may_see_resident_phone(user, problem):
        return data
    return _mask_data(data)


def events(user: authz.User, problem: dict, problem_events: list[dict]) -> list[dict]:
    """A problem's events (each with its ``data`` decoded) as this user may see them."""
    if authz.may_see_resident_phone(user, problem):
        return problem_events
    return [{**event, "data": event_data(user, problem, event.get("data"))}
            for event in problem_events]
