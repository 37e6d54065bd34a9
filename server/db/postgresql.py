"""The PostgreSQL backend: the interface of ``server.db`` on psycopg 3.

A connection runs in autocommit mode, like sqlite3's reads, and opens a transaction
only where the code asks for one: ``write_transaction()`` (PostgreSQL's ``BEGIN
IMMEDIATE``: ``BEGIN`` then the one advisory write lock), ``snapshot()`` (one
REPEATABLE READ view), ``bounded()`` and ``bulk_load()``. Queries keep SQLite's
``?`` placeholders (``server.db.placeholders``) and run on psycopg's ``RawCursor``.
Values come back as sqlite3 gives them: ``numeric`` as int or float, booleans as
0/1, JSON as text (docs/postgresql.md, section 1.7).

``PostgresStore`` is ``server.db.sqlite.Store`` for a server: one writer thread with
one connection, and a pool of read-only connections for the readers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from psycopg import errors as pg_errors
from psycopg.adapt import Dumper, Loader
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg.types.string import TextLoader

from server.db import savepoints
from server.db.dialect import POSTGRESQL
from server.db.errors import BackendErrors, NotFound
from server.db.locks import WRITE_LOCK
from server.db.placeholders import to_postgres_sql
from server.db.sqlite import BUSY_TIMEOUT_MS
from server.db.url import redact

T = TypeVar("T")

_SCHEMA_CHANGE = re.compile(r"\s*(ALTER|CREATE|DROP)\b", re.IGNORECASE)

__all__ = [
    "POSTGRES_ERRORS",
    "PostgresDatabase",
    "PostgresStore",
    "Table",
    "UnsupportedCollation",
    "connect",
    "open_database",
    "to_postgres_sql",
]

# How many read connections a store keeps at most: the web server's thread pool
# (anyio's 40 threads) runs at most that many reads at once.
READERS = 40

# The database's text order must be SQLite's BINARY (bytes), and its character
# classes Unicode's (docs/postgresql.md, "text order").
COLLATIONS = ("C", "POSIX")
CTYPES = ("c.utf8", "c.utf-8")


def _is_busy(error: BaseException) -> bool:
    return isinstance(
        error,
        pg_errors.LockNotAvailable | pg_errors.DeadlockDetected | pg_errors.SerializationFailure,
    )


def _is_interrupted(error: BaseException) -> bool:
    return isinstance(error, pg_errors.QueryCanceled)


POSTGRES_ERRORS = BackendErrors(
    Integrity=psycopg.IntegrityError,
    Operational=psycopg.OperationalError,
    is_busy=_is_busy,
    is_interrupted=_is_interrupted,
)


class UnsupportedCollation(RuntimeError):
    """The database sorts text otherwise than SQLite; ``str()`` says how to create one."""


# --- Values: as sqlite3 gives and takes them --------------------------------------


class _NumericLoader(Loader):
    """``sum()`` of integers is ``numeric`` on PostgreSQL; SQLite gives an int."""

    def load(self, data):
        value = Decimal(bytes(data).decode())
        if value.is_finite() and value == value.to_integral_value():
            return int(value)
        return float(value)


class _BooleanLoader(Loader):
    """A comparison in a select list is 0 or 1 on SQLite; no column is boolean."""

    def load(self, data):
        return 1 if bytes(data) == b"t" else 0


class _BooleanDumper(Dumper):
    """``True`` binds as 1, as sqlite3 binds it: flags are integer columns."""

    oid = psycopg.adapters.types["int8"].oid

    def dump(self, obj):
        return b"1" if obj else b"0"


def _configure(conn: psycopg.Connection) -> None:
    """What every connection of the backend sets, the pool's included."""
    conn.adapters.register_loader("numeric", _NumericLoader)
    conn.adapters.register_loader("bool", _BooleanLoader)
    conn.adapters.register_loader("json", TextLoader)
    conn.adapters.register_loader("jsonb", TextLoader)
    conn.adapters.register_dumper(bool, _BooleanDumper)
    conn.execute(
        "SELECT set_config('TimeZone', 'UTC', false), set_config('lock_timeout', $1, false)",
        (f"{BUSY_TIMEOUT_MS}ms",),
    )


def _connection_options() -> dict[str, Any]:
    return {"autocommit": True, "cursor_factory": psycopg.RawCursor}


