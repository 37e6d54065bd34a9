"""The reasons an office or a unit chooses from when it rejects, returns, asks for more time
or closes by explanation: four lists an administrator keeps (table ``reason_options``,
migration m019), plus the free-text note the action already takes.

Which action takes which list is the ``reasons`` entry of its row in
``workflow.ACTIONS``; ``workflow.apply`` calls ``check`` before anything is written, and
the chosen code goes into the event's data (``reason_code``) and the problem's
``<list>_reason_code`` column (the latest one, for the export). The statistics count the
events by code (``metrics.reason_counts``).

An option is deactivated, never deleted: old events keep their label. Its ``code`` never
changes (renaming changes the label only). At most one option of a list needs a note
(其他: the note says what).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlite_utils

from server import audit
from server.i18n import gettext as _
from server.validation import Field, Schema, ValidationError

LISTS = ("reject", "return", "extension", "explained")
# The event kind that carries each list's codes (a workflow action).
KINDS = {"reject": "reject", "return": "return", "extension": "request_extension",
         "explained": "close_explained"}
LABEL_MAX = 30
LABEL = Schema(Field("label", "reasons.field.label", required=True, max_length=LABEL_MAX))
AUDIT_ENTITY = "reasons"


@dataclass(frozen=True)
class Option:
    id: int
    list: str
    code: str
    label: str
    active: bool
    position: int
    needs_text: bool


@dataclass(frozen=True)
class Chosen:
    """A valid choice: what the action records."""

    list: str
    code: str

    @property
    def column(self) -> str:
        return f"{self.list}_reason_code"


def _option(row) -> Option:
    id_, list_, code, label, active, position, needs_text = row
    return Option(id_, list_, code, label, bool(active), position, bool(needs_text))


_SELECT = "SELECT id, list, code, label, active, position, needs_text FROM reason_options"


def options(db: sqlite_utils.Database, list_name: str, *, active_only: bool = False
            ) -> list[Option]:
    """A list's options in their order (the active ones only, for a form)."""
    where = " AND active = 1" if active_only else ""
    return [_option(row) for row in db.execute(
        f"{_SELECT} WHERE list = ?{where} ORDER BY position, id", [list_name])]


def all_lists(db: sqlite_utils.Database) -> dict[str, list[Option]]:
    """Every list's options, active or not, in their order."""
    found: dict[str, list[Option]] = {name: [] for name in LISTS}
    for row in db.execute(f"{_SELECT} ORDER BY list, position, id"):
        option = _option(row)
        found[option.list].append(option)
    return found


def labels(db: sqlite_utils.Database) -> dict[tuple[str, str], str]:
    """{(list, code): label} of every option, deactivated ones included (old events)."""
    return {(list_, code): label for list_, code, label
            in db.execute("SELECT list, code, label FROM reason_options")}


def check(db: sqlite_utils.Database, list_name: str, data: dict) -> Chosen | None:
    """The reason chosen in an action's (trimmed) ``data``, or None when the list has no
    active option and none was sent. Raises ``ValidationError``: no reason while the list
    offers some, a code that is not an active option of the list, an option that needs a
    note without one."""
    code = data.get("reason_code")
    active = options(db, list_name, active_only=True)
    if code is None:
        if active:
            raise ValidationError({"reason_code": _(
                "reasons.required", label=_(f"reasons.list.{list_name}"))})
        return None
    chosen = next((option for option in active if option.code == code), None)
    if chosen is None:
        inactive = isinstance(code, str) and any(
            option.code == code for option in options(db, list_name))
        raise ValidationError({"reason_code": _(
            "reasons.inactive" if inactive else "reasons.unknown",
            label=_(f"reasons.list.{list_name}"))})
    if chosen.needs_text and not data.get("note"):
        raise ValidationError({"note": _("reasons.needs_text", option=chosen.label)})
    return Chosen(list_name, chosen.code)


# The administration (/admin/reasons): every change audited in its own transaction. ---------


def _get(db, option_id: int) -> Option | None:
    row = db.execute(f"{_SELECT} WHERE id = ?", [option_id]).fetchone()
    return _option(row) if row else None


