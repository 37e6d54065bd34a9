"""What a ``--db`` value (or ``FIELDLEDGER_DB``) names: an SQLite file or a PostgreSQL server.

A value that starts with ``scheme://`` is a URL; anything else is the path of an
SQLite file, as it always was. ``postgresql://`` and ``postgres://`` URLs are read
the way libpq reads them (``postgresql://user:password@host:port,host2/dbname?k=v``,
a host that starts with ``/`` being a Unix socket folder), so a mistyped one is
refused at once. ``sqlite://`` URLs are not taken: an SQLite database is named by
its path alone, which avoids the two readings of ``sqlite:///x`` and ``sqlite:////x``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote

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
    url: str = field(repr=False)  # as given, password included: libpq and psycopg take it whole
    hosts: tuple[tuple[str, int | None], ...]  # empty: libpq's default socket
    dbname: str | None
    user: str | None
    password: str | None = field(repr=False)
    options: dict[str, str] = field(repr=False)  # the query's key=value pairs

    @property
    def redacted(self) -> str:
        return redact(self.url)


def sqlite_path(value: str) -> Path:
    """The SQLite file a ``--db`` value names, or DatabaseURLError: the one reading every
    command of ``fieldledger`` applies to its database option."""
    target = parse(value)
    if isinstance(target, PostgresServer):
        raise DatabaseURLError(
            f"{target.redacted}: this build serves SQLite only (the PostgreSQL backend is"
            f" not finished); give the path of an SQLite file, such as {EXAMPLE_PATH}"
        )
    return target.path


def parse(value: str) -> SQLiteFile | PostgresServer:
    if not value.strip():
        raise DatabaseURLError(
            f"the value is empty; give the path of an SQLite file, such as {EXAMPLE_PATH}"
        )
    scheme = _SCHEME.match(value)
    if scheme is None:
        return SQLiteFile(Path(value))
    if scheme[1].lower() in POSTGRES_SCHEMES:
        return parse_postgres(value)
    raise DatabaseURLError(
        f"{redact(value)}: {scheme[1]}:// is not a database FieldLedger can open; give the"
        f" path of an SQLite file, such as {EXAMPLE_PATH}"
    )


def parse_postgres(url: str) -> PostgresServer:
    rest = url.split("://", 1)[1]
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, _, hostlist = netloc.rpartition("@")
    user, has_password, password = userinfo.partition(":")
    try:
        options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError:
        raise DatabaseURLError(f"{redact(url)}: the part after ? is not key=value pairs") from None
    hosts = tuple(_host(url, spec) for spec in hostlist.split(",")) if hostlist else ()
    if "host" in options or "port" in options:
        hosts = _hosts_from_options(url, options, hosts)
    return PostgresServer(
        url=url,
        hosts=hosts,
        dbname=options.get("dbname") or unquote(path) or None,
        user=options.get("user") or unquote(user) or None,
        password=options.get("password") or (unquote(password) if has_password else None),
        options=options,
    )


def _host(url: str, spec: str) -> tuple[str, int | None]:
    if spec.startswith("["):  # [::1]:5432
        host, _, after = spec[1:].partition("]")
        port = after.removeprefix(":")
    else:
        host, _, port = spec.partition(":")
    return unquote(host), _port(url, port)


def _hosts_from_options(url, options, hosts):
    names = options["host"].split(",") if "host" in options else [h for h, _ in hosts] or [""]
    ports = options["port"].split(",") if "port" in options else [str(p or "") for _, p in hosts]
    if len(ports) <= 1:
        ports = (ports or [""]) * len(names)
    if len(ports) != len(names):
        raise DatabaseURLError(f"{redact(url)}: {len(names)} hosts but {len(ports)} ports")
    return tuple((name, _port(url, port)) for name, port in zip(names, ports, strict=True))


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
