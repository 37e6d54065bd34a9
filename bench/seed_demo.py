"""Benchmark: build the demo city with many problems and report time, rows, size and memory.

    .venv/bin/python bench/seed_demo.py --problems 1000000

The database goes to a temporary file (deleted afterwards) unless --db is given.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from server.db import open_database  # noqa: E402
from server.demo import seed_demo  # noqa: E402

TABLES = (
    "areas", "units", "categories", "users", "visits", "diary_entries", "problems",
    "problem_events",
)
NOW = dt.datetime(2026, 3, 1, 2, 0, tzinfo=dt.UTC)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--db", help="database file to create (must not exist); default: a temporary file"
    )
    return parser.parse_args(argv)


def database_size(path: Path) -> int:
    """Bytes of the database file plus its WAL, which may still hold the last pages."""
    return sum(
        candidate.stat().st_size
        for candidate in (path, path.with_name(path.name + "-wal"))
        if candidate.exists()
    )


def peak_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load_average() -> str:
    # Other work on the machine slows the run; the load average shows how much there was.
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def run(path: Path, problems: int, seed: int) -> None:
    print(f"machine: {os.cpu_count()} CPUs, load average at start: {load_average()}")
    started = time.perf_counter()
    cpu_started = cpu_seconds()
    db = open_database(path)
    seed_demo(db, seed=seed, problems=problems, now=NOW, progress=print_elapsed(started))
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds() - cpu_started
    counts = {table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TABLES}
    db.close()
    print(f"problems requested: {problems:,}  seed: {seed}")
    print(f"elapsed: {elapsed:.1f} s (open_database + seed_demo), CPU {cpu:.1f} s")
    print(f"load average at end: {load_average()}")
    for table, count in counts.items():
        print(f"  {table:<15} {count:>12,}")
    print(f"database size: {database_size(path) / 2**20:,.0f} MiB")
    print(f"peak RSS: {peak_rss_mib():,.0f} MiB")


def print_elapsed(started: float):
    def report(line: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f} s] {line}", flush=True)

    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.db:
        path = Path(args.db)
        if path.exists():
            print(f"{path} exists; give a new file", file=sys.stderr)
            return 1
        run(path, args.problems, args.seed)
        return 0
    with tempfile.TemporaryDirectory(prefix="seed-demo-") as directory:
        run(Path(directory) / "demo.db", args.problems, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
