"""Search on PostgreSQL (``fl_search_tokens``, ``pg_condition``) finds what FTS5 finds on
SQLite (docs/postgresql.md, 5.2 and 5.4)."""

from __future__ import annotations

import itertools
import re

import psycopg
import pytest
import sqlite_utils
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg.conninfo import make_conninfo

from server.db.dialect import POSTGRESQL
from server.db.postgresql_history import m001_foundation
from server.db.postgresql_history._search_tokens import (
    SEARCH_TOKENS_SQL,
    unicode61_tokens,
)
from server.db.sqlite import SqliteDatabase
from server.db.sqlite_history import search_body
from server.ledger import search

CODE_POINTS = [c for c in range(1, 0x110000) if not 0xD800 <= c <= 0xDFFF]
CJK = re.compile("[\u3400-\u9fff]+")

# Every case 5.4 names: mixed CJK/ASCII, CJK runs of 1-6 characters, Extension A and
# B, full-width digits and letters, accents, case, punctuation between words, ledger
# numbers in the text, empty and NULL fields; and the characters where unicode61's
# tables and Python's idea of a letter part (Yijing hexagrams, New Tai Lue signs).
CORPUS = [
    ("3号楼漏水", "东风小区", "张三", "ZF-2026-000001"),
    ("物业不作为，多次反映无果", "幸福路12号", "李四", "ZF-2026-000002"),
    ("漏", "", "", None),
    ("路灯不亮", "A区", "王", "ZF-2026-000003"),
    ("Café 门口 garbage", "CAFÉ Street", "José", None),
    ("ＡＢＣ１２３ 全角字母", "３号楼", "Ｚ", None),
    ("㐀㐁㐂 扩展甲 䶵", "㐀", "", None),
    ("𠀀𠀁 扩展乙 𠀂", "", "", None),
    ("hello-world foo_bar e-mail", "x.y/z", "O'Brien", None),
    ("井盖丢失ZF-2026-000010附近", "", "", "ZF-2026-000011"),
    ("下水道堵塞 下水 水道", "小区", "", None),
    ("", "", "", None),
    (None, "无描述", "", None),
    ("有描述", None, "", None),
    ("䷀䷁ 卦象 漏䷀水", "", "", None),
    ("ABC abc AbC", "", "", None),
    ("naïve résumé Ærø straße", "Ǖǖ ệ", "", None),
    ("x\u0301y combining", "", "", None),
    ("数字123和字母abc混合", "", "", None),
    ("漏水漏水漏水", "", "", None),
    ("环境卫生脏乱差严重", "", "", None),
    ("垃圾 堆放", "垃圾", "", None),
    ('"引号" \'single\' -hyphen-', "", "", None),
    ("a", "b", "c", None),
    ("Ⅻ ① ² ½", "", "", None),
    ("ﬁnance ligature", "", "", None),
    ("İstanbul ıi", "", "", None),
    ("Ωμέγα ΣΊΣΥΦΟΣ", "Москва", "МОСКВА", None),
    ("x\u19b0y tai", "", "", None),
    ("水", "漏水", "水漏", None),
    ("50%_off 100% a_b", "", "", None),
    ("tab\tnew\nline", "", "", None),
    ("作为物业", "不作", "", None),
    ("y comes before x", "", "", None),
]

# What PostgreSQL finds besides FTS5's matches, documented in docs/postgresql.md (5.2):
# a query bigram holding a separator keeps one character, an exact token on FTS5 but
# any occurrence of it on PostgreSQL; a query word unicode61 cuts in two is a phrase on
# FTS5 but two words anywhere on PostgreSQL.
KNOWN_WIDER = {"漏䷀": {"p000", "p019"}, "x\u19b0y": {"p033"}, "X\u19b0Y": {"p033"}}


# --- the Python rule against SQLite's own tokenizer -------------------------------------

def fts5_tokens(texts: list[str]) -> list[list[str]]:
    """The words FTS5 (unicode61) makes of each text, in order."""
    db = sqlite_utils.Database(memory=True)
    db.execute("CREATE VIRTUAL TABLE f USING fts5(body)")
    db.execute("CREATE VIRTUAL TABLE v USING fts5vocab(f, instance)")
    db.conn.executemany("INSERT INTO f (rowid, body) VALUES (?, ?)", enumerate(texts, 1))
    tokens = [[] for _text in texts]
    for term, doc in db.execute("SELECT term, doc FROM v ORDER BY doc, offset"):
        tokens[doc - 1].append(term)
    return tokens


def chunks(values: list, size: int) -> list[list]:
    return [values[i:i + size] for i in range(0, len(values), size)]


def probes(code_points: list[int]) -> str:
    return " ".join(f"q{chr(c)}q" for c in code_points)


def test_unicode61_tokens_are_fts5s_for_every_code_point():
    texts = [probes(part) for part in chunks(CODE_POINTS, 2_000)]
    assert [unicode61_tokens(text) for text in texts] == fts5_tokens(texts)


