"""The throw-away PostgreSQL cluster (tests/pg_cluster.py) and the postgres_url fixture."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from server.db.url import parse
from tests import pg_cluster

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parent.parent


def server_processes(folder: Path, postmaster: int | None) -> list[int]:
    """The live processes of the cluster in folder: its postmaster (the only one whose
    command line names the folder) and the postmaster's children."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        state, parent = stat.rsplit(")", 1)[1].split()[:2]
        if state == "Z":
            continue
        if str(folder).encode() in cmdline or int(parent) == postmaster:
            found.append(int(entry.name))
    return found


def socket_folder(url: str) -> Path:
    return Path(parse(url).hosts[0][0])


def test_the_fixture_serves_a_database_on_a_unix_socket_only(postgres_url):
    folder = socket_folder(postgres_url)
    assert folder.is_dir() and (folder / ".s.PGSQL.5432").is_socket()
    with psycopg.connect(postgres_url) as connection:
        connection.execute("CREATE TABLE notes (id integer PRIMARY KEY, body text NOT NULL)")
        connection.execute("INSERT INTO notes VALUES (1, %s), (2, %s)", ["路灯不亮", "水压不足"])
        connection.commit()
        assert connection.execute("SELECT body FROM notes ORDER BY id").fetchall() == [
            ("路灯不亮",), ("水压不足",)
        ]
        settings = dict(connection.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN"
            " ('listen_addresses', 'unix_socket_directories', 'server_encoding')"
        ).fetchall())
        connection.execute("DROP TABLE notes")
        connection.commit()
    assert settings == {"listen_addresses": "", "unix_socket_directories": str(folder),
                        "server_encoding": "UTF8"}


def test_new_databases_sort_text_by_bytes(postgres_url):
    with psycopg.connect(postgres_url) as connection:
        locale = connection.execute(
            "SELECT datcollate, datctype FROM pg_database WHERE datname = current_database()"
        ).fetchone()
    assert locale == ("C", "C.UTF-8")


def test_the_cluster_is_stopped_and_removed_on_exit():
    with pg_cluster.cluster("ledger") as cluster:
        folder, postmaster = cluster.folder, cluster.pid
        assert cluster.url.endswith(f"/ledger?host={folder}")
        with psycopg.connect(cluster.url) as connection:
            assert connection.execute("SELECT current_database()").fetchone() == ("ledger",)
        assert postmaster in server_processes(folder, postmaster)
        if os.geteuid() == 0:  # PostgreSQL will not run as root
            assert folder.stat().st_uid == pg_cluster._system_user().pw_uid
    assert not folder.exists()
    assert server_processes(folder, postmaster) == []


FIXTURE_RUN = """
from tests.conftest import postgres_url  # noqa: F401


def test_uses_the_cluster(postgres_url):
    with open({record!r}, "w") as record:
        record.write(postgres_url)
    {then}
"""


@pytest.mark.parametrize(
    ("then", "exit_code"),
    [("pass", 0), ("raise KeyboardInterrupt", 2)],
    ids=["the run ends", "the run is interrupted"],
)
def test_the_fixture_leaves_nothing_behind(then, exit_code, tmp_path):
    record = tmp_path / "url.txt"
    (tmp_path / "test_inner.py").write_text(FIXTURE_RUN.format(record=str(record), then=then))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
         str(tmp_path), "-c", os.devnull, str(tmp_path / "test_inner.py")],
        cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
        timeout=120,
    )
    assert done.returncode == exit_code, done.stdout + done.stderr
    folder = socket_folder(record.read_text())
    assert folder.name.startswith(pg_cluster.FOLDER_PREFIX)
    assert not folder.exists()
    assert server_processes(folder, None) == []


OWNER_SCRIPT = """
import signal
import time

from tests import pg_cluster

# A process started in the background inherits SIGINT ignored: take it as Ctrl-C does.
signal.signal(signal.SIGINT, signal.default_int_handler)

opened = pg_cluster.cluster()
cluster = opened.__enter__()
print(cluster.folder, cluster.pid, flush=True)
time.sleep(120)
"""


def start_owner() -> tuple[subprocess.Popen, Path, int]:
    """A Python process that starts a cluster, says where, and waits, leaving the cluster
    to atexit (as a test run that never gets to the fixture's finalizer)."""
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER_SCRIPT], cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    folder, postmaster = owner.stdout.readline().split()
    return owner, Path(folder), int(postmaster)


def test_an_interrupted_process_stops_its_cluster_at_exit():
    owner, folder, postmaster = start_owner()
    assert server_processes(folder, postmaster)
    owner.send_signal(signal.SIGINT)
    owner.wait(timeout=60)
    assert not folder.exists()
    assert server_processes(folder, postmaster) == []


def test_a_cluster_whose_owner_was_killed_is_swept_by_the_next():
    owner, folder, postmaster = start_owner()
    owner.kill()
    owner.wait(timeout=60)
    try:
        assert folder.exists() and server_processes(folder, postmaster)
    finally:
        pg_cluster.sweep_stale()
    assert not folder.exists()
    assert server_processes(folder, postmaster) == []


def test_a_missing_postgresql_is_named(monkeypatch):
    monkeypatch.setattr(pg_cluster, "INITDB", "/nonexistent/postgresql/*/bin/initdb")
    with pytest.raises(pg_cluster.PostgresUnavailable, match="scripts/test"):
        pg_cluster.bin_folder()
