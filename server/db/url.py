"""What a ``--db`` value (or ``FIELDLEDGER_DB``) names: an SQLite file or a PostgreSQL server.

A value that starts with ``scheme://`` is a URL; anything else is the path of an
SQLite file, as it always was. ``postgresql://`` and ``postgres://`` URLs are read
by libpq's own parser (``postgresql://user:password@host:port,host2/dbname?k=v``,
a host that starts with ``/`` being a Unix socket folder), so a mistyped one is
refused at once. ``sqlite://`` URLs are not taken: an SQLite database is named by
its path alone, which avoids the two readings of ``sqlite:///x`` and ``sqlite:////x``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

POSTGRES_SCHEMES = ("postgresql", "postgres")
EXAMPLE_PATH = "data/fieldledger.db"

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


class DatabaseURLError(ValueError):
    """A ``--db`` value this build cannot open; ``str()`` is one line for the user."""


@dataclass(frozen=True)
class SQLiteFile:
    path: Path


@dataclass(frozen=True)
class PostgresServer:
    url: str = field(repr=False)  # password included: libpq and psycopg take it whole
    hosts: tuple[tuple[str, int | None], ...]  # empty: libpq's default socket
    dbname: str | None
    user: str | None
    password: str | None = field(repr=False)
    options: dict[str, str] = field(repr=False)  # the query's key=value pairs

    @property
    def redacted(self) -> str:
        return redact(self.url)


def database_target(value: str) -> Path | str:
    """What a ``--db`` value names, or DatabaseURLError: the path of an SQLite file, or the
    URL of a PostgreSQL database (as given: libpq and psycopg take it whole). The one
    reading every command of ``fieldledger`` applies to its database option."""
    target = parse(value)
    if isinstance(target, PostgresServer):
        return target.url
    return target.path


def parse(value: str) -> SQLiteFile | PostgresServer:
    if not value.strip():
        raise DatabaseURLError(
            f"the value is empty; give the path of an SQLite file, such as {EXAMPLE_PATH},"
            " or a postgresql:// URL"
        )
    scheme = _SCHEME.match(value)
    if scheme is None:
        return SQLiteFile(Path(value))
    if scheme[1].lower() in POSTGRES_SCHEMES:
        return parse_postgres(value)
    raise DatabaseURLError(
        f"{redact(value)}: {scheme[1]}:// is not a database FieldLedger can open; give the"
        f" path of an SQLite file, such as {EXAMPLE_PATH}, or a postgresql:// URL"
    )


def parse_postgres(url: str) -> PostgresServer:
    """Read the URL with libpq's own parser, so it means here what it means to the driver."""
    scheme, rest = url.split("://", 1)
    url = f"{scheme.lower()}://{rest}"  # libpq knows the schemes in lower case only
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError as refused:
        raise DatabaseURLError(f"{redact(url)}: {_reason(str(refused))}") from None
    names = params.pop("host", "").split(",")
    ports = params.pop("port", "").split(",")
    if len(ports) == 1:
        ports *= len(names)
    if len(ports) != len(names):
        raise DatabaseURLError(f"{redact(url)}: {len(names)} hosts but {len(ports)} ports")
    hosts = tuple((name, _port(url, port)) for name, port in zip(names, ports, strict=True))
    return PostgresServer(
        url=url,
        hosts=() if hosts == (("", None),) else hosts,
        dbname=params.pop("dbname", None) or None,
        user=params.pop("user", None) or None,
        password=params.pop("password", None),
        options={name: str(value) for name, value in params.items()},
    )


def _reason(libpq_message: str) -> str:
    message = libpq_message.strip().splitlines()[0] if libpq_message.strip() else "not a URL"
    if "percent-encoded" in message:  # libpq quotes the part, which may be the password
        return "a % must start a two-digit hexadecimal escape, and %00 is refused"
    if "key/value separator" in message:
        return "the part after ? is not key=value pairs"
    return message


def _port(url: str, text: str) -> int | None:
    if not text:
        return None
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise DatabaseURLError(f"{redact(url)}: {text!r} is not a port number")
    return int(text)


def redact(value: str) -> str:
    """The URL with any password replaced by ***, fit for messages and logs."""
    scheme = _SCHEME.match(value)
    if scheme is None:
        return value
    rest = value[scheme.end() :]
    netloc_end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    userinfo, at, hostlist = rest[:netloc_end].rpartition("@")
    if ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    query = re.sub(r"([?&]password=)[^&#]*", r"\1***", rest[netloc_end:])
    return value[: scheme.end()] + userinfo + at + hostlist + query