# --- fts_query: the same output as before parse_query ------------------------------------

def fts_query_before(text: str) -> str | None:
    """fts_query as it was before queries were parsed into terms: the oracle."""
    cjk_or_other = re.compile(r"([\u3400-\u9fff]+)|([^\s\u3400-\u9fff]+)")
    word = re.compile(r"[^\W_]+")

    def quote(token):
        return '"' + token.replace('"', '""') + '"'

    terms = []
    for cjk, other in cjk_or_other.findall(text):
        if cjk and len(cjk) == 1:
            terms.append(quote(cjk) + "*")
        elif cjk:
            terms.append(quote(" ".join(cjk[i:i + 2] for i in range(len(cjk) - 1))))
        else:
            terms.extend(quote(w) for w in word.findall(other))
    return " ".join(terms) or None


query_texts = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from(
        list("漏水物业不作为㐀䷀𠀀 \t\"'-_%，。ABCabcé\u0301ＡＢ１23ZF")
    )),
)


@settings(max_examples=500, deadline=None)
@given(query_texts)
def test_fts_query_is_unchanged(text):
    assert search.fts_query(search.parse_query(text)) == fts_query_before(text)


# --- the same corpus, searched on both backends -------------------------------------------

def sqlite_ledger(rows) -> SqliteDatabase:
    """The tables search reads, the index fed with search_body as m005's triggers feed it."""
    db = SqliteDatabase(memory=True)
    db.executescript("""
        CREATE TABLE problems (id TEXT PRIMARY KEY, description TEXT, place TEXT,
            resident_name TEXT, ledger_no TEXT);
        CREATE TABLE problem_search_keys (key INTEGER PRIMARY KEY,
            problem_id TEXT NOT NULL UNIQUE, area_id INTEGER);
        CREATE VIRTUAL TABLE problems_fts USING fts5(body, content = '');
    """)
    for key, (problem_id, *fields) in enumerate(rows, 1):
        db.execute("INSERT INTO problems VALUES (?, ?, ?, ?, ?)", [problem_id, *fields])
        db.execute("INSERT INTO problem_search_keys (key, problem_id) VALUES (?, ?)",
                   [key, problem_id])
        db.execute("INSERT INTO problems_fts (rowid, body) VALUES (?, ?)",
                   [key, search_body(*fields)])
    return db


class PgLedger:
    """The part of the database interface search uses, over psycopg (``?`` as ``%s``)."""

    dialect = POSTGRESQL

    def __init__(self, connection: psycopg.Connection):
        self.connection = connection

    def execute(self, sql: str, params=()):
        return self.connection.execute(sql.replace("?", "%s"), list(params))


@pytest.fixture(scope="module")
def pg_connection(postgres_url):
    """A database of its own (C collation, from template0) with ``fl_search_tokens``."""
    name = "search_tokens"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8'"
                      " LC_COLLATE 'C' LC_CTYPE 'C'")
    with psycopg.connect(make_conninfo(postgres_url, dbname=name), autocommit=True) as conn:
        conn.execute(SEARCH_TOKENS_SQL)
        conn.execute(m001_foundation.FUNCTIONS)  # fl_ascii_fold, for the one-character LIKE
        yield conn


def pg_ledger(conn: psycopg.Connection, rows) -> PgLedger:
    """The tables search reads, each problem's words in its row as m029 keeps them."""
    conn.execute("DROP TABLE IF EXISTS problem_search_keys, problems")
    conn.execute("""
        CREATE TABLE problems (id text PRIMARY KEY,
            rowid bigint GENERATED ALWAYS AS IDENTITY UNIQUE, description text, place text,
            resident_name text, ledger_no text, area_id integer, search_tokens text[]);
        CREATE INDEX idx_problems_search_tokens ON problems USING gin (search_tokens);
        CREATE TABLE problem_search_keys (key bigint PRIMARY KEY,
            problem_id text NOT NULL UNIQUE, area_id integer);
    """)
    for key, (problem_id, *fields) in enumerate(rows, 1):
        conn.execute(
            "INSERT INTO problems (id, description, place, resident_name, ledger_no,"
            " search_tokens) VALUES (%s, %s, %s, %s, %s,"
            " fl_search_tokens(%s, %s, %s, %s))", [problem_id, *fields, *fields])
        conn.execute("INSERT INTO problem_search_keys (key, problem_id) VALUES (%s, %s)",
                     [key, problem_id])
    return PgLedger(conn)


def expected_tokens(text: str) -> set[str]:
    """fl_search_tokens's rule in Python: each CJK run's bigrams and characters (those
    unicode61 keeps whole), and unicode61's words of the rest."""
    tokens = set(unicode61_tokens(CJK.sub(" ", text)))
    for run in CJK.findall(text):
        pieces = [run[i:i + 2] for i in range(len(run) - 1)] + list(run)
        tokens.update(piece for piece in pieces if unicode61_tokens(piece) == [piece])
    return tokens


