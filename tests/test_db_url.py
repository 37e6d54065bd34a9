"""What a --db value names (server/db/url.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.db.url import (
    DatabaseURLError,
    PostgresServer,
    SQLiteFile,
    database_target,
    parse,
    redact,
)


@pytest.mark.parametrize(
    "value",
    ["data/fieldledger.db", "/var/lib/fieldledger/ledger.db", "ledger.db", "台账.db",
     "C:\\ledger\\fieldledger.db", "weird:name.db", "folder/a://b.db"],
)
def test_a_path_is_an_sqlite_file(value):
    assert parse(value) == SQLiteFile(Path(value))
    assert database_target(value) == Path(value)


def test_a_postgresql_url_is_read_as_libpq_reads_it():
    server = parse("postgresql://fl:s%40cret@db1:5433,[::1]/ledger?sslmode=require")
    assert isinstance(server, PostgresServer)
    assert server.hosts == (("db1", 5433), ("::1", None))
    assert (server.user, server.password, server.dbname) == ("fl", "s@cret", "ledger")
    assert server.options == {"sslmode": "require"}
    assert "s%40cret" not in repr(server) and "s@cret" not in repr(server)


@pytest.mark.parametrize(
    "url",
    ["postgres://fl@/ledger?host=/tmp/pg-x", "postgresql://fl@%2Ftmp%2Fpg-x/ledger",
     "POSTGRESQL://fl@%2Ftmp%2Fpg-x:5432/ledger"],
)
def test_a_unix_socket_folder_is_a_host(url):
    server = parse(url)
    assert server.url.startswith(("postgresql://", "postgres://"))
    assert server.hosts[0][0] == "/tmp/pg-x"
    assert (server.user, server.dbname) == ("fl", "ledger")


def test_query_parameters_override_the_url():
    server = parse("postgresql://a@h/one?dbname=two&user=b&host=x,y&port=5433")
    assert (server.dbname, server.user) == ("two", "b")
    assert server.hosts == (("x", 5433), ("y", 5433))


def test_libpq_defaults_are_left_to_libpq():
    server = parse("postgresql://")
    assert (server.hosts, server.user, server.password, server.dbname) == ((), None, None, None)


@pytest.mark.parametrize(
    ("url", "says"),
    [("postgresql://h:54x2/db", "'54x2' is not a port number"),
     ("postgresql://h:70000/db", "'70000' is not a port number"),
     ("postgresql://h/db?sslmode", "not key=value pairs"),
     ("postgresql:///db?host=a,b,c&port=1,2", "3 hosts but 2 ports"),
     ("postgresql://h/db?colour=blue", 'invalid URI query parameter: "colour"'),
     ("postgresql://[::1/db", "IPv6")],
)
def test_a_malformed_postgresql_url_is_refused(url, says):
    with pytest.raises(DatabaseURLError, match=says):
        parse(url)


def test_a_malformed_escape_is_refused_without_the_password():
    with pytest.raises(DatabaseURLError) as refused:
        parse("postgresql://fl:pa%zzword@db1/ledger")
    assert str(refused.value).startswith("postgresql://fl:***@db1/ledger: a % must start")
    assert "pa%zz" not in str(refused.value)


def test_a_postgresql_url_is_the_target_as_given():
    assert database_target("postgresql://fl:secret@db1/ledger") == (
        "postgresql://fl:secret@db1/ledger")
    assert database_target("POSTGRES://fl@/ledger?host=/run/pg") == (
        "postgres://fl@/ledger?host=/run/pg")


@pytest.mark.parametrize(
    "value",
    ["mysql://root:pw@localhost/ledger", "http://example.org/ledger.db", "sqlite:///ledger.db",
     "file://ledger.db"],
)
def test_any_other_url_is_refused_naming_what_is_accepted(value):
    with pytest.raises(DatabaseURLError) as refused:
        parse(value)
    scheme = value.split("://")[0]
    assert f"{scheme}:// is not a database FieldLedger can open" in str(refused.value)
    assert "path of an SQLite file" in str(refused.value)
    assert ":pw@" not in str(refused.value)


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_value_is_refused(value):
    with pytest.raises(DatabaseURLError, match="empty"):
        database_target(value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),
     ("postgresql://u@h/db?sslmode=disable&password=x", "postgresql://u@h/db?sslmode=disable&password=***"),
     ("postgresql://h:5432/db", "postgresql://h:5432/db"),
     ("data/a:b@c.db", "data/a:b@c.db")],
)
def test_redact_hides_passwords_only(url, shown):
    assert redact(url) == shown
