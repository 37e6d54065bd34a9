"""The ledger's full-text search.

Search. FTS5's trigram tokenizer cannot find two-character words such as 漏水,
and SQLite has no Chinese word segmenter, so migration ``m004_search`` indexes
*bigrams*: triggers (plain SQL, so every connection writing problems keeps the
index right) write into the contentless FTS5 table ``problems_fts`` the
description, place, resident name and ledger number with each CJK character
replaced by the pair it starts (or by itself at the end of a run), and other
characters kept, so ASCII words and numbers stay words::

    3号楼漏水  ->  3 号楼 楼漏 漏水 水

A query is split the same way: a CJK run of two or more characters becomes
the phrase of its bigrams (so 物业不作为 must appear as written), a single CJK
character the prefix query ``"漏"*`` (every occurrence starts a bigram or ends
a run), other words exact tokens; all parts must match. A full ledger number
(ZF-2026-000123) is looked up on its unique index, and a one-character query
that is not Chinese falls back to LIKE.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from server.ledger.numbering import normal_ledger_no

SEARCH_DRIVE_MAX = 5_000
AREA_DRIVE_MAX = 50_000  # an area with at most this many problems drives the read
_CJK_OR_OTHER = re.compile(r"([\u3400-\u9fff]+)|([^\s\u3400-\u9fff]+)")
_WORD = re.compile(r"[^\W_]+")


def _quote(token: str) -> str:
    return '"' + token.replace('"', '""') + '"'


def fts_query(text: str) -> str | None:
    """The FTS5 query for a search text (see the module docstring), or None if it has no words."""
    terms = []
    for cjk, other in _CJK_OR_OTHER.findall(text):
        if cjk and len(cjk) == 1:
            terms.append(_quote(cjk) + "*")
        elif cjk:
            terms.append(_quote(" ".join(cjk[i:i + 2] for i in range(len(cjk) - 1))))
        else:
            terms.extend(_quote(word) for word in _WORD.findall(other))
    return " ".join(terms) or None


class Search(NamedTuple):
    sql: str  # a condition on ``problems p``
    params: list
    broad: bool  # matches many problems: checked row by row
    listed: int | None = None  # the number of matches, when read as a list of keys


def search_condition(db, text: str, drive_max: int | None = None,
                     areas: list[list[str]] = ()) -> Search:
    """The SQL condition for a search, its parameters, and whether it matches many problems.

    A search matching at most SEARCH_DRIVE_MAX problems is read from the index
    first. So is a broader one whose matches within one of ``areas`` (subtree
    bounds the page is confined to anyway) are that few; see ``area_keys``.
    Otherwise it is checked row by row (the problem's key against the set of
    matching keys), so that a page in sort order stops after a few hundred rows
    instead of fetching every match.
    """
    number = normal_ledger_no(text)
    if number:
        return Search("p.ledger_no = ?", [number], False)
    if len(text) == 1 and not re.match(r"[\u3400-\u9fff]", text):
        like = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        columns = ("p.description", "p.place", "p.resident_name", "p.ledger_no")
        return Search(
            "(" + " OR ".join(db.dialect.like(column) for column in columns) + ")",
            [like] * len(columns),
            True,
        )
    query = fts_query(text)
    if query is None:
        return Search("1 = 0", [], False)
    matching = "SELECT rowid FROM problems_fts WHERE problems_fts MATCH ?"
    drive_max = SEARCH_DRIVE_MAX if drive_max is None else drive_max
    keys = [row[0] for row in db.execute(f"{matching} LIMIT ?", [query, drive_max + 1])]
    for bounds in areas:
        if len(keys) > drive_max:
            within = area_keys(db, matching, query, bounds, drive_max)
            keys = keys if within is None else within
    if len(keys) <= drive_max:
        # Few matches: found once here, then every query of the page reads them as a list.
        listed, key_list = db.dialect.in_list("k.key", keys)
        return Search(
            f"p.id IN (SELECT k.problem_id FROM problem_search_keys k WHERE {listed})",
            [key_list],
            False,
            listed=len(keys),
        )
    return Search(
        f"(SELECT k.key FROM problem_search_keys k WHERE k.problem_id = p.id) IN ({matching})",
        [query],
        True,
    )


def area_keys(db, matching: str, query: str, bounds: list[str], limit: int) -> list[int] | None:
    """The keys of the matches inside an area subtree, if it is small and they are at most
    ``limit``; else None.

    The area's keys come from ``(area_id, key)`` alone (m008) and each is
    looked up among the matches, which SQLite reads once into a temporary
    index (the unary ``+`` stops it from probing that index once per key and
    area instead: seconds). A town of 15,000 problems and a word with 24,000
    matches: ~6 ms, against ~80 ms reading the town's problems.
    """
    in_area = ("k.area_id IN (SELECT id FROM areas WHERE path >= ? AND path < ?)")
    by_area = db.dialect.index_hint("idx_problem_search_keys_area")
    size = db.execute(
        "SELECT count(*) FROM (SELECT 1 FROM problem_search_keys k"
        f" {by_area} WHERE {in_area} LIMIT ?) AS found",
        [*bounds, AREA_DRIVE_MAX + 1],
    ).fetchone()[0]
    if size > AREA_DRIVE_MAX:
        return None
    keys = [row[0] for row in db.execute(
        f"SELECT k.key FROM problem_search_keys k {by_area}"
        f" WHERE {in_area} AND {db.dialect.unindexed('k.key')} IN ({matching}) LIMIT ?",
        [*bounds, query, limit + 1],
    )]
    return keys if len(keys) <= limit else None
