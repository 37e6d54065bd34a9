"""Benchmark: the ledger page, the statistics page, export and the home page over a million
problems.

    .venv/bin/python bench/ledger_bench.py [--base /tmp/ledger_bench/seed-1m.db]
        [--repeat 20] [--only ledger|stats|export|home ...]
    .venv/bin/python bench/ledger_bench.py --db postgresql://…/fieldledger --photos DIR

The database is cached under /tmp/ledger_bench: ``--base`` (made with
``server.demo.seed_demo(db, seed=1, problems=1_000_000)`` if missing, which
takes a quarter of an hour) is copied once to ``ledger-1m.db`` and migrated
there (the search index is built on that first open). The app runs under a
real uvicorn in a child process; requests go over HTTP with httpx, one at a
time, and the figures are wall-clock times seen by the client. Export memory
is the server process's resident set (/proc/<pid>/status), sampled while a
100,000-row export streams to a client that throws the bytes away.

``--db`` measures the ledger already in a database instead: a file, or a
``postgresql://`` URL (bench/postgres.py serves one; ``fieldledger --db
/tmp/ledger_bench/ledger-1m.db copy-to URL`` fills it with the same million).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx2 as httpx  # the test extra installs httpx2, the client Starlette 1.x tests with

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.db import immediate, open_database  # noqa: E402
from server.demo import DEMO_PASSWORD, demo_accounts, seed_demo  # noqa: E402

CACHE = Path("/tmp/ledger_bench")
REPEAT = 20
PARTS = ("ledger", "stats", "export", "home")


def prepare(base: Path) -> Path:
    CACHE.mkdir(exist_ok=True)
    if not base.exists():
        print(f"seeding {base} with 1,000,000 problems ...", flush=True)
        db = open_database(base)
        seed_demo(db, seed=1, problems=1_000_000)
        db.close()
    path = CACHE / "ledger-1m.db"
    if not path.exists():
        print(f"copying {base} -> {path}", flush=True)
        shutil.copyfile(base, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").rename(path)
    started = time.perf_counter()
    db = open_database(path)  # applies any pending migration (m004 builds the search index)
    db.checkpoint()
    db.close()
    print(f"open + migrate: {time.perf_counter() - started:.1f} s", flush=True)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(path: Path | str, port: int, photos: str | None = None) -> subprocess.Popen:
    code = (
        "import uvicorn; from server.app import create_app;"
        f" uvicorn.run(create_app({str(path)!r}, photos={photos!r}), host='127.0.0.1',"
        f" port={port}, log_level='warning')"
    )
    process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    for _ in range(200):
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/healthz", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not start")


def login(base_url: str, username: str) -> httpx.Client:
    for _attempt in range(3):
        client = httpx.Client(base_url=base_url, timeout=120)
        client.get("/login")
        response = client.post("/login", data={
            "username": username, "password": DEMO_PASSWORD,
            "csrf_token": client.cookies["fl_csrf"],
        })
        check = client.get("/problems?status=submitted")
        if response.status_code == 303 and check.status_code == 200:
            return client
        print(f"  sign-in of {username}: {response.status_code}, then {check.status_code}"
              f" {check.headers.get('location', '')}; again", flush=True)
        time.sleep(1)
    raise RuntimeError(f"cannot sign in as {username}")


def timed(client: httpx.Client, url: str, repeat: int) -> list[float]:
    response = client.get(url)  # warm-up
    assert response.status_code == 200, (url, response.status_code)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    return times


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18] if len(values) > 1 \
        else values[0]


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def pick(db) -> dict:
    """Real values from the data for the filters: codes, ids, dates, a ledger number."""
    one = lambda sql: db.execute(sql).fetchone()  # noqa: E731
    last = one("SELECT max(accepted_at) FROM problems")[0][:10]
    return {
        "district": one("SELECT code FROM areas WHERE level = 2 ORDER BY id LIMIT 1")[0],
        "town": one("SELECT code FROM areas WHERE level = 3 ORDER BY id LIMIT 1 OFFSET 3")[0],
        "category": one("SELECT id FROM categories ORDER BY id LIMIT 1 OFFSET 2")[0],
        "unit": one("SELECT lead_unit_id, count(*) n FROM problems WHERE lead_unit_id IS NOT NULL"
                    " GROUP BY 1 ORDER BY n DESC LIMIT 1")[0],
        "reporter": one("SELECT reporter_id FROM problems LIMIT 1 OFFSET 5000")[0],
        "ledger_no": one("SELECT ledger_no FROM problems WHERE ledger_no IS NOT NULL"
                         " LIMIT 1 OFFSET 4321")[0],
        "last": last,
        # The local day from which about 100,000 problems were found (a day's worth more).
        "export_from": one(f"SELECT {db.dialect.local_day('found_at')} FROM problems"
                           " ORDER BY found_at DESC LIMIT 1 OFFSET 99999")[0],
    }


def ledger_cases(v: dict) -> list[str]:
    month = v["last"][:8]
    return [
        "",
        "status=handling",
        "status=closed&sort=deadline&dir=asc",
        "q=漏水",
        "q=物业",
        "q=小区",
        "q=路灯不亮",
        "q=漏",
        f"q={v['ledger_no']}",
        "q=12345热线",
        f"category={v['category']}&overdue=yes",
        f"area={v['district']}&status=closed&sort=deadline&dir=asc",
        f"area={v['town']}&q=漏水",
        f"unit={v['unit']}&supervision=flagged",
        "urgency=critical&source=hotline",
        "supervision=supervised&overdue=yes&sort=deadline",
        f"found_from={month}01&found_to={month}10",
        f"accepted_from={month}01&closed_to={v['last']}&status=closed",
        f"reporter={v['reporter']}",
        f"q=物业&overdue=yes&area={v['district']}",
        "q=漏水&status=closed&sort=ledger_no&dir=asc",
        "sort=ledger_no&dir=asc",
        "sort=status",
        "page=150",
        "q=小区&page=20",
        # More combinations an office uses.
        f"accepted_from={month}01&accepted_to={v['last']}",
        f"closed_from={month}01&status=closed&sort=deadline",
        f"area={v['town']}&status=handling",
        f"area={v['town']}&overdue=yes&sort=deadline&dir=asc",
        f"category={v['category']}&unit={v['unit']}&status=closed",
        f"found_from={v['export_from']}&q=漏水",
        f"source=hotline&status=submitted&area={v['district']}",
        "urgency=urgent&q=物业&sort=ledger_no",
        # A broad word inside a town (listed from the town's search keys) and a district.
        f"area={v['town']}&q=小区",
        f"area={v['district']}&q=小区",
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=str(CACHE / "seed-1m.db"))
    parser.add_argument("--repeat", type=int, default=REPEAT)
    parser.add_argument("--only", choices=PARTS, action="append",
                        help="run only this part (may be given more than once)")
    parser.add_argument("--db", help="measure the ledger in this database (a file or a"
                        " postgresql:// URL) instead of --base's copy")
    parser.add_argument("--photos", help="the photos folder (required with a postgresql:// --db)")
    args = parser.parse_args(argv)
    parts = args.only or PARTS
    path = args.db or prepare(Path(args.base))
    db = open_database(path)
    values = pick(db)
    accounts = {}
    for account in demo_accounts(db):
        accounts.setdefault(account.role, account.username)
    problems = db.execute("SELECT count(*) FROM problems").fetchone()[0]
    accounts["office_district"] = "office_dc"
    accounts["office_town"] = town_office(db, values["town"])
    db.close()
    print(f"problems: {problems:,}; accounts: {accounts}")

    port = free_port()
    server = start_server(path, port, args.photos)
    base_url = f"http://127.0.0.1:{port}"
    try:
        office = login(base_url, accounts["office"])
        print(f"load average at start: {os.getloadavg()}", flush=True)
        if "ledger" in parts:
            bench_ledger(base_url, office, accounts, values, args.repeat)
        if "stats" in parts:
            bench_stats(base_url, office, accounts, values, args.repeat)
        if "export" in parts:
            print("\nexport of 100,000 rows (server RSS sampled every 20 ms):")
            export_filter = f"sort=found_at&dir=asc&found_from={values['export_from']}"
            for extension in ("csv", "xlsx"):
                export_once(office, server.pid, f"/problems/export.{extension}?{export_filter}",
                            extension)
        if "home" in parts:
            print("\nhome page (/):")
            for role in ("office", "leader", "field", "handler"):
                client = office if role == "office" else login(base_url, accounts[role])
                report(timed(client, "/", args.repeat), f"[{role}]")
        print(f"load average at end: {os.getloadavg()}", flush=True)
    finally:
        server.terminate()
        server.wait()
    return 0


def report(times: list[float], label: str) -> None:
    print(f"  p50 {statistics.median(times):7.1f} ms  p95 {p95(times):7.1f} ms  {label}",
          flush=True)


def bench_ledger(base_url, office, accounts, values, repeat) -> None:
    all_times = []
    print(f"\nledger page (/problems), {repeat} requests each after one warm-up,"
          " as the city office:")
    for query in ledger_cases(values):
        times = timed(office, f"/problems?{query}", repeat)
        all_times += times
        report(times, query or "(no filter)")
    for role in ("handler", "leader"):
        client = login(base_url, accounts[role])
        for query in ("", "q=漏水", "status=handling&sort=deadline"):
            times = timed(client, f"/problems?{query}", repeat)
            all_times += times
            report(times, f"[{role}] {query or '(no filter)'}")
    print(f"ledger page overall: {len(all_times)} requests, p95 {p95(all_times):.1f} ms,"
          f" max {max(all_times):.1f} ms; load average {os.getloadavg()}")


def town_office(db, town_code: str) -> str:
    """An office account for one town (the demo has none below the districts)."""
    username = "office_town_bench"
    if db.execute("SELECT 1 FROM users WHERE username = ?", [username]).fetchone() is None:
        office = next(db.query("SELECT * FROM users WHERE username = 'office'"))
        town = db.execute("SELECT id FROM areas WHERE code = ?", [town_code]).fetchone()[0]
        with immediate(db):
            db["users"].insert({**office, "id": None, "username": username,
                                "display_name": "乡镇台账管理员", "area_id": town})
    return username


def bench_stats(base_url, office, accounts, values, repeat) -> None:
    last = values["last"]
    print("\nstatistics page (/stats):")
    clients = {"city office": office,
               "district office": login(base_url, accounts["office_district"]),
               "town office": login(base_url, accounts["office_town"])}
    for who, client in clients.items():
        # The page also computes the period of the same length before (the cards' change):
        # the bench's year of data gives the 26 weeks a full previous period, the 52 an
        # empty one.
        for label, days in (("8 weeks", 55), ("26 weeks", 181), ("52 weeks", 363)):
            start = time.strftime("%Y-%m-%d", time.gmtime(
                time.mktime(time.strptime(last, "%Y-%m-%d")) - days * 86400))
            report(timed(client, f"/stats?from={start}&to={last}", max(5, repeat // 2)),
                   f"[{who}] {label} ({start} .. {last})")
    leader = login(base_url, accounts["leader"])
    report(timed(leader, "/stats", max(5, repeat // 2)), "[leader] default period")
    print(f"load average {os.getloadavg()}")


def export_once(client: httpx.Client, pid: int, url: str, extension: str) -> None:
    before = rss_kib(pid)
    samples = []
    done = threading.Event()

    def sample():
        while not done.is_set():
            samples.append(rss_kib(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    size = lines = 0
    first_byte = None
    with client.stream("GET", url) as response:
        assert response.status_code == 200, response.status_code
        for chunk in response.iter_bytes():
            first_byte = first_byte or time.perf_counter() - started
            size += len(chunk)
            lines += chunk.count(b"\r\n")
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    quarter = [samples[len(samples) * k // 4] for k in (1, 2, 3)] if samples else []
    rows = f"{lines - 1:,} rows, " if extension == "csv" else ""
    print(f"  {extension}: {rows}{size / 2**20:.1f} MiB in {elapsed:.1f} s (first byte after"
          f" {first_byte:.1f} s); server RSS before {before / 1024:.0f} MiB, peak"
          f" {max(samples, default=before) / 1024:.0f} MiB, at 1/4, 1/2, 3/4 of the time"
          f" {', '.join(f'{value / 1024:.0f}' for value in quarter)} MiB", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
