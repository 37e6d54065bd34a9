"""Benchmark: a new phone's first sync, over loopback, at several ledger sizes.

    .venv/bin/python bench/first_sync_bench.py --workdir /tmp/ws/bench             # 10k, 100k, 1M
    .venv/bin/python bench/first_sync_bench.py --sizes 10000 --workdir /tmp/ws/bench
    .venv/bin/python bench/first_sync_bench.py --sizes 10000 --before   # also the full replay
    .venv/bin/python bench/first_sync_bench.py --db postgresql://…/fieldledger --photos DIR

For each size a demo city is seeded (or reused from --workdir, as
``bench/sync_bench.py`` names them: ledger-<size>.db) and served by
``fieldledger serve``. A new phone of the demo's field official (``field``) and
one of the city office (``office``) sync for the first time with the reference
client: the snapshot of their working set, then the change log from its head
(docs/sync-protocol.md, Pull). Measured: wall time, bytes of the answers as
they came over the wire (gzip), requests, records kept, and the time those
bytes take at 400 kbit/s (a slow 3G link). ``--before`` also times the first
sync of before the working set: the whole change log replayed (format 1,
uncompressed). ``--db`` measures the ledger already in a database (a file or a
``postgresql://`` URL) instead of seeding one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from sync_bench import (  # noqa: E402
    Server,
    counts,
    device_tokens,
    ensure_database,
    timed_first_pull,
)

from server.db import open_database  # noqa: E402
from sync.client import HttpTransport, SyncClient  # noqa: E402

USERS = ("field", "office")
SLOW_LINK_BITS = 400_000  # 400 kbit/s


def user_ids(path: Path) -> dict[str, int]:
    db = open_database(path)
    try:
        return {name: db.execute("SELECT id FROM users WHERE username = ?", [name]).fetchone()[0]
                for name in USERS}
    finally:
        db.close()


def first_sync(server: Server, token: str) -> dict:
    transport = HttpTransport(server.url, timeout=300)
    phone = SyncClient(transport)
    phone.state["token"] = token
    seconds, requests = timed_first_pull(phone)
    kept = {}
    for key in phone.state["records"]:
        entity = key.split(":", 1)[0]
        kept[entity] = kept.get(entity, 0) + 1
    return {"seconds": seconds, "bytes": transport.received, "requests": requests,
            "records": kept, "slow_link_seconds": transport.received * 8 / SLOW_LINK_BITS}


def full_replay(server: Server, token: str) -> dict:
    """The first sync of before: every page of the change log, format 1, no gzip."""
    transport = HttpTransport(server.url, timeout=300)
    client_id = SyncClient(transport).state["client_id"]
    cursor, pages, received, records = 0, 0, 0, set()
    started = time.perf_counter()
    while True:
        query = urllib.parse.urlencode({"client_id": client_id, "cursor": cursor, "limit": 1000})
        response = transport("GET", f"/api/sync/pull?{query}",
                             {"Authorization": f"Bearer {token}", "Accept-Encoding": "identity"},
                             None)
        body = response.json()
        received += len(response.body)
        pages += 1
        for change in body["changes"]:
            key = (change["entity"], change["id"])
            (records.discard if change.get("deleted") else records.add)(key)
        cursor = body["cursor"]
        if not body["has_more"]:
            break
    return {"seconds": time.perf_counter() - started, "bytes": received, "requests": pages,
            "records": len(records)}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--workdir", default="/tmp/first-sync-bench")
    parser.add_argument("--before", action="store_true", help="also the full replay of before")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--db", help="measure the ledger in this database (a file or a"
                        " postgresql:// URL) instead of seeding; --sizes is then ignored")
    parser.add_argument("--photos", help="the photos folder (required with a postgresql:// --db)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    figures = {}
    for size in [None] if args.db else [int(s) for s in args.sizes.split(",")]:
        path = args.db or ensure_database(workdir, size)
        size = size or counts(path)[0]
        print(f"{size:,} problems", flush=True)
        ids = user_ids(path)
        tokens = dict(zip(USERS, device_tokens(path, [ids[name] for name in USERS]),
                          strict=True))
        server = Server(path, workdir / f"server-{size}.log", args.photos)
        try:
            for name in USERS:
                load = os.getloadavg()[0]
                result = first_sync(server, tokens[name])
                result["load"] = [load, os.getloadavg()[0]]
                print(f"  {name}: {result['seconds']:.2f} s, {result['bytes'] / 1e6:.2f} MB"
                      f" ({result['slow_link_seconds']:.0f} s at 400 kbit/s),"
                      f" {result['requests']} requests, kept {result['records']};"
                      f" load {load:.2f} -> {result['load'][1]:.2f}", flush=True)
                if args.before:
                    before = full_replay(server, tokens[name])
                    result["before"] = before
                    print(f"    before (full replay): {before['seconds']:.1f} s,"
                          f" {before['bytes'] / 1e6:.1f} MB, {before['requests']} requests,"
                          f" {before['records']:,} records", flush=True)
                figures[f"{size}/{name}"] = result
        finally:
            server.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
