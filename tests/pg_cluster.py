"""A throw-away PostgreSQL cluster for tests, from Debian's binaries.

``cluster()`` makes a temporary folder, runs ``initdb`` in it and starts the server
listening only on a Unix socket in that folder (no TCP), creates a database, and gives
its ``postgresql://`` URL; on exit it stops the server (``pg_ctl stop -m immediate``)
and removes the folder. PostgreSQL refuses to run as root, and CI runs as root: then
the binaries run as the system user ``fieldledger-pg`` (made when missing) through
``runuser``, and the folder is that user's. A cluster still running when Python exits
(an interrupted test run) is stopped by ``atexit``; one whose owner was killed outright
is stopped and removed by the next ``cluster()`` (``sweep_stale``).

Databases sort text by bytes (``LC_COLLATE=C``, as SQLite's BINARY) and classify
characters by Unicode (``LC_CTYPE=C.UTF-8``), the locale FieldLedger requires.

The server trades durability for speed (``fsync = off``): it is thrown away.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

INITDB = "/usr/lib/postgresql/*/bin/initdb"  # Debian's layout, one folder per major version
SYSTEM_USER = "fieldledger-pg"  # runs the server when the tests run as root
SUPERUSER = "fieldledger"
DBNAME = "fieldledger"
FOLDER_PREFIX = "fieldledger-pg-"
OWNER_FILE = "owner.pid"  # the pid of the process that started the cluster

SETTINGS = {
    "listen_addresses": "''",
    "unix_socket_permissions": "0700",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


class PostgresUnavailable(RuntimeError):
    pass


def bin_folder() -> Path:
    """The newest installed PostgreSQL's binaries (Debian: /usr/lib/postgresql/N/bin)."""
    found = sorted(glob.glob(INITDB), key=lambda path: int(Path(path).parent.parent.name))
    if not found:
        raise PostgresUnavailable(
            f"PostgreSQL is not installed (no {INITDB}): run scripts/test, which installs"
            " Debian's postgresql package"
        )
    return Path(found[-1]).parent


class Cluster:
    def __init__(self, folder: Path, dbname: str):
        self.folder = folder
        self.data = folder / "data"
        self.log = folder / "server.log"
        self.dbname = dbname
        self.url = f"postgresql://{SUPERUSER}@/{dbname}?host={quote(str(folder))}"
        self.pid: int | None = None  # the postmaster's

    def start(self) -> None:
        run = _runner(self.folder)
        run("initdb", "-D", self.data, "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
            "--locale=C.UTF-8", "--lc-collate=C", "--no-sync", "--no-instructions")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"unix_socket_directories = '{self.folder}'\n")
            conf.writelines(f"{name} = {value}\n" for name, value in SETTINGS.items())
        try:
            run("pg_ctl", "start", "-D", self.data, "-l", self.log, "-w", "-t", "60")
        except PostgresUnavailable as failure:
            raise PostgresUnavailable(f"{failure}\n{_tail(self.log)}") from None
        self.pid = _postmaster_pid(self.data)
        run("createdb", "-h", self.folder, "-U", SUPERUSER, self.dbname)

    def stop(self) -> None:
        """Stop the server and remove the folder; safe to call twice."""
        atexit.unregister(self.stop)
        _stop_and_remove(self.folder)


@contextlib.contextmanager
def cluster(dbname: str = DBNAME) -> Iterator[Cluster]:
    sweep_stale()
    parent = _parent_folder()
    folder = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX, dir=parent))
    started = Cluster(folder, dbname)
    atexit.register(started.stop)
    try:
        (folder / OWNER_FILE).write_text(str(os.getpid()))
        if os.geteuid() == 0:
            user = _system_user()
            os.chown(folder, user.pw_uid, user.pw_gid)
        started.start()
        yield started
    finally:
        started.stop()


def sweep_stale() -> None:
    """Stop and remove the clusters whose starting process is gone (killed outright)."""
    for folder in Path(_parent_folder()).glob(f"{FOLDER_PREFIX}*"):
        try:
            owner = int((folder / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if not _alive(owner):
            _stop_and_remove(folder)


def _stop_and_remove(folder: Path) -> None:
    data = folder / "data"
    pid = _postmaster_pid(data)
    if pid is not None:
        try:
            _runner(folder)("pg_ctl", "stop", "-D", data, "-m", "immediate", "-w", "-t", "30")
        except PostgresUnavailable:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)  # its children exit when it is gone
    shutil.rmtree(folder, ignore_errors=True)


def _runner(folder: Path):
    """A function that runs one PostgreSQL binary, as the system user when we are root,
    in the cluster's folder, and raises PostgresUnavailable with its output on failure."""
    prefix = ["runuser", "-u", SYSTEM_USER, "--"] if os.geteuid() == 0 else []
    binaries = bin_folder()
    env = {name: value for name, value in os.environ.items() if not name.startswith("PG")}

    def run(binary: str, *args) -> None:
        command = [*prefix, str(binaries / binary), *map(str, args)]
        done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise PostgresUnavailable(
                f"{binary} failed ({done.returncode}): {done.stderr.strip() or done.stdout}"
            )

    return run


def _system_user() -> pwd.struct_passwd:
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(SYSTEM_USER)
    subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", SYSTEM_USER],
        capture_output=True,
    )  # a concurrent run may have made it first: look again
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise PostgresUnavailable(f"could not create the system user {SYSTEM_USER}") from None


def _parent_folder() -> str:
    """The temporary folder, if the server's user can reach it; else /tmp."""
    parent = tempfile.gettempdir()
    if os.geteuid() != 0:
        return parent
    folders = [Path(parent), *Path(parent).parents]
    return parent if all(os.stat(folder).st_mode & 0o001 for folder in folders) else "/tmp"


def _postmaster_pid(data: Path) -> int | None:
    try:
        return int((data / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(log: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return ""



class Databases:
    """Makes databases on a running cluster, each empty or a copy of a template, and drops
    them. The cluster's defaults (C collation, C.UTF-8 character types) are what
    ``open_database`` requires."""

    def __init__(self, url: str, prefix: str = "t"):
        import psycopg

        self._admin = psycopg.connect(url, autocommit=True)
        self._url = url
        self._prefix = f"{prefix}{os.getpid()}_"
        self._numbers = itertools.count(1)

    def url_of(self, name: str) -> str:
        """The cluster's postgresql:// URL with ``name`` for its database."""
        parts = urlsplit(self._url)
        return urlunsplit(parts._replace(path=f"/{quote(name)}"))

    def create(self, template: str | None = None, name: str | None = None) -> str:
        """A new database (a copy of ``template``, which nobody may be connected to), by name."""
        name = name or f"{self._prefix}{next(self._numbers)}"
        self._admin.execute(
            f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
        )
        return name

    def drop(self, name: str) -> None:
        self._admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        self._admin.close()


def dbname_of(url: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    return conninfo_to_dict(url)["dbname"]
