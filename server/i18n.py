"""User-facing strings: every one lives in ``server/locale/<locale>/*.json``.

Each locale is one folder; its files (one per feature area) are merged, and a
key defined twice is an error. Keys are dotted paths (``"login.title"``).
``gettext`` fills ``{name}`` placeholders. Templates call it as ``_()``.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

LOCALE_DIR = Path(__file__).parent / "locale"
DEFAULT_LOCALE = "zh-CN"


class MissingString(KeyError):
    """A key that the catalog does not have."""


def _flatten(tree: dict, prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


@cache
def catalog(locale: str = DEFAULT_LOCALE) -> dict[str, str]:
    merged: dict[str, str] = {}
    for path in sorted((LOCALE_DIR / locale).glob("*.json")):
        with open(path, encoding="utf-8") as f:
            strings = _flatten(json.load(f))
        duplicated = merged.keys() & strings.keys()
        if duplicated:
            raise ValueError(f"{path.name} redefines {sorted(duplicated)}")
        merged.update(strings)
    return merged


def gettext(key: str, locale: str = DEFAULT_LOCALE, **params) -> str:
    try:
        text = catalog(locale)[key]
    except KeyError:
        raise MissingString(key) from None
    return text.format(**params) if params else text


_ = gettext
