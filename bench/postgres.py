"""A PostgreSQL server for the benches: kept between runs, configured as for production.

    .venv/bin/python bench/postgres.py start [--folder /tmp/ledger_bench/pg]
    .venv/bin/python bench/postgres.py stop  [--folder ...]
    .venv/bin/python bench/postgres.py url   [--folder ...]

``start`` makes the cluster on first use (Debian's binaries, as the tests' throw-away
cluster does, run as the system user ``fieldledger-pg`` when we are root), starts it on
a Unix socket in the folder, and prints the ``postgresql://`` URL of its database
``fieldledger``. Unlike the tests' cluster it is durable (``fsync``, full page writes
and synchronous commit at their defaults) and sized for one machine of 24 GiB
(``SETTINGS``, the figures docs/deployment.md recommends), so the benches measure what
an office would run.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.pg_cluster import (  # noqa: E402
    DBNAME,
    SUPERUSER,
    PostgresUnavailable,
    _postmaster_pid,
    _runner,
    _system_user,
)

FOLDER = Path("/tmp/ledger_bench/pg")
SETTINGS = {
    "listen_addresses": "''",
    "unix_socket_permissions": "0700",
    "max_connections": "200",
    "shared_buffers": "'4GB'",
    "effective_cache_size": "'16GB'",
    "work_mem": "'32MB'",
    "maintenance_work_mem": "'1GB'",
    "max_wal_size": "'8GB'",
    "checkpoint_timeout": "'15min'",
    "random_page_cost": "1.1",
    "jit": "off",
}


def url(folder: Path) -> str:
    return f"postgresql://{SUPERUSER}@/{DBNAME}?host={quote(str(folder))}"


def start(folder: Path) -> str:
    data = folder / "data"
    run = _runner(folder) if folder.exists() else None
    if not data.exists():
        folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            user = _system_user()
            os.chown(folder, user.pw_uid, user.pw_gid)
        run = _runner(folder)
        run("initdb", "-D", data, "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
            "--locale=C.UTF-8", "--lc-collate=C", "--no-instructions")
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(f"unix_socket_directories = '{folder}'\n")
            conf.writelines(f"{name} = {value}\n" for name, value in SETTINGS.items())
        fresh = True
    else:
        fresh = False
    if _postmaster_pid(data) is None:
        run("pg_ctl", "start", "-D", data, "-l", folder / "server.log", "-w", "-t", "120")
    if fresh:
        run("createdb", "-h", folder, "-U", SUPERUSER, DBNAME)
    return url(folder)


def stop(folder: Path) -> None:
    data = folder / "data"
    if _postmaster_pid(data) is not None:
        _runner(folder)("pg_ctl", "stop", "-D", data, "-m", "fast", "-w", "-t", "120")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("start", "stop", "url"))
    parser.add_argument("--folder", type=Path, default=FOLDER)
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            print(start(args.folder))
        elif args.action == "stop":
            stop(args.folder)
        else:
            print(url(args.folder))
    except PostgresUnavailable as failure:
        print(f"bench/postgres.py: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
