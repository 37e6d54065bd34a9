"""The administration's audit trail: who changed what, when, from which value to which.

``record`` is called once in each place an administrator's change is written (a managed
record's create and update in ``server/resource.py``, an import in ``server/importer.py``,
a year's calendar in ``server/calendar_entry.py``, a device revocation in
``server/views/admin.py``, an option of the lists of reasons in
``server/ledger/reasons.py``, the assessment's weights in ``server/ledger/assessment.py``),
inside that change's own write transaction, so a change and its entry are saved together
or not at all. Values are what the administration forms show, with phone numbers masked
(``server.masking.mask_phone``); a password is never recorded, only that it changed.

Which entries an administrator may read is ``authz.audit_scope``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from server import authz
from server.paging import PAGE_SIZE, Listing
from server.timeutil import now_iso

ENTITIES = ("users", "units", "areas", "categories", "devices", "calendar", "import",
            "reasons", "settings")
ACTIONS = ("create", "update", "revoke", "enter", "import")
# The value recorded for a password that changed: never the password or its hash.
PASSWORD_CHANGED = "changed"


def record(db: sqlite_utils.Database, actor_id: int | None, action: str, entity: str,
           entity_id: int | None, *, label: str = "", old: dict | None = None,
           new: dict | None = None, area_id: int | None = None,
           old_area_id: int | None = None) -> int:
    """Append one entry inside the caller's write transaction. ``actor_id`` None or 0 is the
    command line; ``area_id``/``old_area_id`` the record's area after and before (None for
    records the whole deployment shares)."""
    if action not in ACTIONS or entity not in ENTITIES:
        raise ValueError(f"unknown audit action or entity: {action!r} {entity!r}")
    return db["admin_audit"].insert({
        "at": now_iso(),
        "actor_id": actor_id or None,
        "action": action,
        "entity": entity,
        "entity_id": entity_id,
        "label": label or "",
        "area_id": area_id,
        "old_area_id": old_area_id if old_area_id != area_id else None,
        "old": _json(old),
        "new": _json(new),
    }).last_pk


def _json(values: dict | None) -> str | None:
    # In the record's own order (the form's), which the page keeps.
    return None if values is None else json.dumps(values, ensure_ascii=False)


def changed(old: dict, new: dict) -> tuple[dict, dict]:
    """The values that differ between two snapshots of a record, as (old, new)."""
    keys = [key for key in new if old.get(key) != new.get(key)]
    keys += [key for key in old if key not in new]
    return {key: old.get(key) for key in keys}, {key: new.get(key) for key in keys}


def device_states(db: sqlite_utils.Database, device_ids: list[int]) -> dict[int, dict]:
    """The devices' revocation state, taken before revoking them (``record_revocations``)."""
    listed, id_list = db.dialect.in_list("d.id", device_ids)
    return {row["id"]: row for row in db.query(
        "SELECT d.id, d.name, d.revoked_at, d.revoke_mode, u.username, u.area_id"
        f" FROM devices d JOIN users u ON u.id = d.user_id WHERE {listed}", [id_list])}


def record_revocations(db: sqlite_utils.Database, actor_id: int | None,
                       before: dict[int, dict]) -> None:
    """One "revoke" entry for each of the devices whose state changed since ``before``
    (revoking a revoked device again changes nothing and records nothing)."""
    keys = ("revoked_at", "revoke_mode")
    for device_id, after in device_states(db, list(before)).items():
        old, new = changed({key: before[device_id][key] for key in keys},
                           {key: after[key] for key in keys})
        if new:
            record(db, actor_id, "revoke", "devices", device_id,
                   label=f"{after['name']} ({after['username']})", old=old, new=new,
                   area_id=after["area_id"])


# Reading ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    actor: str = ""  # a username
    entity: str = ""
    entity_id: int | None = None


def entries(db: sqlite_utils.Database, user: authz.User, filters: Filters,
            page: int = 1) -> Listing:
    """The entries this administrator may read, newest first, one page of them."""
    clause, params = authz.audit_scope(user, "a")
    where, params = [clause], list(params)
    if filters.actor:
        where.append("a.actor_id IN (SELECT id FROM users WHERE username = ?)")
        params.append(filters.actor)
    if filters.entity:
        where.append("a.entity = ?")
        params.append(filters.entity)
    if filters.entity_id is not None:
        where.append("a.entity_id = ?")
        params.append(filters.entity_id)
    condition = " AND ".join(where)
    total = db.execute(f"SELECT count(*) FROM admin_audit a WHERE {condition}",
                       params).fetchone()[0]
    rows = []
    for row in db.query(
        "SELECT a.*, u.username AS actor_username, u.display_name AS actor_name"
        f" FROM admin_audit a LEFT JOIN users u ON u.id = a.actor_id WHERE {condition}"
        " ORDER BY a.id DESC LIMIT ? OFFSET ?",
        [*params, PAGE_SIZE, (page - 1) * PAGE_SIZE],
    ):
        row["old"] = json.loads(row["old"]) if row["old"] else {}
        row["new"] = json.loads(row["new"]) if row["new"] else {}
        rows.append(row)
    return Listing(rows, total, page)


def known_actor(db: sqlite_utils.Database, username: str) -> bool:
    return db.execute("SELECT 1 FROM users WHERE username = ?", [username]).fetchone() is not None


def value_text(value: Any) -> str:
    """A recorded value as one line of text (lists joined, nothing as empty)."""
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return "、".join(value_text(item) for item in value)
    return str(value)
