"""SQLite's ? placeholders spelt as PostgreSQL's $n (server/db/placeholders.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.db.placeholders import to_postgres_sql


@pytest.mark.parametrize(
    ("sqlite", "postgresql"),
    [
        ("SELECT * FROM problems WHERE id = ?", "SELECT * FROM problems WHERE id = $1"),
        ("INSERT INTO t (a, b, c) VALUES (?, ?, ?)", "INSERT INTO t (a, b, c) VALUES ($1, $2, $3)"),
        ("SELECT ?1, ?2, ?1", "SELECT $1, $2, $1"),
        # SQLite: a bare ? takes one more than the largest number given so far.
        ("SELECT ?, ?3, ?, ?1, ?", "SELECT $1, $3, $4, $1, $5"),
        ("SELECT ?10 + ?", "SELECT $10 + $11"),
        ("x IN (?,?,?)", "x IN ($1,$2,$3)"),
        ("SELECT 1", "SELECT 1"),
    ],
)
def test_placeholders_are_numbered_as_sqlite_numbers_them(sqlite, postgresql):
    assert to_postgres_sql(sqlite) == postgresql


@pytest.mark.parametrize(
    ("sqlite", "postgresql"),
    [
        ("SELECT 'why?', ?", "SELECT 'why?', $1"),
        ("SELECT 'it''s ?', ?", "SELECT 'it''s ?', $1"),
        ("SELECT '', ?, ''", "SELECT '', $1, ''"),
        ('SELECT "odd?name", "say ""?""", ?', 'SELECT "odd?name", "say ""?""", $1'),
        ("SELECT ? -- a ? here\n, ?", "SELECT $1 -- a ? here\n, $2"),
        ("SELECT ? /* ? */ , ?", "SELECT $1 /* ? */ , $2"),
        ("SELECT /* a /* nested ? */ still ? */ ?", "SELECT /* a /* nested ? */ still ? */ $1"),
        ("SELECT E'\\'?' , ?", "SELECT E'\\'?' , $1"),
        ("CREATE FUNCTION f() AS $$ SELECT '?' $$; SELECT ?",
         "CREATE FUNCTION f() AS $$ SELECT '?' $$; SELECT $1"),
        ("SELECT $body$ ? $x$ ? $body$, ?", "SELECT $body$ ? $x$ ? $body$, $1"),
        ("SELECT 'unterminated ?", "SELECT 'unterminated ?"),
    ],
)
def test_quoted_text_and_comments_keep_their_question_marks(sqlite, postgresql):
    assert to_postgres_sql(sqlite) == postgresql


def test_percent_signs_are_left_as_written():
    # RawCursor sends $n as written, so LIKE patterns need no %% escaping.
    sql = "SELECT 1 WHERE f LIKE '%,' || ? || ',%' AND note LIKE '50%'"
    assert to_postgres_sql(sql) == "SELECT 1 WHERE f LIKE '%,' || $1 || ',%' AND note LIKE '50%'"


def test_each_text_is_rewritten_once():
    to_postgres_sql.cache_clear()
    for _ in range(3):
        to_postgres_sql("SELECT ? FROM cached_once")
    assert to_postgres_sql.cache_info().hits == 2


# Pieces a query is made of; the ones holding ? must keep them.
_QUOTED = st.one_of(
    st.text(alphabet="ab?' %", max_size=6).map(lambda t: "'" + t.replace("'", "''") + "'"),
    st.text(alphabet='ab?" ', max_size=6).map(lambda t: '"' + t.replace('"', '""') + '"'),
    st.text(alphabet="ab? '\"", max_size=6).map(lambda t: f"-- {t}\n"),
    st.text(alphabet="ab? '\"", max_size=6).map(lambda t: f"/* {t} */"),
)
_PLAIN = st.text(alphabet="abc ,()=+%0123456789\n", max_size=6)
_PLACEHOLDER = st.one_of(st.just("?"), st.integers(1, 30).map(lambda n: f"?{n}"))


@given(st.lists(st.one_of(_QUOTED, _PLAIN, _PLACEHOLDER), max_size=20))
def test_only_placeholders_change_and_they_follow_sqlites_numbering(pieces):
    # Keep the pieces apart so a digit cannot run on into ?NNN.
    sql = " ".join(pieces)
    expected, largest = [], 0
    for piece in pieces:
        if piece.startswith("?"):
            number = int(piece[1:]) if piece[1:] else largest + 1
            largest = max(largest, number)
            expected.append(f"${number}")
        else:
            expected.append(piece)
    assert to_postgres_sql(sql) == " ".join(expected)


@given(st.text(alphabet="ab'\"-/*$E\n %1", max_size=40))
def test_text_without_question_marks_is_unchanged(sql):
    assert to_postgres_sql(sql) == sql


@given(st.text(alphabet="ab?'\"-/*$E\n 1", max_size=40))
def test_any_text_is_rewritten_without_error(sql):
    rewritten = to_postgres_sql(sql)
    assert rewritten.count("?") <= sql.count("?")
