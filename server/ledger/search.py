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

PostgreSQL has no FTS5: each problem's ``search_tokens`` (m029) holds the same
words (``fl_search_tokens``) under a GIN index, and the query parsed once
(``parse_query``) becomes ``pg_condition`` there instead of ``fts_query``
(docs/postgresql.md, 5.2). The words sit in the problem's own row, so a page
read in sort order checks each problem where it stands, and the matches
inside an area are the GIN index and the area's index intersected
(``pg_search``).
"""

from __future__ import annotations

import json
import re
from typing import NamedTuple

from server.db.postgresql_history._search_tokens import unicode61_tokens
from server.ledger.numbering import normal_ledger_no

SEARCH_DRIVE_MAX = 5_000
AREA_DRIVE_MAX = 50_000  # an area with at most this many problems drives the read
_CJK_OR_OTHER = re.compile(r"([\u3400-\u9fff]+)|([^\s\u3400-\u9fff]+)")
_WORD = re.compile(r"[^\W_]+")


class Term(NamedTuple):
    text: str
    cjk: bool  # a run of CJK characters; else a word of letters and digits


def parse_query(text: str) -> list[Term]:
    """The terms of a search text, every one of which a match must contain."""
    terms = []
    for cjk, other in _CJK_OR_OTHER.findall(text):
        if cjk:
            terms.append(Term(cjk, True))
        else:
            terms.extend(Term(word, False) for word in _WORD.findall(other))
    return terms


def _bigrams(run: str) -> list[str]:
    return [run[i:i + 2] for i in range(len(run) - 1)]


def _quote(token: str) -> str:
    return '"' + token.replace('"', '""') + '"'


def fts_query(terms: list[Term]) -> str | None:
    """The FTS5 query for the terms (see the module docstring), or None if there are none."""
    rendered = []
    for term in terms:
        if term.cjk and len(term.text) == 1:
            rendered.append(_quote(term.text) + "*")
        elif term.cjk:
            rendered.append(_quote(" ".join(_bigrams(term.text))))
        else:
            rendered.append(_quote(term.text))
    return " ".join(rendered) or None


# The text search_body cuts up, as it is concatenated (its CJK runs never span fields).
SEARCHED_TEXT = ("(p.description || ' ' || p.place || ' ' || p.resident_name"
                 " || ' ' || coalesce(p.ledger_no, ''))")


def pg_condition(terms: list[Term], in_row: bool = False) -> tuple[str, list] | None:
    """The PostgreSQL condition on ``problems p`` matching what ``fts_query`` matches on
    FTS5, and its parameters; None if there are no terms. ``in_row``: spelt as a
    function call, which the GIN index does not serve and the planner guesses true
    for a third of the problems (however many words), so that each problem is checked
    where it stands.

    ``p.search_tokens`` holds ``fl_search_tokens`` (server/db/postgresql_history/
    _search_tokens.py): a CJK character or bigram, or a word, must be one of them; a
    CJK run of three or more characters (FTS5's phrase of consecutive bigrams) must
    also appear as written. A term unicode61 makes no word of is left out, as FTS5
    leaves out an empty phrase; with none left, nothing matches.
    """
    if not terms:
        return None
    tokens, runs = [], []
    for term in terms:
        pieces = (_bigrams(term.text) or [term.text]) if term.cjk else [term.text]
        for piece in pieces:
            tokens.extend(unicode61_tokens(piece))
        if term.cjk and len(term.text) >= 3:
            runs.append(term.text)
    if not tokens:
        return "1 = 0", []
    sql = "arraycontains(p.search_tokens, ?::text[])" if in_row else "p.search_tokens @> ?::text[]"
    sql += "".join(f" AND strpos({SEARCHED_TEXT}, ?) > 0" for _run in runs)
    return sql, [sorted(set(tokens)), *runs]


def match_keys(terms: list[Term]) -> tuple[str, list] | None:
    """SQLite's query of the search keys of the problems matching the terms, and its
    parameters; None if there are no terms."""
    query = fts_query(terms)
    if query is None:
        return None
    return "SELECT rowid FROM problems_fts WHERE problems_fts MATCH ?", [query]


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
    terms = parse_query(text)
    drive_max = SEARCH_DRIVE_MAX if drive_max is None else drive_max
    if db.dialect.name == "postgresql":
        return pg_search(db, terms, drive_max, areas)
    matches = match_keys(terms)
    if matches is None:
        return Search("1 = 0", [], False)
    matching, query = matches
    keys = [row[0] for row in db.execute(f"{matching} LIMIT ?", [*query, drive_max + 1])]
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
        query,
        True,
    )


def pg_search(db, terms: list[Term], drive_max: int, areas: list[list[str]]) -> Search:
    """``search_condition`` on PostgreSQL.

    Few matches are read as a list of rowids, which the planner sizes exactly;
    many are checked in each problem's row (``pg_condition``'s ``in_row``), so that a page
    read in sort order stops after a few thousand problems instead of fetching
    every match. Which one: the matches are counted, up to ``drive_max``, in the
    whole ledger and then within each of ``areas`` (the GIN index and the
    area's index intersected), unless the planner's own guess is far above
    ``drive_max`` (counting 200,000 matches to learn they are many takes 50 ms).
    Its guess is never trusted the other way: it multiplies the shares of the
    words, though 12345 and 热线 come together (2,300 guessed, 48,606 found).
    A read after the ordered one failed (``drive_max`` above SEARCH_DRIVE_MAX)
    leaves the planner free to start from the index.
    """
    condition = pg_condition(terms)
    if condition is None:
        return Search("1 = 0", [], False)
    sql, params = condition
    if drive_max > SEARCH_DRIVE_MAX:
        return Search(sql, params, True)
    for bounds in [None, *areas]:
        where, values = sql, list(params)
        if bounds is not None:
            ids = [row[0] for row in db.execute(
                "SELECT id FROM areas WHERE path >= ? AND path < ?", bounds)]
            in_area, id_list = db.dialect.in_list("p.area_id", ids)
            where, values = f"{sql} AND {in_area}", [*params, id_list]
        matching = f"SELECT p.rowid FROM problems p WHERE {where}"
        if planned_rows(db, matching, values) > BROAD_GUESS * drive_max:
            continue
        rowids = [row[0] for row in db.execute(f"{matching} LIMIT ?", [*values, drive_max + 1])]
        if len(rowids) <= drive_max:
            listed, rowid_list = db.dialect.in_list("p.rowid", rowids)
            return Search(listed, [rowid_list], False, listed=len(rowids))
    return Search(*pg_condition(terms, in_row=True), True)


BROAD_GUESS = 2  # a planner's guess of this many times drive_max matches is taken as many


def planned_rows(db, sql: str, params: list) -> float:
    """The rows PostgreSQL's planner expects ``sql`` to return."""
    plan = db.execute(f"EXPLAIN (FORMAT JSON) {sql}", params).fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return plan[0]["Plan"]["Plan Rows"]


def area_keys(db, matching: str, query: list, bounds: list[str], limit: int) -> list[int] | None:
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
        [*bounds, *query, limit + 1],
    )]
    return keys if len(keys) <= limit else None
