"""Input validation: declarative fields, one schema per kind of record.

The same schema checks a web form, an API body and a spreadsheet row, so a
rule is written once. Messages come from the string catalog.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from server.i18n import gettext as _


class ValidationError(Exception):
    """One or more fields are invalid: ``errors`` maps a field name to a message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__(errors)
        self.errors = errors

    def __str__(self) -> str:
        return "; ".join(f"{name}: {message}" for name, message in self.errors.items())


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

# U+0000 is refused in every text that enters, wherever it comes from (forms,
# imports, the phones' pushes): PostgreSQL cannot store it in text, and SQLite's
# search index stops reading at it. See docs/sync-protocol.md.
NUL = "\x00"


def holds_nul(value: Any) -> bool:
    """Whether a text, or a text in a list of them, contains U+0000."""
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, list):
        return any(isinstance(item, str) and NUL in item for item in value)
    return False


@dataclass(frozen=True)
class Field:
    name: str
    label: str  # a catalog key
    kind: str = "text"  # text | int | bool | choice | choices | phone | password
    required: bool = False
    max_length: int = 200
    min_length: int = 0
    pattern: str | None = None
    choices: Mapping[str, str] | None = None  # code -> label catalog key
    min_value: int | None = None
    max_value: int | None = None
    multiline: bool = False

    def label_text(self) -> str:
        return _(self.label)


def _raw_value(raw: Any, field: Field) -> Any:
    if field.kind == "choices" and hasattr(raw, "getlist"):
        values = raw.getlist(field.name)
        return values if len(values) != 1 else values[0]
    value = raw.get(field.name)
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        value = str(value)
    return unicodedata.normalize("NFC", value).strip()


def _choice_code(field: Field, text: str) -> str | None:
    """Accept a code or its displayed label (spreadsheets use the label)."""
    assert field.choices is not None
    if text in field.choices:
        return text
    for code, label_key in field.choices.items():
        if _(label_key) == text:
            return code
    return None


def clean_field(field: Field, value: Any) -> Any:
    """Return the cleaned value or raise ``ValueError`` with the message."""
    label = field.label_text()
    if holds_nul(value):
        raise ValueError(_("validation.nul", label=label))
    if field.kind == "choices":
        items = value if isinstance(value, list) else re.split(r"[,，;；、\s]+", _text(value))
        items = [_text(item) for item in items if _text(item)]
        if not items:
            if field.required:
                raise ValueError(_("validation.required", label=label))
            return []
        codes = []
        for item in items:
            code = _choice_code(field, item)
            if code is None:
                raise ValueError(_("validation.choice", label=label, value=item[:40]))
            if code not in codes:
                codes.append(code)
        return codes

    if field.kind == "bool":
        return _text(value).lower() in ("1", "true", "on", "yes", "是")

    text = _text(value) if field.kind != "password" else ("" if value is None else str(value))
    if not field.multiline and field.kind != "password":
        text = " ".join(text.split())
    if _CONTROL.search(text):
        raise ValueError(_("validation.control_chars", label=label))
    if not text:
        if field.required:
            raise ValueError(_("validation.required", label=label))
        return None if field.kind in ("int", "choice") else ""
    if len(text) > field.max_length:
        raise ValueError(_("validation.too_long", label=label, max=field.max_length))
    if len(text) < field.min_length:
        raise ValueError(_("validation.too_short", label=label, min=field.min_length))

    if field.kind == "int":
        if not re.fullmatch(r"-?\d{1,12}", text):
            raise ValueError(_("validation.integer", label=label))
        number = int(text)
        if field.min_value is not None and number < field.min_value:
            raise ValueError(
                _("validation.range", label=label, min=field.min_value, max=field.max_value)
            )
        if field.max_value is not None and number > field.max_value:
            raise ValueError(
                _("validation.range", label=label, min=field.min_value, max=field.max_value)
            )
        return number
    if field.kind == "choice":
        code = _choice_code(field, text)
        if code is None:
            raise ValueError(_("validation.choice", label=label, value=text[:40]))
        return code
    if field.kind == "phone" and not re.fullmatch(r"[0-9+\-() ]{5,20}", text):
        raise ValueError(_("validation.phone", label=label))
    if field.pattern and not re.fullmatch(field.pattern, text):
        raise ValueError(_("validation.pattern", label=label))
    return text


# What a JSON body must send for a field of each kind (text for the rest).
JSON_TYPES: dict[str, type | tuple[type, ...]] = {"int": int, "bool": bool, "choices": list}


class Schema:
    """An ordered set of fields that cleans a mapping of raw input."""

    def __init__(self, *fields: Field):
        self.fields = fields
        self.by_name = {field.name: field for field in fields}

    def clean_json(self, body: dict) -> dict[str, Any]:
        """``clean`` for a JSON object, which must also have the fields' own JSON
        types and no other fields (a form's values are all text; JSON's are not)."""
        errors = {name: _("validation.unknown_field", name=name[:40])
                  for name in body if name not in self.by_name}
        for name, value in body.items():
            field = self.by_name.get(name)
            expected = JSON_TYPES.get(field.kind, str) if field else None
            if field and (not isinstance(value, expected) or isinstance(value, bool) and
                          expected is int):
                errors[name] = _("validation.json_type", label=field.label_text())
        if errors:
            raise ValidationError(errors)
        return self.clean(body)

    def clean(self, raw: Any, only: set[str] | None = None) -> dict[str, Any]:
        """Clean every field (or only those named); raise ValidationError listing all errors."""
        data: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for field in self.fields:
            if only is not None and field.name not in only:
                continue
            try:
                data[field.name] = clean_field(field, _raw_value(raw, field))
            except ValueError as error:
                errors[field.name] = str(error)
        if errors:
            raise ValidationError(errors)
        return data


def parse_flag(value) -> bool | None:
    """A yes/no answer from a form or JSON (``"1"``, ``"on"``, ``true`` …); None if neither."""
    if value in (True, "1", "true", "yes", "on", 1):
        return True
    if value in (False, "0", "false", "no", "off", 0):
        return False
    return None
