"""User accounts: who may sign in, with which roles, over which area."""

from __future__ import annotations

import functools
from pathlib import Path

from server import audit, auth, authz, refs
from server.i18n import gettext as _
from server.resource import Column, Resource, resolve
from server.timeutil import now_iso
from server.validation import Field, Schema, ValidationError

ROLE_LABELS = {role: f"role.{role}" for role in authz.ROLES}
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 128
COMMON_PASSWORDS_FILE = Path(__file__).with_name("common_passwords.txt")

_FIELDS = (
    Field(
        "username",
        "user.username",
        required=True,
        min_length=3,
        max_length=32,
        pattern=r"[A-Za-z0-9_.\-]+",
    ),
    Field("display_name", "user.display_name", required=True, max_length=30),
    Field("phone", "user.phone", kind="phone"),
    Field("roles", "user.roles", kind="choices", required=True, choices=ROLE_LABELS),
    Field("area_code", "user.area", required=True, max_length=20),
    Field("unit_name", "user.unit", max_length=60),
    Field("active", "common.active", kind="bool"),
)


def password_field(name: str, label: str, required: bool) -> Field:
    """A new password's field: the length rule (the rest is ``password_problem``)."""
    return Field(
        name,
        label,
        kind="password",
        required=required,
        min_length=MIN_PASSWORD_LENGTH,
        max_length=MAX_PASSWORD_LENGTH,
    )


CREATE_SCHEMA = Schema(*_FIELDS, password_field("password", "user.password", required=True))
UPDATE_SCHEMA = Schema(*_FIELDS, password_field("password", "user.new_password", required=False))


@functools.cache
def common_passwords() -> frozenset[str]:
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(
        line.strip().casefold() for line in lines if line.strip() and not line.startswith("#")
    )


def password_problem(password: str, username: str) -> str | None:
    """Why a new password (already of a valid length) is refused, or None.

    The one rule for every way a password is set: an administrator's form,
    the import, ``fieldledger create-user`` and the user's own change.
    """
    if password.casefold() == username.strip().casefold():
        return _("account.password.same_as_username")
    if password.casefold() in common_passwords():
        return _("account.password.too_common")
    return None


CHANGE_SCHEMA = Schema(
    Field(
        "current_password",
        "account.password.current",
        kind="password",
        required=True,
        max_length=MAX_PASSWORD_LENGTH,
    ),
    password_field("new_password", "account.password.new", required=True),
    Field(
        "new_password_repeat",
        "account.password.repeat",
        kind="password",
        required=True,
        max_length=MAX_PASSWORD_LENGTH,
    ),
)


def clean_password_change(raw, username: str) -> dict:
    """A user's own password change (current, new, repeated), checked by every rule
    but whether the current password is right (a sign-in attempt: the caller's)."""
    data, errors = {}, {}
    for field in CHANGE_SCHEMA.fields:  # one by one, to check what is valid of the rest
        try:
            data.update(CHANGE_SCHEMA.clean(raw, only={field.name}))
        except ValidationError as error:
            errors.update(error.errors)
    new = data.get("new_password")
    if new:
        problem = password_problem(new, username)
        if problem is None and new == data.get("current_password"):
            problem = _("account.password.same_as_current")
        if problem:
            errors["new_password"] = problem
        elif "new_password_repeat" in data and data["new_password_repeat"] != new:
            errors["new_password_repeat"] = _("account.password.mismatch")
    if errors:
        raise ValidationError(errors)
    return data


def set_own_password(db, user_id: int, password_hash: str, keep_session: str | None) -> None:
    """Store a user's new password; every other web session of theirs ends."""
    db.execute(
        "UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?",
        [password_hash, now_iso(), user_id],
    )
    auth.end_other_sessions(db, user_id, keep_session)


def role_names(roles_text: str) -> str:
    held = authz.parse_roles(roles_text)
    return "、".join(_(ROLE_LABELS[role]) for role in authz.ROLES if role in held)


