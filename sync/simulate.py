"""Simulated phones against a running server: a load test made of reference clients.

Each simulated device signs in once, pulls (to learn its areas and categories),
then captures visits, people's diary entries and problems in small rounds,
pushing after each round as the app does, and pulls at the end; each goes on as
soon as it has signed in, as phones do, whatever the others are doing::

    fieldledger simulate-devices --url http://127.0.0.1:8000 \\
        --user field:demo1234 --devices 50 --mutations 20

Devices are shared out over the given accounts in turn; ``concurrency`` of them
run at once, each in its own thread with its own connections.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import random
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from sync.client import HttpTransport, Response, SyncClient, SyncError, TransportError
from sync.ids import uuid7

VISIT_METHODS = ("sbls", "dundian", "xianchang", "ruhu", "jiefang")
PLACES = ("村委会", "社区服务中心", "幸福小区3号楼", "农贸市场", "河道北岸", "小学门口", "卫生院")
PROBLEMS = (
    "小区二次供水水压不足，五楼以上经常停水",
    "路灯不亮，夜间行人出行不便",
    "垃圾清运不及时，楼下垃圾堆积有异味",
    "村口道路坑洼积水，雨天无法通行",
    "河道有生活污水排入，水面发黑",
    "老旧小区楼道电线私拉乱接，存在火灾隐患",
    "农贸市场占道经营，早高峰交通拥堵",
)
DIARY = (
    "走访独居老人，身体状况良好，反映冬季取暖费用偏高。",
    "与网格员一起入户，群众对近期道路改造表示满意。",
    "商户反映夜间施工噪音扰民，已记录并转交。",
    "听取村民对低保评定公开公示的意见建议。",
)
ROUND_SIZE = (1, 5)  # mutations captured between two syncs


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered) - 1e-9))  # 0.99 * 100 is 99.000...01
    return ordered[min(rank, len(ordered)) - 1]


class TimedTransport:
    """An ``HttpTransport`` that notes how long each request took, by kind."""

    def __init__(self, inner: Callable, timings: dict[str, list[float]],
                 lock: threading.Lock):
        self.inner = inner
        self.timings = timings
        self.lock = lock
        self.first_pull = True  # pulls are "initial_pull" until the device has its set

    def __call__(self, method, path, headers, body) -> Response:
        kind = _kind(method, path)
        if kind == "pull" and self.first_pull:
            kind = "initial_pull"
        started = time.perf_counter()
        try:
            return self.inner(method, path, headers, body)
        finally:
            elapsed = time.perf_counter() - started
            with self.lock:
                self.timings.setdefault(kind, []).append(elapsed)


def _kind(method: str, path: str) -> str:
    if path.startswith("/api/sync/push"):
        return "push"
    if path.startswith("/api/sync/pull"):
        return "pull"
    if path.startswith("/api/login"):
        return "login"
    if path.startswith("/api/uploads"):
        return "upload"
    return f"{method} {path}"


def _photo(rng: random.Random) -> bytes:
    from PIL import Image

    image = Image.new("RGB", (64, 48), (rng.randrange(256), rng.randrange(256), 120))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def _stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone(dt.timedelta(hours=8))).isoformat(timespec="seconds")


class Device:
    """One simulated phone: a reference client and what it has captured."""

    def __init__(self, number: int, base_url: str, username: str, password: str,
                 seed: int, photos: bool, timings: dict, lock: threading.Lock,
                 timeout: float):
        self.number = number
        self.username = username
        self.password = password
        self.rng = random.Random(seed * 1_000_003 + number)
        self.photos = photos
        self.transport = TimedTransport(HttpTransport(base_url, timeout), timings, lock)
        self.client = SyncClient(self.transport)
        self.areas: list[int | None] = [None]
        self.categories: list[int | None] = [None]
        self.visits: list[str] = []
        self.captured = 0
        self.ready_after: float | None = None  # seconds from the wave's start

    def start(self) -> None:
        self.client.login(self.username, self.password, f"simulated device {self.number}")
        self.client.pull()
        self.transport.first_pull = False
        self.areas = [int(k) for k, a in self.client.records("area").items() if a["active"]]
        self.areas = self.areas or [None]
        self.categories = [int(k) for k, c in self.client.records("category").items()
                           if c["active"]] or [None]

    def capture(self) -> None:
        rng = self.rng
        now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=rng.randrange(0, 600))
        photos = []
        if self.photos and rng.random() < 0.3:
            photos = [self.client.add_photo(_photo(rng))]
        roll = rng.random()
        if roll < 0.2 or not self.visits:
            visit_id = uuid7()
            self.visits.append(visit_id)
            self.client.capture("visit.save", {
                "id": visit_id, "method": rng.choice(VISIT_METHODS),
                "area_id": rng.choice(self.areas), "place": rng.choice(PLACES),
                "checklist": rng.sample(["no_notice", "no_greeting", "direct_grassroots"], 2),
                "started_at": _stamp(now), "ended_at": _stamp(now + dt.timedelta(minutes=40)),
                "photos": photos,
            })
        elif roll < 0.4:
            self.client.capture("diary.save", {
                "id": uuid7(), "visit_id": rng.choice(self.visits),
                "area_id": rng.choice(self.areas), "person_kind": "resident",
                "person_name": "张大爷", "content": rng.choice(DIARY),
                "recorded_at": _stamp(now),
            })
        else:
            self.client.capture("problem.report", {
                "id": uuid7(),
                "visit_id": rng.choice(self.visits) if rng.random() < 0.5 else None,
                "area_id": rng.choice(self.areas), "category_id": rng.choice(self.categories),
                "urgency": rng.choice(["normal", "normal", "urgent"]),
                "place": rng.choice(PLACES), "description": rng.choice(PROBLEMS),
                "found_at": _stamp(now), "photos": photos,
            })
        self.captured += 1

    def work(self, mutations: int) -> None:
        while self.captured < mutations:
            for _ in range(min(self.rng.randint(*ROUND_SIZE), mutations - self.captured)):
                self.capture()
            self.client.sync()
        self.client.pull()


def _summary(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "p50_ms": round(1000 * statistics.median(values), 1),
        "p95_ms": round(1000 * percentile(values, 0.95), 1),
        "max_ms": round(1000 * max(values), 1),
    }


def simulate(base_url: str, users: list[tuple[str, str]], devices: int,
             mutations_per_device: int, concurrency: int = 10, photos: bool = False,
             seed: int = 1, timeout: float = 60,
             progress: Callable[[str], None] | None = None) -> dict:
    """Run ``devices`` simulated phones against ``base_url``; returns a report."""
    if not users:
        raise ValueError("at least one (username, password) is needed")
    timings: dict[str, list[float]] = {}
    lock = threading.Lock()
    errors: list[str] = []
    failed: set[int] = set()
    fleet = [
        Device(n, base_url, *users[n % len(users)], seed=seed, photos=photos,
               timings=timings, lock=lock, timeout=timeout)
        for n in range(devices)
    ]

    def run(device: Device, phase: Callable[[Device], None]) -> bool:
        try:
            phase(device)
            return True
        except (SyncError, TransportError, OSError, KeyError, ValueError) as error:
            with lock:
                failed.add(device.number)
                errors.append(f"device {device.number} ({device.username}): "
                              f"{type(error).__name__}: {error}"[:300])
            return False

    workers = max(1, min(concurrency, devices))
    started = time.perf_counter()

    def life(device: Device) -> None:
        # Like a phone: it works as soon as it has signed in and pulled, whatever
        # the others are doing.
        if run(device, Device.start):
            device.ready_after = time.perf_counter() - started
            run(device, lambda dev: dev.work(mutations_per_device))

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="device") as pool:
        list(pool.map(life, fleet))
    elapsed = time.perf_counter() - started
    ready = [d for d in fleet if d.ready_after is not None]
    setup_seconds = max((d.ready_after for d in ready), default=elapsed)
    if progress:
        progress(f"{len(ready)} of {devices} devices signed in and pulled;"
                 f" the last after {setup_seconds:.1f} s")
    setup = {"login": timings.pop("login", []), "pull": timings.pop("initial_pull", [])}

    states = [d.client.state for d in ready]
    rejected = [r for s in states for r in s["rejected"]]
    unsent = sum(len(s["outbox"]) for s in states)
    acknowledged = sum(d.captured for d in ready) - unsent
    report = {
        "url": base_url,
        "devices": devices,
        "devices_ok": devices - len(failed),
        "concurrency": workers,
        "mutations_per_device": mutations_per_device,
        "photos": photos,
        "setup_seconds": round(setup_seconds, 2),
        "seconds": round(elapsed, 2),
        "mutations_acknowledged": acknowledged,
        "mutations_per_second": round(acknowledged / elapsed, 1) if elapsed else None,
        "rejected": len(rejected),
        "rejected_codes": sorted({r["code"] for r in rejected}),
        "unsent": unsent,
        "login": _summary(setup.get("login", [])),
        "initial_pull": _summary(setup.get("pull", [])),
        "push": _summary(timings.get("push", [])),
        "pull": _summary(timings.get("pull", [])),
        "upload": _summary(timings.get("upload", [])),
        "errors": len(errors),
        "error_samples": errors[:10],
    }
    return report


def format_report(report: dict) -> str:
    def latency(name: str) -> str:
        stats = report[name]
        if not stats["count"]:
            return f"{name:<13} -"
        return (f"{name:<13} {stats['count']:>6} requests   p50 {stats['p50_ms']:>7.1f} ms"
                f"   p95 {stats['p95_ms']:>7.1f} ms   max {stats['max_ms']:>7.1f} ms")

    lines = [
        f"{report['devices']} devices ({report['devices_ok']} without errors),"
        f" {report['concurrency']} at a time, {report['mutations_per_device']} mutations each"
        f"{', with photos' if report['photos'] else ''} -> {report['url']}",
        f"the last device signed in and pulled after {report['setup_seconds']} s;"
        f" all done after {report['seconds']} s",
        f"mutations acknowledged: {report['mutations_acknowledged']}"
        f" = {report['mutations_per_second']} mutations/s over the run",
        latency("login"),
        latency("initial_pull"),
        latency("push"),
        latency("pull"),
        latency("upload"),
        f"rejected: {report['rejected']} {' '.join(report['rejected_codes'])}".rstrip(),
        f"left unsent: {report['unsent']}",
        f"errors: {report['errors']}",
        *(f"  {sample}" for sample in report["error_samples"]),
    ]
    return "\n".join(lines)
