"""Benchmark: sync against a real uvicorn on loopback.

    .venv/bin/python bench/sync_bench.py                       # 10k, 100k and 1M problems
    .venv/bin/python bench/sync_bench.py --quick               # 10k only, shorter runs
    .venv/bin/python bench/sync_bench.py --sizes 10000,100000 --workdir /tmp/sync-bench
    .venv/bin/python bench/sync_bench.py --sizes 1000000 --workdir /tmp/sync-bench --batches-only
    .venv/bin/python bench/sync_bench.py --db postgresql://…/fieldledger --photos DIR \
        --workers 1,2                                          # an existing ledger, any backend

For each ledger size a database is seeded with the demo city (``server.demo``)
and served by ``fieldledger serve`` in a subprocess. Measured, from clients on
the same machine:

(a) push throughput: one client sends problem.report mutations in batches of 100
    (with the 1-minute load average and the server's CPU time per mutation);
(b) 50 clients at once, each sending single-mutation pushes;
(c) incremental pull: a phone at the head of the change log pulls after 5 new
    changes (another device of the same official reported 5 problems);
(d) first sync of a new phone: the snapshot of its working set, then the log to the
    head (bench/first_sync_bench.py measures it on its own, with bytes).

Targets: (a) >= 3,000 mutations/s, (b) >= 300 pushes/s, (c) flat in ledger size.
With --workdir, seeded databases are kept there and reused by later runs (the
pushes of a run stay in them). With --db, the ledger already in that database (a
file or a ``postgresql://`` URL, e.g. a 1M ledger ``fieldledger copy-to`` moved
there; bench/postgres.py serves one) is measured instead, and its pushes stay too.
``--workers 1,2`` runs (b) once per number of worker processes (``serve
--workers``, PostgreSQL only); the rest runs on the first.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server import auth  # noqa: E402
from server.db import immediate, open_database  # noqa: E402
from sync.client import HttpTransport, SyncClient  # noqa: E402
from sync.epoch import latest_version  # noqa: E402
from sync.ids import uuid7  # noqa: E402
from sync.simulate import percentile  # noqa: E402

PULLER = "field"  # a demo field official; the fallback world has the same name
CONCURRENT_CLIENTS = 50


# Databases ----------------------------------------------------------------------


def seed(path: Path, problems: int) -> str:
    """Fill a new database with ``problems`` problems; returns how it was done."""
    db = open_database(path)
    try:
        try:
            from server.demo import seed_demo
        except ImportError:
            seed_fallback(db, problems)
            return "fallback generator"
        seed_demo(db, problems=problems, progress=lambda line: print(f"    {line}", flush=True))
        return "server.demo.seed_demo"
    finally:
        db.close()


def seed_fallback(db, problems: int) -> None:
    """A city, one district, a street, one field official, and bulk problems."""
    from server.areas import insert_area

    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    with immediate(db):
        city = insert_area(db, "370100", "青川市", 1, None)
        district = insert_area(db, "370102", "东城区", 2, city)
        street = insert_area(db, "370102001", "杏花街道", 3, district)
        user_id = db["users"].insert({
            "username": PULLER, "display_name": "测试网格员", "roles": "field",
            "area_id": street, "password_hash": auth.hash_password("demo1234"),
            "active": 1, "created_at": now, "updated_at": now,
        }).last_pk
        chunk = 10_000
        for start in range(0, problems, chunk):
            rows = [
                (str(uuid.uuid4()), user_id, (street, district)[n % 2],
                 f"第{n}号问题：路灯不亮", "submitted", now, now, now)
                for n in range(start, min(problems, start + chunk))
            ]
            db.executemany(
                "INSERT INTO problems (id, reporter_id, area_id, description, status,"
                " found_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )


def ensure_database(workdir: Path, problems: int) -> Path:
    path = workdir / f"ledger-{problems}.db"
    if path.exists():
        print(f"  reusing {path}")
        return path
    partial = workdir / f"ledger-{problems}.partial.db"
    for leftover in workdir.glob(f"ledger-{problems}.partial.db*"):
        leftover.unlink()
    started = time.perf_counter()
    how = seed(partial, problems)
    db = open_database(partial)
    db.checkpoint()
    db.close()
    partial.rename(path)
    for suffix in ("-wal", "-shm"):
        Path(f"{partial}{suffix}").unlink(missing_ok=True)
    print(f"  seeded {problems:,} problems with {how} in {time.perf_counter() - started:.0f} s")
    return path


def field_users(path: Path) -> list[tuple[int, str, int]]:
    """(id, username, area id) of the active field officials."""
    db = open_database(path)
    try:
        return [tuple(row) for row in db.execute(
            "SELECT id, username, area_id FROM users WHERE active = 1"
            " AND ',' || roles || ',' LIKE '%,field,%' ORDER BY id")]
    finally:
        db.close()


def device_tokens(path: Path, user_ids: list[int]) -> list[str]:
    """Register one device per entry directly in the database (signing in 50 times
    would only measure argon2)."""
    db = open_database(path)
    try:
        with immediate(db):
            return [auth.register_device(db, user_id, f"bench device {n}")[1]
                    for n, user_id in enumerate(user_ids)]
    finally:
        db.close()


def counts(path: Path) -> tuple[int, int]:
    db = open_database(path)
    try:
        problems = db.execute("SELECT count(*) FROM problems").fetchone()[0]
        return problems, latest_version(db)
    finally:
        db.close()


# The server ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``fieldledger serve`` on a free port: ``path`` is a file or a postgresql:// URL,
    which needs ``photos``; ``workers`` above 1 is ``serve --workers``."""

    def __init__(self, path: Path | str, log: Path, photos: Path | None = None,
                 workers: int = 1):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "ab")  # noqa: SIM115 -- closed in stop()
        photos_option = ["--photos", str(photos)] if photos else []
        workers_option = ["--workers", str(workers)] if workers > 1 else []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "--db", str(path), *photos_option, "serve",
             "--port", str(self.port), *workers_option],
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/api/healthz", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"the server did not start; see {log}") from None
                time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        """CPU time of the server: its process and, with --workers, its workers."""
        return sum(map(cpu_seconds, [self.pid, *children(self.pid)]))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)
        self.log.close()


