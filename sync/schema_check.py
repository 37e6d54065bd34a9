"""A JSON Schema compiled into one Python predicate: the quick "is it valid?" of a push.

jsonschema takes ~50 µs to check one mutation, a sixth of the time a push may
spend on it. ``compile_check`` turns the keywords ``sync/schemas.py`` uses
into nested closures that answer True only for an instance jsonschema
accepts; when it answers False, the caller asks jsonschema, which decides and
names the error. So the predicate may be cautious (False when unsure), never
lenient. A keyword it does not know fails at import, so a schema cannot gain a
rule that this check would skip.
"""

from __future__ import annotations

import re
from collections.abc import Callable

Check = Callable[[object], bool]

ANNOTATIONS = {"description"}


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# As jsonschema's Draft 2020-12 type checker decides them.
TYPES: dict[str, Check] = {
    "string": lambda value: isinstance(value, str),
    "integer": lambda value: (isinstance(value, int) and not isinstance(value, bool))
    or (isinstance(value, float) and value.is_integer()),
    "number": _is_number,
    "null": lambda value: value is None,
    "object": lambda value: isinstance(value, dict),
    "array": lambda value: isinstance(value, list),
    "boolean": lambda value: isinstance(value, bool),
}


def _type(names, schema: dict) -> Check:
    checks = [TYPES[name] for name in ([names] if isinstance(names, str) else names)]
    return lambda value: any(check(value) for check in checks)


def _enum(values, schema: dict) -> Check:
    if not all(isinstance(value, str) for value in values):
        raise ValueError(f"compile_check: only enums of strings, not {values!r}")
    allowed = frozenset(values)
    return lambda value: isinstance(value, str) and value in allowed


def _pattern(pattern: str, schema: dict) -> Check:
    search = re.compile(pattern).search
    return lambda value: not isinstance(value, str) or search(value) is not None


def _max_length(limit: int, schema: dict) -> Check:
    return lambda value: not isinstance(value, str) or len(value) <= limit


def _min_length(limit: int, schema: dict) -> Check:
    return lambda value: not isinstance(value, str) or len(value) >= limit


def _minimum(limit, schema: dict) -> Check:
    return lambda value: not _is_number(value) or not value < limit


def _maximum(limit, schema: dict) -> Check:
    return lambda value: not _is_number(value) or not value > limit


def _properties(properties: dict, schema: dict) -> Check:
    checks = {name: compile_check(sub) for name, sub in properties.items()}

    def check_properties(value) -> bool:
        if not isinstance(value, dict):
            return True
        for name, item in value.items():
            check = checks.get(name)
            if check is not None and not check(item):
                return False
        return True

    return check_properties


def _required(names: list[str], schema: dict) -> Check:
    return lambda value: not isinstance(value, dict) or all(name in value for name in names)


def _additional_properties(allowed, schema: dict) -> Check:
    if allowed is not False:
        raise ValueError("compile_check: additionalProperties must be false")
    known = frozenset(schema.get("properties", {}))
    return lambda value: not isinstance(value, dict) or known.issuperset(value)


def _min_properties(limit: int, schema: dict) -> Check:
    return lambda value: not isinstance(value, dict) or len(value) >= limit


def _items(items: dict, schema: dict) -> Check:
    check = compile_check(items)
    return lambda value: not isinstance(value, list) or all(check(item) for item in value)


def _max_items(limit: int, schema: dict) -> Check:
    return lambda value: not isinstance(value, list) or len(value) <= limit


def _unique_items(unique: bool, schema: dict) -> Check:
    if not unique:
        return lambda value: True
    # Strings only; anything else is left to jsonschema (its equality is subtler).
    return lambda value: not isinstance(value, list) or (
        all(isinstance(item, str) for item in value) and len(set(value)) == len(value))


def _any_of(schemas: list[dict], schema: dict) -> Check:
    checks = [compile_check(sub) for sub in schemas]
    return lambda value: any(check(value) for check in checks)


KEYWORDS: dict[str, Callable[..., Check]] = {
    "type": _type, "enum": _enum, "pattern": _pattern, "maxLength": _max_length,
    "minLength": _min_length, "minimum": _minimum, "maximum": _maximum,
    "properties": _properties, "required": _required,
    "additionalProperties": _additional_properties, "minProperties": _min_properties,
    "items": _items, "maxItems": _max_items, "uniqueItems": _unique_items, "anyOf": _any_of,
}


def compile_check(schema: dict) -> Check:
    """A predicate that is True only for instances valid against ``schema``."""
    unknown = set(schema) - set(KEYWORDS) - ANNOTATIONS
    if unknown:
        raise ValueError(f"compile_check: unsupported keywords {sorted(unknown)}")
    checks = [KEYWORDS[keyword](value, schema) for keyword, value in schema.items()
              if keyword in KEYWORDS]
    if len(checks) == 1:
        return checks[0]

    def check_all(value) -> bool:
        for check in checks:  # noqa: SIM110 -- all() of a generator is slower here
            if not check(value):
                return False
        return True

    return check_all