def _clean_label(db, list_name: str, raw, option_id: int | None = None) -> str:
    label = LABEL.clean({"label": raw})["label"]
    taken = db.execute(
        "SELECT 1 FROM reason_options WHERE list = ? AND label = ? AND id IS DISTINCT FROM ?",
        [list_name, label, option_id]).fetchone()
    if taken:
        raise ValidationError({"label": _("reasons.duplicate", label=label)})
    return label


def _snapshot(option: Option) -> dict:
    return {"list": option.list, "label": option.label, "active": option.active,
            "position": option.position, "needs_text": option.needs_text}


def _audit(db, actor_id: int | None, action: str, before: Option | None, after: Option) -> None:
    old, new = ((None, _snapshot(after)) if before is None
                else audit.changed(_snapshot(before), _snapshot(after)))
    if old == new:
        return
    audit.record(db, actor_id, action, AUDIT_ENTITY, after.id, label=after.label, old=old,
                 new=new)


def add(db: sqlite_utils.Database, actor_id: int | None, list_name: str, raw_label,
        needs_text: bool = False) -> Option:
    """A new active option at the end of its list. Its code is ``c<id>``."""
    if list_name not in LISTS:
        raise ValidationError({"list": _("reasons.no_such_list")})
    label = _clean_label(db, list_name, raw_label)
    if needs_text:
        _clear_needs_text(db, actor_id, list_name)
    position = db.execute("SELECT coalesce(max(position), 0) + 1 FROM reason_options"
                          " WHERE list = ?", [list_name]).fetchone()[0]
    option_id = db.execute(
        "INSERT INTO reason_options (list, code, label, position, needs_text)"
        " VALUES (?, '', ?, ?, ?) RETURNING id",
        [list_name, label, position, int(needs_text)]).fetchone()[0]
    db.execute("UPDATE reason_options SET code = 'c' || id WHERE id = ?", [option_id])
    option = _get(db, option_id)
    _audit(db, actor_id, "create", None, option)
    return option


def _existing(db, option_id: int) -> Option:
    option = _get(db, option_id)
    if option is None:
        from server.errors import NotFound

        raise NotFound(str(option_id))
    return option


def _update(db, actor_id, before: Option, **values) -> Option:
    sets = ", ".join(f"{name} = ?" for name in values)
    db.execute(f"UPDATE reason_options SET {sets} WHERE id = ?", [*values.values(), before.id])
    after = _get(db, before.id)
    _audit(db, actor_id, "update", before, after)
    return after


def rename(db: sqlite_utils.Database, actor_id: int | None, option_id: int, raw_label) -> Option:
    before = _existing(db, option_id)
    return _update(db, actor_id, before,
                   label=_clean_label(db, before.list, raw_label, option_id))


def set_active(db: sqlite_utils.Database, actor_id: int | None, option_id: int,
               active: bool) -> Option:
    before = _existing(db, option_id)
    return _update(db, actor_id, before, active=int(active))


def _clear_needs_text(db, actor_id, list_name: str) -> None:
    for option in options(db, list_name):
        if option.needs_text:
            _update(db, actor_id, option, needs_text=0)


def set_needs_text(db: sqlite_utils.Database, actor_id: int | None, option_id: int,
                   needs_text: bool) -> Option:
    """Mark an option as needing a note (the list's mark moves to it), or unmark it."""
    before = _existing(db, option_id)
    if needs_text and not before.needs_text:
        _clear_needs_text(db, actor_id, before.list)
    return _update(db, actor_id, before, needs_text=int(needs_text))


def move(db: sqlite_utils.Database, actor_id: int | None, option_id: int, step: int) -> Option:
    """Move an option one place up (``step`` -1) or down (+1) in its list; at an end, stay."""
    option = _existing(db, option_id)
    ordered = options(db, option.list)
    index = next(n for n, other in enumerate(ordered) if other.id == option.id)
    target = index + step
    if step not in (-1, 1) or not 0 <= target < len(ordered):
        return option
    ordered[index], ordered[target] = ordered[target], ordered[index]
    # Positions are renumbered 1..n, so ties left by earlier data are resolved too.
    moved = option
    for position, other in enumerate(ordered, start=1):
        if other.position != position:
            after = _update(db, actor_id, other, position=position)
            moved = after if other.id == option.id else moved
    return moved
