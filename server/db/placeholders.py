"""SQLite's ``?`` placeholders spelt as PostgreSQL's ``$n``, once per SQL text.

Queries are written once with ``?`` (and ``?NNN``). SQLite numbers a bare ``?`` one
more than the largest number given so far, so ``?3, ?, ?1`` binds 3, 4 and 1; the
rewrite keeps that rule, which ``server/ledger/metrics.py`` relies on. A ``?`` inside
a string literal, a quoted identifier, a dollar-quoted body or a comment is text,
not a placeholder, and is left alone; so is every ``%`` (the queries run on
psycopg's ``RawCursor``, which sends ``$n`` as written).
"""

from __future__ import annotations

import functools
import re

# What the rewrite must step over whole, and the placeholders themselves.
_TOKEN = re.compile(
    r"""
      (?P<escape_string>(?<![\w$])[Ee]'(?:[^'\\]|\\.|'')*(?:'|\Z))
    | (?P<string>'(?:[^']|'')*(?:'|\Z))
    | (?P<identifier>"(?:[^"]|"")*(?:"|\Z))
    | (?P<line_comment>--[^\n]*)
    | (?P<block_comment>/\*)
    | (?P<dollar_quote>(?<![\w$])\$(?:[A-Za-z_][A-Za-z_0-9]*)?\$)
    | (?P<placeholder>\?(?P<number>[0-9]*))
    """,
    re.VERBOSE | re.DOTALL,
)


@functools.lru_cache(maxsize=4096)  # IN (?, ?, …) lists make many texts of one query
def to_postgres_sql(text: str) -> str:
    parts = []
    largest = 0
    position = 0
    while (token := _TOKEN.search(text, position)) is not None:
        parts.append(text[position : token.start()])
        if token["placeholder"] is not None:
            number = int(token["number"]) if token["number"] else largest + 1
            largest = max(largest, number)
            parts.append(f"${number}")
            position = token.end()
        else:
            end = _end_of_quoted(text, token)
            parts.append(text[token.start() : end])
            position = end
    parts.append(text[position:])
    return "".join(parts)


def _end_of_quoted(text: str, token: re.Match) -> int:
    if token["block_comment"] is not None:
        return _end_of_block_comment(text, token.end())
    if token["dollar_quote"] is not None:
        closing = text.find(token["dollar_quote"], token.end())
        return len(text) if closing < 0 else closing + len(token["dollar_quote"])
    return token.end()


def _end_of_block_comment(text: str, position: int) -> int:
    """PostgreSQL's block comments nest: ``/* a /* b */ c */`` is one comment."""
    depth = 1
    while depth:
        opening, closing = text.find("/*", position), text.find("*/", position)
        if closing < 0:
            return len(text)
        if 0 <= opening < closing:
            depth, position = depth + 1, opening + 2
        else:
            depth, position = depth - 1, closing + 2
    return position