def connect(url: str) -> PostgresDatabase:
    """A connection to the database ``url`` names, set up as every FieldLedger one is."""
    conn = psycopg.connect(url, **_connection_options())
    _configure(conn)
    return PostgresDatabase(conn)


def open_database(url: str) -> PostgresDatabase:
    """Connect, check the database sorts text as SQLite does, and bring its schema up to date."""
    db = connect(url)
    try:
        check_collation(db)
        migrate = _schema_history()
        if migrate is not None:
            migrate(db)
    except BaseException:
        db.close()
        raise
    return db


def _schema_history() -> Callable[[PostgresDatabase], None] | None:
    try:
        from server.db.postgresql_history import migrate
    except ImportError:  # the schema history is written in its own step (docs/postgresql.md, 8)
        return None
    return migrate


def check_collation(db: PostgresDatabase) -> None:
    name, collate, ctype = db.execute(
        "SELECT datname, datcollate, datctype FROM pg_database WHERE datname = current_database()"
    ).fetchone()
    if collate in COLLATIONS and ctype.lower() in CTYPES:
        return
    raise UnsupportedCollation(
        f"database {name} has LC_COLLATE {collate!r} and LC_CTYPE {ctype!r}; FieldLedger needs"
        " text in byte order, as SQLite keeps it. Create the database with: CREATE DATABASE"
        f" \"{name}\" LC_COLLATE 'C' LC_CTYPE 'C.UTF-8' TEMPLATE template0"
    )


# --- The database ------------------------------------------------------------------


class _Catalog:
    """What a table's shape says, read from the catalog once per store (and again
    after a schema change through the store's connections)."""

    def __init__(self):
        self._tables: dict[str, _TableShape] = {}

    def forget(self) -> None:
        self._tables = {}

    def shape(self, db: PostgresDatabase, name: str) -> _TableShape:
        shape = self._tables.get(name)
        if shape is None:
            shape = self._tables[name] = _TableShape.read(db, name)
        return shape


class _TableShape:
    def __init__(
        self, columns: dict[str, type], pks: list[str], identity: dict[str, str], generated: set
    ):
        self.columns = columns
        self.pks = pks
        self.generated = generated  # computed by the database, never written
        # Columns whose values a sequence draws: name → the identity kind
        # ('a' ALWAYS, 'd' BY DEFAULT, '' a serial's default).
        self.identity = identity

    @classmethod
    def read(cls, db: PostgresDatabase, name: str) -> _TableShape:
        rows = db.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attidentity,"
            " pg_get_serial_sequence(quote_ident(?), a.attname) IS NOT NULL, a.attgenerated <> '',"
            # the column's place in the key, from 1 (int2vector counts from 0)
            " coalesce(1 + array_position(i.indkey::int2[], a.attnum)"
            " - array_lower(i.indkey::int2[], 1), 0)"
            " FROM pg_attribute a LEFT JOIN pg_index i"
            " ON i.indrelid = a.attrelid AND i.indisprimary"
            " WHERE a.attrelid = to_regclass(quote_ident(?)) AND a.attnum > 0"
            " AND NOT a.attisdropped ORDER BY a.attnum",
            (name, name),
        ).fetchall()
        if not rows:
            raise NotFound(f"no table {name}")
        columns = {column: _python_type(sql_type) for column, sql_type, *_ in rows}
        pks = [column for column, *_, position in sorted(rows, key=lambda r: r[5]) if position]
        if not pks and "rowid" in columns:
            pks = ["rowid"]
        identity = {
            column: kind for column, _, kind, sequenced, *_ in rows if kind or sequenced
        }
        generated = {column for column, _, _, _, computed, _ in rows if computed}
        return cls(columns, pks, identity, generated)


def _python_type(sql_type: str) -> type:
    """The type sqlite-utils' ``columns_dict`` names for a column of this SQL type."""
    if sql_type in ("bigint", "integer", "smallint", "boolean"):
        return int
    if sql_type.startswith(("double", "real", "numeric")):
        return float
    if sql_type == "bytea":
        return bytes
    return str


