"""Push: apply a client's mutations exactly once, in order, in one transaction.

``apply_push`` runs inside the caller's ``BEGIN IMMEDIATE`` transaction, so
the client's new ``last_mutation_id`` commits together with the effects: a
response lost after the commit leads to a retry whose mutations are all
skipped, never applied twice.
"""

from __future__ import annotations

import json

import sqlite_utils
from jsonschema import Draft202012Validator

from server import authz
from server.db import search_indexed_at_end
from server.i18n import gettext as _
from server.timeutil import now_iso
from server.validation import NUL
from sync import sql
from sync.errors import BadRequest, Rejected
from sync.mutations import HANDLERS, Context
from sync.schema_check import compile_check
from sync.schemas import MUTATION, PUSH_BODY
from sync.validate import check_args

SCHEMA_VERSION = 1

# jsonschema names the error; the compiled checks answer the common case quickly.
_body_validator = Draft202012Validator(PUSH_BODY)
_body_is_valid = compile_check(PUSH_BODY)
_mutation_validator = Draft202012Validator(MUTATION)
_mutation_is_valid = compile_check(MUTATION)


def check_body(body) -> None:
    """Refuse a malformed request as a whole (nothing is applied)."""
    if not isinstance(body, dict):
        raise BadRequest("bad_body", _("sync.bad.body", detail="JSON object expected"))
    if body.get("schema_version") != SCHEMA_VERSION and "schema_version" in body:
        raise BadRequest(
            "unsupported_schema_version", _("sync.bad.schema_version", version=SCHEMA_VERSION)
        )
    if not _body_is_valid(body):
        error = next(iter(_body_validator.iter_errors(body)), None)
        if error is not None:
            where = ".".join(str(p) for p in error.absolute_path) or "body"
            raise BadRequest("bad_body", _("sync.bad.body", detail=f"{where}: {error.message}"))
    for mutation in body["mutations"]:
        # JSON Schema counts 12.0 as the integer 12; so does the server.
        mutation["id"] = int(mutation["id"])


def last_mutation_id(db: sqlite_utils.Database, client_id: str) -> int:
    row = db.execute(
        "SELECT last_mutation_id FROM sync_clients WHERE client_id = ?", [client_id]
    ).fetchone()
    return row[0] if row else 0


def _client(db, user: authz.User, client_id: str, device_id: int | None) -> int:
    row = db.execute(
        "SELECT user_id, last_mutation_id FROM sync_clients WHERE client_id = ?", [client_id]
    ).fetchone()
    if row is None:
        now = now_iso()
        sql.insert(db, "sync_clients", {
            "client_id": client_id, "user_id": user.id, "device_id": device_id,
            "last_mutation_id": 0, "created_at": now, "updated_at": now,
        })
        return 0
    if row[0] != user.id:
        raise BadRequest("client_owner", _("sync.bad.client_owner"))
    return row[1]


def _storable(text: str) -> str:
    """Text as the database can store it: a lone UTF-16 surrogate (valid in JSON) and
    U+0000 become '?'."""
    return text.encode("utf-8", "replace").decode("utf-8").replace(NUL, "?")


def _is_storable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def _apply_one(db, ctx: Context, mutation) -> dict:
    """Apply one mutation inside a savepoint; a rejection undoes only its own effects."""
    error = None
    if not _mutation_is_valid(mutation):
        error = next(iter(_mutation_validator.iter_errors(mutation)), None)
    name = mutation.get("name") if isinstance(mutation, dict) else None
    try:
        if error is not None:
            field = ".".join(str(p) for p in error.absolute_path) or "mutation"
            raise Rejected("unknown_mutation" if field == "name" else "invalid_value",
                           field=field)
        if not _is_storable(json.dumps(mutation, ensure_ascii=False)):
            raise Rejected("invalid_value", field="args")
        check_args(name, mutation["args"])
        try:
            with db.savepoint("mutation"):
                HANDLERS[name](db, ctx, mutation["args"])
        except db.errors.Integrity:
            # Data the checks let through but the schema's constraints refuse:
            # still a permanent failure of this one mutation, not of the queue.
            raise Rejected("integrity") from None
    except Rejected as rejection:
        sql.insert(db, "sync_rejections", {
            "client_id": ctx.client_id, "mutation_id": mutation["id"],
            "name": _storable(str(name)), "code": rejection.code, "message": rejection.message,
            "args": _storable(json.dumps(mutation.get("args"), ensure_ascii=False)[:20000]),
            "at": now_iso(),
        }, replace_on=("client_id", "mutation_id"))
        return {"id": mutation["id"], "status": "rejected",
                "error": {"code": rejection.code, "message": rejection.message}}
    return {"id": mutation["id"], "status": "applied"}


def _earlier_result(db, client_id: str, mutation_id: int) -> dict:
    """The answer to a mutation applied before: a retry learns of its rejection too."""
    row = db.execute(
        "SELECT code, message FROM sync_rejections WHERE client_id = ? AND mutation_id = ?",
        [client_id, mutation_id],
    ).fetchone()
    if row is None:
        return {"id": mutation_id, "status": "skipped"}
    return {"id": mutation_id, "status": "rejected",
            "error": {"code": row[0], "message": row[1], "repeated": True}}


def _apply_in_order(db, ctx: Context, mutations: list, last: int) -> tuple[list, int, bool]:
    """Results, the new last applied id, and whether a gap stopped processing."""
    results = []
    for mutation in mutations:
        mutation_id = mutation["id"]  # numbered as check_body requires
        if mutation_id <= last:
            results.append(_earlier_result(db, ctx.client_id, mutation_id))
            continue
        if mutation_id > last + 1:
            return results, last, True
        results.append(_apply_one(db, ctx, mutation))
        last = mutation_id
    return results, last, False


def apply_push(db: sqlite_utils.Database, user: authz.User, body: dict,
               device_id: int | None = None) -> dict:
    """Apply a push body; returns the response body. Call inside a write transaction."""
    check_body(body)
    client_id = body["client_id"]
    ctx = Context(user=user, client_id=client_id)
    with search_indexed_at_end(db):
        results, last, gap = _apply_in_order(
            db, ctx, body["mutations"], _client(db, user, client_id, device_id))
    db.execute(
        "UPDATE sync_clients SET last_mutation_id = ?, updated_at = ? WHERE client_id = ?",
        [last, now_iso(), client_id],
    )
    return {"last_mutation_id": last, "results": results, "gap": gap,
            "epoch": epoch(db)}


def epoch(db: sqlite_utils.Database) -> str:
    return db.execute("SELECT value FROM settings WHERE key = 'epoch'").fetchone()[0]