class Users(Resource):
    name = "users"
    table = "users"
    columns = (
        Column("username", "user.username"),
        Column("display_name", "user.display_name"),
        Column("role_names", "user.roles"),
        Column("area_name", "user.area"),
        Column("unit_name", "user.unit"),
        Column("active", "common.active"),
    )
    search_columns = ("username", "display_name", "phone")
    order_by = "users.username"
    label_column = "username"

    def schema(self, creating):
        return CREATE_SCHEMA if creating else UPDATE_SCHEMA

    def clean(self, raw, creating):
        schema = self.schema(creating)
        try:
            data, errors = schema.clean(raw), {}
        except ValidationError as error:
            data, errors = None, dict(error.errors)
        if "password" not in errors:
            # Said together with any other field's error, not one round later.
            password = schema.clean(raw, only={"password"})["password"]
            problem = password and password_problem(password, str(raw.get("username") or ""))
            if problem:
                errors["password"] = problem
        if errors:
            raise ValidationError(errors)
        return data

    def select_sql(self):
        return (
            "SELECT users.id, users.username, users.display_name, users.phone, users.roles,"
            " users.area_id, users.unit_id, users.active, areas.name AS area_name,"
            " areas.code AS area_code, COALESCE(units.name, '') AS unit_name"
            " FROM users JOIN areas ON areas.id = users.area_id"
            " LEFT JOIN units ON units.id = users.unit_id"
        )

    def list(self, db, actor, query="", page=1):
        listing = super().list(db, actor, query, page)
        for row in listing.rows:
            row["role_names"] = role_names(row["roles"])
        return listing

    def options(self, db, actor):
        return {"area_code": refs.area_options(db, actor),
                "unit_name": refs.unit_options(db, actor)}

    def form_values(self, db, actor, record_id):
        row = self.get(db, actor, record_id)
        return {**row, "roles": sorted(authz.parse_roles(row["roles"])), "password": ""}

    def _row(self, db, actor, data) -> dict:
        unit_id = None
        if data["unit_name"]:
            # Only a unit inside the administrator's area: a handler sees and acts on every
            # problem of their unit, wherever it lies.
            unit_id = resolve("unit_name", refs.unit_id, db, data["unit_name"], actor)
        elif authz.HANDLER in data["roles"]:
            raise ValidationError({"unit_name": _("user.handler_needs_unit")})
        return {
            "username": data["username"],
            "display_name": data["display_name"],
            "phone": data["phone"],
            "roles": authz.format_roles(data["roles"]),
            "area_id": resolve("area_code", refs.area_id, db, actor, data["area_code"]),
            "unit_id": unit_id,
            "active": int(data["active"]),
            "updated_at": now_iso(),
        }

    def prepare(self, data):
        # argon2 is deliberately slow: hash before taking the write lock.
        password = data.pop("password", "")
        data["password_hash"] = auth.hash_password(password) if password else None
        return data

    def insert(self, db, actor, data):
        self.unique(db, "username", data["username"], "username", _("user.username_taken"))
        row = self._row(db, actor, data)
        row["password_hash"] = data["password_hash"]
        row["created_at"] = row["updated_at"]
        return db["users"].insert(row).last_pk

    def change(self, db, actor, record_id, data):
        self.unique(
            db,
            "username",
            data["username"],
            "username",
            _("user.username_taken"),
            exclude_id=record_id,
        )
        row = self._row(db, actor, data)
        if record_id == actor.id:
            _refuse_own_reach(db, record_id, row)
        if data["password_hash"]:
            row["password_hash"] = data["password_hash"]
            devices = [device_id for (device_id,) in db.execute(
                "SELECT id FROM devices WHERE user_id = ? AND revoked_at IS NULL", [record_id])]
            before = audit.device_states(db, devices)
            auth.sign_out_everywhere(db, record_id, actor.id or None)
            audit.record_revocations(db, actor.id, before)  # the devices the reset stopped
        if not data["active"]:
            db.execute("DELETE FROM web_sessions WHERE user_id = ?", [record_id])
        db["users"].update(record_id, row)

    def audit_extra(self, data):
        return {"password": audit.PASSWORD_CHANGED} if data.get("password_hash") else {}


# What an account may reach: its roles, the area they cover, the unit a handler acts for, and
# whether it may sign in at all. Another administrator changes these for an administrator.
_OWN_REACH = (
    ("roles", "roles", "user.cannot_change_own_roles"),
    ("area_id", "area_code", "user.cannot_change_own_area"),
    ("unit_id", "unit_name", "user.cannot_change_own_unit"),
    ("active", "active", "user.cannot_deactivate_self"),
)


def _refuse_own_reach(db, user_id: int, row: dict) -> None:
    current = db["users"].get(user_id)
    errors = {}
    for column, field, key in _OWN_REACH:
        same = (authz.parse_roles(current[column]) == authz.parse_roles(row[column])
                if column == "roles" else current[column] == row[column])
        if not same:
            errors[field] = _(key)
    if errors:
        raise ValidationError(errors)


RESOURCE = Users()
