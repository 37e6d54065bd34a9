"""Checking mutation arguments against their JSON Schema, with clear codes and messages."""

from __future__ import annotations

import datetime as dt
from functools import cache

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as SchemaError

from server.timeutil import utcnow
from server.validation import NUL
from sync.errors import Rejected
from sync.schema_check import Check, compile_check
from sync.schemas import MUTATIONS, TIMESTAMP, UUID

MAX_FUTURE = dt.timedelta(days=1)
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)

# jsonschema keyword -> our error code
CODES = {
    "additionalProperties": "unknown_field",
    "required": "missing_field",
    "type": "wrong_type",
    "maxLength": "too_long",
    "maxItems": "too_many",
    "minLength": "empty",
    "minProperties": "empty",
    "enum": "invalid_value",
    "minimum": "out_of_range",
    "maximum": "out_of_range",
    "uniqueItems": "duplicate_items",
}


@cache
def validator(schema_key: str) -> Draft202012Validator:
    return Draft202012Validator(MUTATIONS[schema_key])


@cache
def quick_check(schema_key: str) -> Check:
    return compile_check(MUTATIONS[schema_key])


def _field_path(error: SchemaError) -> str:
    path = ".".join(str(part) for part in error.absolute_path)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        path = ".".join(filter(None, [path, extra[0] if extra else ""]))
    elif error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else ""
        path = ".".join(filter(None, [path, missing]))
    return path or "args"


def _code(error: SchemaError) -> str:
    if error.validator == "maxLength" and error.schema.get("pattern") == UUID["pattern"]:
        return "invalid_id"
    if error.validator == "pattern":
        pattern = error.schema.get("pattern", "")
        if pattern.startswith("^[0-9a-f]{8}"):
            return "invalid_id"
        if pattern.startswith("^[0-9a-f]{64}"):
            # A photo's SHA-256, or the hash of a resident's tracking token.
            return "invalid_format" if "tracking_hash" in error.absolute_path else "invalid_photo"
        if pattern == TIMESTAMP["pattern"]:
            return "invalid_time"
        return "empty" if pattern == r"\S" else "invalid_format"
    if error.validator == "anyOf":
        return "invalid_value"
    return CODES.get(error.validator, "invalid_value")


def _best(errors: list[SchemaError]) -> SchemaError:
    # For anyOf (a value or null), report the branch that got furthest.
    error = min(errors, key=lambda e: (len(e.absolute_path) * -1, str(e.absolute_path)))
    while error.validator == "anyOf" and error.context:
        # Of equally deep branches, prefer one that says more than "not null".
        error = max(error.context, key=lambda e: (len(e.absolute_path), e.validator != "type"))
    return error


def parse_time(value: str, field: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Rejected("invalid_time", field=field) from None
    if moment > utcnow() + MAX_FUTURE:
        raise Rejected("future_time", field=field)
    if moment < EARLIEST:
        raise Rejected("invalid_time", field=field)
    return moment


def nul_path(value, path: tuple = ()) -> tuple | None:
    """Where the first text holding U+0000 is in a JSON value (for a key holding it,
    the path of its object), or None."""
    if isinstance(value, str):
        return path if NUL in value else None
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        if isinstance(key, str) and NUL in key:
            return path
        found = nul_path(item, (*path, key))
        if found is not None:
            return found
    return None


def check_args(name: str, args) -> None:
    """Raise ``Rejected`` with the first problem found in a mutation's args."""
    if not isinstance(args, dict):
        raise Rejected("wrong_type", field="args")
    # Before the schema, so that no message names a field with U+0000 in it.
    nul = nul_path(args)
    if nul is not None:
        raise Rejected("invalid_value", field=".".join(map(str, nul)) or "args")
    if quick_check(name)(args):
        return
    errors = list(validator(name).iter_errors(args))
    if errors:
        error = _best(errors)
        code = _code(error)
        if code == "too_long":
            # Said in full: the phone shows it, and nothing was cut to fit.
            raise Rejected(code, field=_field_path(error), max=error.validator_value,
                           length=len(error.instance))
        raise Rejected(code, field=_field_path(error))