class PostgresDatabase:
    """What every ``fn(db, …)`` receives, on one psycopg connection."""

    dialect = POSTGRESQL
    errors = POSTGRES_ERRORS

    def __init__(self, conn: psycopg.Connection, catalog: _Catalog | None = None):
        self.conn = conn
        self._catalog = catalog or _Catalog()
        self._bulk_loading = False

    # Statements

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor:
        if _SCHEMA_CHANGE.match(sql):
            self._catalog.forget()
        return self.conn.execute(to_postgres_sql(sql), _positional(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> psycopg.Cursor:
        cursor = self.conn.cursor()
        cursor.executemany(to_postgres_sql(sql), rows)
        return cursor

    def executescript(self, sql: str) -> None:
        """Several statements without parameters, as one text (schema steps)."""
        self._catalog.forget()
        self.conn.execute(sql)

    def query(self, sql: str, params: Sequence[Any] = ()) -> Iterator[dict]:
        cursor = self.conn.cursor(row_factory=dict_row)
        cursor.execute(to_postgres_sql(sql), _positional(params))
        yield from cursor

    def __getitem__(self, name: str) -> Table:
        return Table(self, name)

    table = __getitem__

    def shape(self, name: str) -> _TableShape:
        return self._catalog.shape(self, name)

    # Transactions

    @property
    def in_transaction(self) -> bool:
        return self.conn.info.transaction_status != TransactionStatus.IDLE

    @contextlib.contextmanager
    def _transaction(self, begin: str) -> Iterator[PostgresDatabase]:
        if self.in_transaction:  # as sqlite3: PostgreSQL would only warn, then commit early
            raise psycopg.ProgrammingError("cannot start a transaction within a transaction")
        self.execute(begin)
        try:
            yield self
        except BaseException:
            self.rollback()
            raise
        else:
            try:
                self.execute("COMMIT")
            except BaseException:
                self.rollback()
                raise

    @contextlib.contextmanager
    def write_transaction(self) -> Iterator[PostgresDatabase]:
        """PostgreSQL's ``BEGIN IMMEDIATE``: the one write lock, taken first.

        READ COMMITTED on purpose: each statement sees what the writers before this one
        committed (docs/postgresql.md, 4.4). A lock not free within ``lock_timeout``
        raises what ``errors.is_busy`` names.
        """
        with self._transaction("BEGIN ISOLATION LEVEL READ COMMITTED"):
            self.execute("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK,))
            if self._bulk_loading:
                self.execute("SET CONSTRAINTS ALL DEFERRED")
                self.execute("SET LOCAL synchronous_commit = off")
            yield self

    def savepoint(self, name: str) -> contextlib.AbstractContextManager[None]:
        """Undo only what the block wrote if it raises; call inside a transaction."""
        return savepoints.savepoint(self, name)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[PostgresDatabase]:
        """The block's reads see one state of the database, whatever is written meanwhile.

        Inside a transaction already open, the block reads in that one.
        """
        if self.in_transaction:
            yield self
            return
        with self._transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"):
            yield self

    def bounded(self, seconds: float, fn: Callable[..., T], *args: Any) -> T | None:
        """``fn(*args)``, or None if one of its statements runs longer than ``seconds``."""
        if seconds <= 0:
            return None
        timeout = f"{max(1, round(seconds * 1000))}ms"
        try:
            if self.in_transaction:
                with self.savepoint("bounded"):
                    previous = self._set_statement_timeout(timeout)
                    try:
                        return fn(*args)
                    finally:
                        if self.conn.info.transaction_status == TransactionStatus.INTRANS:
                            self._set_statement_timeout(previous)
            with self._transaction("BEGIN"):
                self._set_statement_timeout(timeout)
                return fn(*args)
        except pg_errors.QueryCanceled:
            return None

    def _set_statement_timeout(self, value: str) -> str:
        previous = self.execute("SHOW statement_timeout").fetchone()[0]
        self.execute("SELECT set_config('statement_timeout', ?, true)", (value,))
        return previous

    @contextlib.contextmanager
    def bulk_load(self) -> Iterator[PostgresDatabase]:
        """One write transaction for loading a new database: its commit is not waited
        for, and foreign keys are checked once at its end, not row by row (they are
        declared DEFERRABLE). Rows loaded with explicit ids (``executemany`` bypasses
        ``Table.insert``) move their sequences past them before the commit."""
        self._bulk_loading = True
        try:
            with self.write_transaction():
                yield self
                self._move_sequences_past_loaded_ids()
        finally:
            self._bulk_loading = False

    def _move_sequences_past_loaded_ids(self) -> None:
        sequenced = self.execute(
            "SELECT c.relname, a.attname FROM pg_attribute a"
            " JOIN pg_class c ON c.oid = a.attrelid"
            " WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'"
            " AND a.attnum > 0 AND NOT a.attisdropped"
            " AND pg_get_serial_sequence(quote_ident(c.relname), a.attname) IS NOT NULL"
        ).fetchall()
        for table, column in sequenced:
            self[table]._move_sequence_past(
                column,
                self.execute(f"SELECT max({_quote(column)}) FROM {_quote(table)}").fetchone()[0],
            )

    # The connection

    @property
    def identity(self) -> str:
        """The server and database, never the password: two connections to one store share it."""
        info = self.conn.info
        return f"postgresql://{info.host}:{info.port}/{info.dbname}"

    def checkpoint(self) -> None:
        """Nothing: the server checkpoints on its own (``CHECKPOINT`` needs a superuser)."""

    def rollback(self) -> None:
        if self.in_transaction and not self.conn.closed:
            self.conn.execute("ROLLBACK")

    def close(self) -> None:
        self.conn.close()

    def __repr__(self) -> str:
        return f"<PostgresDatabase {redact(self.identity)}>"


def _positional(params: Sequence[Any]) -> tuple | None:
    """The parameters for ``$1 …``; None when there are none, which lets a text without
    parameters hold several statements (as ``executescript`` does on SQLite)."""
    if isinstance(params, dict):
        raise TypeError("named parameters are SQLite's only: write the query with ?")
    return tuple(params) or None


# --- Tables: the sqlite-utils subset the code uses ---------------------------------


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _jsonify(value: Any) -> Any:
    """sqlite-utils stores a dict or list as its JSON text."""
    return json.dumps(value, default=repr) if isinstance(value, dict | list | tuple) else value


class Table:
    def __init__(self, db: PostgresDatabase, name: str):
        self.db = db
        self.name = name
        self.last_pk: Any = None

    def __repr__(self) -> str:
        return f"<Table {self.name}>"

    @property
    def _shape(self) -> _TableShape:
        return self.db.shape(self.name)

    @property
    def pks(self) -> list[str]:
        return self._shape.pks

    @property
    def columns_dict(self) -> dict[str, type]:
        return dict(self._shape.columns)

    def exists(self) -> bool:
        found = self.db.execute("SELECT to_regclass(quote_ident(?)) IS NOT NULL", (self.name,))
        return bool(found.fetchone()[0])

    @property
    def count(self) -> int:
        return self.db.execute(f"SELECT count(*) FROM {_quote(self.name)}").fetchone()[0]

    @property
    def rows(self) -> Iterator[dict]:
        return self.rows_where()

    def rows_where(
        self,
        where: str | None = None,
        where_args: Sequence[Any] = (),
        order_by: str | None = None,
        select: str = "*",
        limit: int | None = None,
        offset: int | None = None,
    ) -> Iterator[dict]:
        sql = f"SELECT {select} FROM {_quote(self.name)}"
        if where is not None:
            sql += f" WHERE {where}"
        if order_by is not None:
            sql += f" ORDER BY {order_by}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        if offset is not None:
            sql += f" OFFSET {int(offset)}"
        return self.db.query(sql, where_args)

    def _pk_condition(self, pk_values: Any) -> tuple[str, list]:
        values = list(pk_values) if isinstance(pk_values, list | tuple) else [pk_values]
        if len(values) != len(self.pks):
            raise NotFound(f"{self.name} has {len(self.pks)} key columns, given {len(values)}")
        return " AND ".join(f"{_quote(pk)} = ?" for pk in self.pks), values

    def get(self, pk_values: Any) -> dict:
        condition, values = self._pk_condition(pk_values)
        for row in self.db.query(f"SELECT * FROM {_quote(self.name)} WHERE {condition}", values):
            return row
        raise NotFound(f"no row {pk_values!r} in {self.name}")

    def update(self, pk_values: Any, updates: dict | None = None) -> Table:
        self.get(pk_values)
        condition, values = self._pk_condition(pk_values)
        if updates:
            assignments = ", ".join(f"{_quote(column)} = ?" for column in updates)
            self.db.execute(
                f"UPDATE {_quote(self.name)} SET {assignments} WHERE {condition}",
                [*map(_jsonify, updates.values()), *values],
            )
        self.last_pk = values[0] if len(values) == 1 else tuple(values)
        return self

    def delete(self, pk_values: Any) -> Table:
        self.get(pk_values)
        condition, values = self._pk_condition(pk_values)
        self.db.execute(f"DELETE FROM {_quote(self.name)} WHERE {condition}", values)
        return self

    def insert(self, record: dict, *, ignore: bool = False, replace: bool = False) -> Table:
        return self.insert_all([record], ignore=ignore, replace=replace)

    def upsert(self, record: dict) -> Table:
        """Set the given columns of the row with the record's key, or insert the record
        (sqlite-utils' upsert: the columns left out keep their values)."""
        shape = self._shape
        key = [record[pk] for pk in shape.pks]
        condition, values = self._pk_condition(key)
        updates = {column: value for column, value in record.items() if column not in shape.pks}
        if updates:
            assignments = ", ".join(f"{_quote(column)} = ?" for column in updates)
            changed = self.db.execute(
                f"UPDATE {_quote(self.name)} SET {assignments} WHERE {condition}",
                [*map(_jsonify, updates.values()), *values],
            ).rowcount
        else:
            changed = self.db.execute(
                f"SELECT count(*) FROM {_quote(self.name)} WHERE {condition}", values
            ).fetchone()[0]
        if not changed:
            return self.insert(record)
        self.last_pk = key[0] if len(key) == 1 else tuple(key)
        return self

    def upsert_all(self, records: Iterable[dict]) -> Table:
        for record in records:
            self.upsert(record)
        return self

    def insert_all(
        self, records: Iterable[dict], *, ignore: bool = False, replace: bool = False
    ) -> Table:
        """Insert the rows; ``ignore`` skips one whose key or a unique value is taken;
        ``replace`` (``INSERT OR REPLACE``) overwrites the row that has its key, the
        columns left out taking their defaults."""
        shape = self._shape
        batch: list[dict] = []
        for record in records:
            if batch and record.keys() != batch[0].keys():
                self._insert_batch(shape, batch, ignore, replace)
                batch = []
            batch.append(record)
        if batch:
            self._insert_batch(shape, batch, ignore, replace)
        return self

    def _insert_batch(self, shape: _TableShape, rows: list[dict], ignore: bool, replace: bool):
        columns = list(rows[0])
        sql = f"INSERT INTO {_quote(self.name)} ({', '.join(map(_quote, columns))})"
        if any(shape.identity.get(column) == "a" for column in columns):
            sql += " OVERRIDING SYSTEM VALUE"
        sql += f" VALUES ({', '.join('?' * len(columns))})"
        # EXCLUDED holds the defaults of the columns left out, as a REPLACE would.
        updated = [
            column for column in shape.columns
            if column not in shape.pks and column not in shape.generated
            and shape.identity.get(column) != "a"
        ]
        if replace and updated:
            sql += f" ON CONFLICT ({', '.join(map(_quote, shape.pks))}) DO UPDATE SET "
            sql += ", ".join(f"{_quote(column)} = EXCLUDED.{_quote(column)}" for column in updated)
        elif ignore or replace:
            sql += " ON CONFLICT DO NOTHING"
        sql += f" RETURNING {', '.join(map(_quote, shape.pks))}"
        params = [[_jsonify(row[column]) for column in columns] for row in rows]
        cursor = self.db.conn.cursor()
        cursor.executemany(to_postgres_sql(sql), params, returning=True)
        returned = None
        while True:
            returned = cursor.fetchone() or returned
            if not cursor.nextset():
                break
        if returned is None and len(rows) == 1 and all(pk in rows[0] for pk in shape.pks):
            returned = tuple(rows[0][pk] for pk in shape.pks)  # ignored: the key given
        if returned is not None:
            self.last_pk = returned[0] if len(returned) == 1 else tuple(returned)
        for column in columns:
            explicit = [row[column] for row in rows if row[column] is not None]
            if column in shape.identity and explicit:
                self._move_sequence_past(column, max(explicit))

    def _move_sequence_past(self, column: str, value: int) -> None:
        """After an explicit id, the sequence's next one must not collide with it."""
        self.db.execute(
            "SELECT setval(s, ?) FROM (SELECT pg_get_serial_sequence(quote_ident(?), ?)::regclass"
            " AS s) q WHERE coalesce(pg_sequence_last_value(s), 0) < ?",
            (value, self.name, column, value),
        )


# --- The store ---------------------------------------------------------------------


class PostgresStore:
    """One writer thread with its connection; a pool of read-only connections."""

    errors = POSTGRES_ERRORS

    def __init__(self, url: str, readers: int = READERS):
        self.url = url
        self.readers = readers
        # ``fn(db)`` run on every connection the store opens from now on, before its first
        # use, outside any transaction: the app's restore check (docs/postgresql.md, 4.5).
        # A failover gives the servers a database that may have gone back in time without
        # their restarting; their new connections are the first to see it.
        self.on_connect: Callable[[PostgresDatabase], None] | None = None
        self._lock = threading.Lock()
        self._catalog = _Catalog()
        self._writer_db: PostgresDatabase | None = None
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None
        self._pool: psycopg_pool.ConnectionPool | None = None
        self.open()

    def __repr__(self) -> str:
        return f"<PostgresStore {redact(self.url)}>"

    def open(self) -> None:
        """Connect the writer (migrating the schema) and the readers' pool; a closed
        store may be opened again."""
        with self._lock:
            if self._writer is not None:
                return
            self._writer_db = open_database(self.url)
            self._writer_db._catalog = self._catalog
            self._pool = psycopg_pool.ConnectionPool(
                self.url,
                kwargs=_connection_options(),
                min_size=min(4, self.readers),
                max_size=self.readers,
                configure=self._configure_reader,
                # A connection the server dropped (a failover, a restart) is found
                # before a request gets it, and replaced by a checked new one.
                check=psycopg_pool.ConnectionPool.check_connection,
                name="fieldledger-readers",
                open=True,
            )
            self._writer = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="fieldledger-writer"
            )

    # Reads

    def read_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(db, *args)`` on a pooled read-only connection, held for ``fn``'s duration."""
        if self._pool is None:
            self.open()
        with self._pool.connection() as conn:
            return fn(PostgresDatabase(conn, self._catalog), *args)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(self.read_sync, fn, *args)

    @contextlib.contextmanager
    def reader(self) -> Iterator[PostgresDatabase]:
        """A pooled read-only connection for the block."""
        if self._pool is None:
            self.open()
        with self._pool.connection() as conn:
            yield PostgresDatabase(conn, self._catalog)

    def export_reader(self) -> PostgresDatabase:
        """A read-only connection of its own, for a streamed export; the caller closes it."""
        conn = psycopg.connect(self.url, **_connection_options())
        self._configure_reader(conn)
        return PostgresDatabase(conn, self._catalog)

    def _configure_reader(self, conn: psycopg.Connection) -> None:
        _configure(conn)
        self._run_on_connect(PostgresDatabase(conn, self._catalog))
        conn.execute("SET default_transaction_read_only = on")
        # psycopg prepares a statement run five times; PostgreSQL may then plan it once
        # for any values (a generic plan). The pages' best plans depend on the values (a
        # town's subtree or the city's, a week or a year: a district's year took 2 s
        # with the plan the city's made), so a reader plans each execution for its own,
        # as SQLite does. The writer's short statements keep their cached plans.
        conn.execute("SET plan_cache_mode = force_custom_plan")

    def _run_on_connect(self, db: PostgresDatabase) -> None:
        if self.on_connect is not None:
            self.on_connect(db)

    # Writes

    def _write_in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        if self._writer_db.conn.closed or self._writer_db.conn.broken:
            self._reconnect_writer()
        with contextlib.ExitStack() as stack:
            try:
                db = stack.enter_context(self._writer_db.write_transaction())
            except psycopg.OperationalError:
                if not self._writer_db.conn.broken:
                    raise
                # Lost while idle (the server restarted, failed over, or a proxy cut it):
                # nothing of this write was sent, so it starts again on a new connection.
                self._reconnect_writer()
                db = stack.enter_context(self._writer_db.write_transaction())
            return fn(db, *args)

    def _reconnect_writer(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self._writer_db.close()
        self._writer_db = connect(self.url)
        self._writer_db._catalog = self._catalog
        self._run_on_connect(self._writer_db)

    def _submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future:
        if self._writer is None:
            self.open()
        return self._writer.submit(self._write_in_thread, fn, *args)

    def write_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return self._submit(fn, *args).result()

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(db, *args)`` inside one write transaction on the writer."""
        return await asyncio.wrap_future(self._submit(fn, *args))

    def close(self) -> None:
        with self._lock:
            if self._writer is None:
                return
            self._writer.shutdown(wait=True)
            self._writer_db.close()
            self._pool.close()
            self._writer = self._writer_db = self._pool = None