# Clients ------------------------------------------------------------------------


def client(server: Server, token: str) -> SyncClient:
    phone = SyncClient(HttpTransport(server.url, timeout=120))
    phone.state["token"] = token
    return phone


def report_problem(phone: SyncClient, n: int) -> None:
    phone.capture("problem.report", {
        "id": uuid7(), "description": f"楼道照明损坏，夜间无法通行（第{n}条）",
        "place": "幸福小区3号楼", "urgency": "normal",
        "found_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    })


def capture_mixed(phone: SyncClient, n: int) -> None:
    """Visits, diary entries and problems, 1:1:3, as an official's day produces them."""
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    step = n % 5
    if step == 0:
        phone.state["last_visit"] = uuid7()
        phone.capture("visit.save", {
            "id": phone.state["last_visit"], "method": "ruhu", "place": "幸福小区3号楼",
            "checklist": ["no_notice", "direct_grassroots"], "started_at": now,
        })
    elif step == 1:
        phone.capture("diary.save", {
            "id": uuid7(), "visit_id": phone.state["last_visit"],
            "person_kind": "resident", "person_name": "张大爷", "recorded_at": now,
            "content": "走访独居老人，身体状况良好，反映冬季取暖费用偏高。",
        })
    else:
        report_problem(phone, n)


def timed_pushes(phone: SyncClient) -> list[float]:
    """Push the outbox batch by batch, timing each request."""
    latencies = []
    transport = phone.transport

    def timing(method, path, headers, body):
        started = time.perf_counter()
        try:
            return transport(method, path, headers, body)
        finally:
            if path == "/api/sync/push":
                latencies.append(time.perf_counter() - started)

    phone.transport = timing
    try:
        results = phone.push()
    finally:
        phone.transport = transport
    bad = [r for r in results if r["status"] != "applied"]
    if bad or phone.state["outbox"]:
        raise RuntimeError(f"push failed: {bad[:3]}")
    return latencies


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{1000 * seconds:.1f} ms"


def load_average() -> float:
    return os.getloadavg()[0]


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used: a figure the machine's load barely moves."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def bench_batches(server: Server, token: str, mutations: int, capture=report_problem) -> dict:
    phone = client(server, token)
    for n in range(mutations):
        capture(phone, n)
    load_before, cpu_before = load_average(), server.cpu_seconds()
    started = time.perf_counter()
    latencies = timed_pushes(phone)
    elapsed = time.perf_counter() - started
    cpu = server.cpu_seconds() - cpu_before
    return {"mutations": mutations, "seconds": elapsed, "per_second": mutations / elapsed,
            "p50": statistics.median(latencies), "p95": percentile(latencies, 0.95),
            "server_cpu_us": 1e6 * cpu / mutations, "load": (load_before, load_average())}


def describe_batches(result: dict) -> str:
    return (f"{result['per_second']:,.0f} mutations/s (push p50 {ms(result['p50'])},"
            f" p95 {ms(result['p95'])}; server CPU {result['server_cpu_us']:.0f} µs each;"
            f" 1-min load {result['load'][0]:.2f} -> {result['load'][1]:.2f})")


def bench_concurrent(server: Server, tokens: list[str], pushes_each: int) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(tokens))

    def run(token: str) -> None:
        phone = client(server, token)
        barrier.wait(timeout=60)
        try:
            for n in range(pushes_each):
                report_problem(phone, n)
                mine = timed_pushes(phone)
                with lock:
                    latencies.extend(mine)
        except Exception as error:  # noqa: BLE001 -- reported below
            with lock:
                errors.append(f"{type(error).__name__}: {error}"[:200])

    threads = [threading.Thread(target=run, args=(token,)) for token in tokens]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    elapsed = time.perf_counter() - started
    return {"clients": len(tokens), "pushes": len(latencies), "seconds": elapsed,
            "per_second": len(latencies) / elapsed, "p50": statistics.median(latencies),
            "p95": percentile(latencies, 0.95), "errors": errors}


def bench_pull(server: Server, puller_token: str, writer_token: str, head: int,
               rounds: int) -> dict:
    """A phone at the head of the log pulls after another device wrote 5 problems."""
    puller, writer = client(server, puller_token), client(server, writer_token)
    puller.state["cursor"] = head
    puller.pull()  # catch up with whatever this run wrote before
    empty, five = [], []
    for round_ in range(rounds):
        started = time.perf_counter()
        puller.pull()
        empty.append(time.perf_counter() - started)
        for n in range(5):
            report_problem(writer, round_ * 5 + n)
        writer.push()
        started = time.perf_counter()
        got = puller.pull()
        five.append(time.perf_counter() - started)
        if got != 5:
            raise RuntimeError(f"expected 5 changes, pulled {got}")
    return {"p50": statistics.median(five), "p95": percentile(five, 0.95),
            "empty_p50": statistics.median(empty)}


def timed_first_pull(phone: SyncClient) -> tuple[float, int]:
    """A new phone's whole first pull: its seconds and the requests it took."""
    requests = []
    transport = phone.transport

    def counting(method, path, headers, body):
        requests.append(path)
        return transport(method, path, headers, body)

    phone.transport = counting
    started = time.perf_counter()
    phone.pull(limit=1000)
    return time.perf_counter() - started, len(requests)


def bench_first_sync(server: Server, token: str) -> dict:
    phone = client(server, token)
    seconds, requests = timed_first_pull(phone)
    return {"seconds": seconds, "requests": requests, "records": len(phone.state["records"])}


# Main ---------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", help="ledger sizes (problems), comma-separated"
                        " (default 10000,100000,1000000)")
    parser.add_argument("--quick", action="store_true",
                        help="the first size only (default 10k), fewer mutations and rounds")
    parser.add_argument("--workdir", help="keep (and reuse) seeded databases here")
    parser.add_argument("--db", help="measure the ledger in this database (a file or a"
                        " postgresql:// URL) instead of seeding; --sizes is then ignored")
    parser.add_argument("--photos", help="the photos folder (required with a postgresql:// --db)")
    parser.add_argument("--workers", default="1",
                        help="worker processes for (b), comma-separated (e.g. 1,2); the"
                        " other parts run with the first")
    parser.add_argument("--batch-mutations", type=int, default=10_000,
                        help="mutations for (a), sent 100 per push")
    parser.add_argument("--pushes-each", type=int, default=20,
                        help="single-mutation pushes per client for (b)")
    parser.add_argument("--pull-rounds", type=int, default=20)
    parser.add_argument("--no-first-sync", action="store_true", help="skip (d)")
    parser.add_argument("--batches-only", action="store_true",
                        help="only (a): the pushes of 100 mutations")
    parser.add_argument("--json", help="also write the figures to this file")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    sizes = [int(size) for size in (args.sizes or "10000,100000,1000000").split(",") if size]
    workers = [int(n) for n in args.workers.split(",")]
    if args.quick:
        sizes = sizes[:1]
        args.batch_mutations, args.pushes_each, args.pull_rounds = 2_000, 5, 10
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="sync-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    photos = Path(args.photos) if args.photos else None
    print(f"sync benchmark, {os.cpu_count()} CPUs, databases in {args.db or workdir}",
          flush=True)
    figures: dict = {"date": dt.date.today().isoformat(), "cpus": os.cpu_count(), "sizes": {}}
    try:
        for index, size in enumerate([None] if args.db else sizes):
            path = args.db or ensure_database(workdir, size)
            problems, head = counts(path)
            print(f"\n== ledger of {problems:,} problems", flush=True)
            result = bench_ledger(args, path, workdir, photos, workers, first=index == 0)
            figures["sizes"][size or problems] = result
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
    return 0


