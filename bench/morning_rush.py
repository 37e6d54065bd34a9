"""Benchmark: a morning rush. Many phones sign in, pull and push at once against one server.

    .venv/bin/python bench/morning_rush.py [--devices 1000] [--mutations 5] [--problems 10000]

A demo ledger of ``--problems`` is built once under /tmp/morning_rush and copied; the copy
gets one field account per device (as in the field: one official, one phone, one
account; they share the demo official's area and password hash, so every sign-in costs a
real argon2 check). The server runs under uvicorn in a child process; ``simulate`` (the
``fieldledger simulate-devices`` load test) starts every device at once, each signing in,
pulling, then capturing ``--mutations`` records with small photos in rounds and syncing
after each. Printed: the load test's report, how long until every device was done, the
server's peak resident memory (sampled every 0.1 s), and, once the wave is over, the
latency of single pushes of one phone (p50, p99 over 200).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ledger_bench import free_port, rss_kib, start_server  # noqa: E402 (bench/, this script's folder)

from server.db import immediate, open_database  # noqa: E402
from server.demo import DEMO_PASSWORD, seed_demo  # noqa: E402
from sync.client import HttpTransport, SyncClient  # noqa: E402
from sync.ids import uuid7  # noqa: E402
from sync.simulate import format_report, percentile, simulate  # noqa: E402

CACHE = Path("/tmp/morning_rush")


def prepare(problems: int, devices: int) -> Path:
    CACHE.mkdir(exist_ok=True)
    base = CACHE / f"demo-{problems}.db"
    if not base.exists():
        print(f"building a demo ledger of {problems:,} problems in {base} ...", flush=True)
        db = open_database(base)
        seed_demo(db, seed=1, problems=problems)
        db.close()
    path = CACHE / "rush.db"
    for leftover in CACHE.glob("rush.db*"):
        if leftover.is_dir():
            shutil.rmtree(leftover)
        else:
            leftover.unlink()
    shutil.copyfile(base, path)
    if Path(f"{base}.photos").exists():
        shutil.copytree(f"{base}.photos", f"{path}.photos")
    db = open_database(path)  # migrate once, before the server starts
    with immediate(db):
        template = db.execute(
            "SELECT area_id, password_hash FROM users WHERE username = 'field'").fetchone()
        db.executemany(
            "INSERT INTO users (username, display_name, phone, roles, area_id, password_hash,"
            " active, created_at, updated_at) VALUES (?, ?, '', 'field', ?, ?, 1,"
            " '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00')",
            [(f"rush{n:04d}", f"走访干部{n:04d}", *template) for n in range(devices)])
    db.close()
    return path


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process and its threads so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PeakMemory(threading.Thread):
    """The server's peak RSS, sampled every 0.1 s, and its CPU use every 10 s."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.running = pid, 0, True
        self.cpu: list[float] = []  # cores busy, each 10 s

    def run(self) -> None:
        last = cpu_seconds(self.pid)
        ticks = 0
        while self.running:
            try:
                self.peak = max(self.peak, rss_kib(self.pid))
                ticks += 1
                if ticks % 100 == 0:
                    now = cpu_seconds(self.pid)
                    self.cpu.append((now - last) / 10)
                    last = now
            except OSError:
                return
            time.sleep(0.1)


def single_pushes(base_url: str, count: int) -> list[float]:
    client = SyncClient(HttpTransport(base_url, 60))
    client.login("rush0000", DEMO_PASSWORD, "after the wave")
    client.pull()
    area = next(int(k) for k, a in client.records("area").items() if a["active"])
    times = []
    for n in range(count):
        client.capture("diary.save", {
            "id": uuid7(), "area_id": area, "person_kind": "resident",
            "content": f"浪潮过后的单次推送 {n}", "recorded_at": "2026-12-06T09:00:00+08:00"})
        started = time.perf_counter()
        client.push()
        times.append(time.perf_counter() - started)
    return times


def wave(base_url: str, first: int, devices: int, mutations: int, timeout: float,
         seed: int) -> dict:
    """One process's share of the devices (accounts rush<first>...), all at once."""
    return simulate(base_url, [(f"rush{n:04d}", DEMO_PASSWORD)
                               for n in range(first, first + devices)],
                    devices, mutations, concurrency=devices, photos=True, timeout=timeout,
                    seed=seed)


def combined(reports: list[dict]) -> str:
    """What every process's share came to, and each share's latencies."""
    total = {key: sum(report[key] for report in reports) for key in (
        "devices", "devices_ok", "mutations_acknowledged", "rejected", "unsent", "errors")}
    lines = [f"{total['devices']} devices in {len(reports)} processes:"
             f" {total['devices_ok']} without errors, {total['errors']} errors,"
             f" {total['rejected']} rejected, {total['mutations_acknowledged']} mutations"
             f" acknowledged, {total['unsent']} left unsent"]
    for number, report in enumerate(reports):
        lines.append(f"-- process {number}: the last device signed in and pulled after"
                     f" {report['setup_seconds']} s, all done after {report['seconds']} s")
        lines.extend("   " + line for line in format_report(report).splitlines()[3:8])
        lines.extend("   " + sample for sample in report["error_samples"][:3])
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--mutations", type=int, default=5)
    parser.add_argument("--problems", type=int, default=10_000)
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--processes", type=int, default=1,
                        help="share the devices over this many load-generating processes")
    args = parser.parse_args()
    path = prepare(args.problems, args.devices)
    port = free_port()
    server = start_server(path, port)
    memory = PeakMemory(server.pid)
    memory.start()
    base_url = f"http://127.0.0.1:{port}"
    print(f"load average at start: {os.getloadavg()}", flush=True)
    try:
        started = time.perf_counter()
        if args.processes == 1:
            report = simulate(base_url, [(f"rush{n:04d}", DEMO_PASSWORD)
                                         for n in range(args.devices)],
                              args.devices, args.mutations, concurrency=args.devices,
                              photos=True, timeout=args.timeout, progress=print)
            print(format_report(report))
        else:
            share = -(-args.devices // args.processes)
            starts = list(range(0, args.devices, share))
            with ProcessPoolExecutor(len(starts)) as pool:
                reports = list(pool.map(
                    wave, [base_url] * len(starts), starts,
                    [min(share, args.devices - first) for first in starts],
                    [args.mutations] * len(starts), [args.timeout] * len(starts),
                    range(1, len(starts) + 1)))
            print(combined(reports))
        elapsed = time.perf_counter() - started
        print(f"the whole wave: {elapsed:.1f} s; server peak RSS {memory.peak / 1024:.0f} MiB")
        print("server CPU, cores busy each 10 s: "
              + " ".join(f"{cores:.2f}" for cores in memory.cpu))
        pushes = single_pushes(base_url, 200)
        print(f"single pushes after the wave: p50 {1000 * statistics.median(pushes):.1f} ms,"
              f" p99 {1000 * percentile(pushes, 0.99):.1f} ms (200)")
    finally:
        memory.running = False
        server.terminate()
        server.wait(10)
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