@pytest.mark.postgres
def test_search_tokens_function_follows_the_rule_for_every_code_point(pg_connection):
    for part in chunks(CODE_POINTS, 5_000):
        text = probes(part)
        found = pg_connection.execute(
            "SELECT fl_search_tokens(%s, '', '', NULL)", [text]
        ).fetchone()[0]
        assert set(found) == expected_tokens(text), (hex(part[0]), hex(part[-1]))
        assert len(found) == len(set(found))


@pytest.mark.postgres
def test_search_tokens_of_a_problem(pg_connection):
    def tokens(*fields):
        return pg_connection.execute("SELECT fl_search_tokens(%s, %s, %s, %s)",
                                     list(fields)).fetchone()[0]

    assert tokens("3号楼漏水", "Café", "", None) == sorted(
        ["3", "号楼", "楼漏", "漏水", "号", "楼", "漏", "水", "cafe"])
    assert tokens("", "", "", "ZF-2026-000001") == ["000001", "2026", "zf"]
    assert tokens(None, "x", "", None) == []


def corpus_rows():
    return [(f"p{n:03d}", *fields) for n, fields in enumerate(CORPUS)]


def corpus_queries() -> list[str]:
    """5.4 item 3's queries, built from the corpus."""
    queries = set()
    for fields in CORPUS:
        for field in fields:
            for run in CJK.findall(field or ""):
                for length in range(1, 5):
                    queries.update(run[i:i + length] for i in range(len(run) - length + 1))
            for word in re.findall(r"[^\W_]+", field or ""):
                queries.update([word, word.upper(), word.lower()])
            queries.update((field or "").split())
    queries.update([
        "ZF-2026-000001", "zf-2026-1", " ZF-2026-000010", "ZF-2026-000011", "ZF-2026-999999",
        "2026", "000010", "ZF", "ZF-2026", "2026-000002",
        "3", "１", "-", "%", "_", "'", '"', "\\", "/", ".", "，", "²",
        '"漏水"', '"hello', "hello-world", "e-mail", "-hyphen-", "foo_bar", "a_b", "50%",
        "不存在", "zzz", "漏电", "cafe", "CAFE", "café", "resume", "naive", "strasse", "Ｚ",
        "ａｂｃ", "abc123", "数字123", "3号楼漏水", "漏水 3号楼", "物业 反映", "物业反映",
        "", " ", "，。", "x\u0301y", "xy", "ǖ", "u", "e", "䷀", "漏䷀", "漏䷀水", "ﬁnance",
        "finance", "istanbul", "İstanbul", "ωμεγα", "σισυφοσ", "москва", "x\u19b0y", "xᦰ",
    ])
    return sorted(queries)


def matched(db, text: str, drive_max: int | None) -> set[str]:
    condition = search.search_condition(db, text, drive_max)
    return {row[0] for row in db.execute(
        f"SELECT p.id FROM problems p WHERE {condition.sql}", condition.params)}


# One-letter queries fall back to LIKE, which folds ASCII case on SQLite only: the
# dialect spells a case-folding LIKE for PostgreSQL (docs/postgresql.md, 1.5).
def _like_folds_case(text: str) -> bool:
    return len(text) == 1 and text.isascii() and text.isalpha()


@pytest.mark.postgres
def test_postgresql_finds_what_fts5_finds(pg_connection):
    rows = corpus_rows()
    lite = sqlite_ledger(rows)
    pg = pg_ledger(pg_connection, rows)
    differences = {}
    queries = [q for q in corpus_queries() if not _like_folds_case(q)]
    for text in queries:
        # Both of SQLite's paths (a list of keys, and row by row) agree, and so do
        # PostgreSQL's three (a list of rowids, the words checked in the row, and the
        # condition the GIN index serves).
        on_sqlite = matched(lite, text, None)
        assert matched(lite, text, -1) == on_sqlite, text
        on_postgresql = matched(pg, text, -1)
        assert matched(pg, text, None) == on_postgresql, text
        assert matched(pg, text, search.SEARCH_DRIVE_MAX + 1) == on_postgresql, text
        if on_postgresql != on_sqlite:
            differences[text] = (sorted(on_sqlite), sorted(on_postgresql))
    assert set(differences) == set(KNOWN_WIDER)
    for text, (on_sqlite, on_postgresql) in differences.items():
        assert set(on_postgresql) - set(on_sqlite) == KNOWN_WIDER[text], text
    assert len(queries) > 300


@pytest.mark.postgres
def test_every_pair_of_corpus_words_matches_alike(pg_connection):
    """Two-term queries: every term must match, on both."""
    rows = corpus_rows()
    lite = sqlite_ledger(rows)
    pg = pg_ledger(pg_connection, rows)
    words = ["漏水", "漏", "物业不作为", "cafe", "3", "ABC", "垃圾", "水道", "2026", "zf"]
    for first, second in itertools.combinations(words, 2):
        text = f"{first} {second}"
        assert matched(pg, text, -1) == matched(lite, text, None), text