def bench_ledger(args, path, workdir: Path, photos: Path | None, workers: list[int],
                 first: bool) -> dict:
    """(a) to (d) over one ledger; (b) only on the first, once per number of workers."""
    users = field_users(path)
    puller = next((u for u in users if u[1] == PULLER), users[0])
    tokens = device_tokens(path, [puller[0], puller[0], puller[0]]
                           + [users[n % len(users)][0] for n in range(CONCURRENT_CLIENTS)])
    problems, head = counts(path)
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"  {problems:,} problems, change log head {head:,}; load average {load}", flush=True)
    log = workdir / f"server-{problems}.log"
    result: dict = {"problems": problems}
    server = Server(path, log, photos, workers[0])
    try:
        a = bench_batches(server, tokens[2], args.batch_mutations)
        result["batches"] = a
        print(f"  (a) {a['mutations']:,} problem.report in batches of 100:"
              f" {describe_batches(a)}", flush=True)
        mixed = bench_batches(server, tokens[2], args.batch_mutations, capture_mixed)
        result["batches_mixed"] = mixed
        print(f"      {mixed['mutations']:,} visits, diaries and problems (1:1:3):"
              f" {describe_batches(mixed)}", flush=True)
        if args.batches_only:
            return result
        if first:
            for count in workers:
                if count != workers[0]:
                    server.stop()
                    server = Server(path, log, photos, count)
                b = bench_concurrent(server, tokens[3:], args.pushes_each)
                result[f"concurrent_{count}_workers"] = b
                print(f"  (b) {b['clients']} clients x {args.pushes_each} single-mutation"
                      f" pushes, {count} worker(s): {b['per_second']:,.0f} pushes/s"
                      f" (p50 {ms(b['p50'])}, p95 {ms(b['p95'])}),"
                      f" errors {len(b['errors'])}", flush=True)
                for error in b["errors"][:5]:
                    print(f"      {error}")
        _problems, head = counts(path)
        c = bench_pull(server, tokens[0], tokens[1], head, args.pull_rounds)
        result["pull"] = c
        print(f"  (c) pull of 5 new changes: p50 {ms(c['p50'])}, p95 {ms(c['p95'])}"
              f" (nothing new: p50 {ms(c['empty_p50'])})", flush=True)
        if not args.no_first_sync:
            d = bench_first_sync(server, tokens[0])
            result["first_sync"] = d
            print(f"  (d) first sync of a new phone: {d['seconds']:.1f} s,"
                  f" {d['requests']} pulls of up to 1000 changes,"
                  f" {d['records']:,} records kept", flush=True)
    finally:
        server.stop()
    return result


if __name__ == "__main__":
    sys.exit(main())
