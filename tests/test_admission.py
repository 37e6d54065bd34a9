"""server/admission.py: pulls and uploads beyond their bound are answered 503 with
Retry-After at once; a sign-in whose client has gone is not checked; the reference client
waits the time it is told, with jitter."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from server import admission, auth
from server import app as app_module
from sync.client import Response, SyncClient
from tests.sync_helpers import jpeg, new_id, phone
from tests.test_uploads import Tus, sha256


def test_a_gate_admits_up_to_its_capacity_and_refuses_the_next():
    gate = admission.Gate("pull", 2, 3)
    with gate.admit(), gate.admit():
        assert gate.inside == 2
        with pytest.raises(admission.Full), gate.admit():
            pass
    assert gate.inside == 0 and gate.refused == 1
    with gate.admit():
        assert gate.inside == 1


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def refuse(gate: admission.Gate, client) -> int:
    with pytest.raises(admission.Full) as refused, gate.admit(client):
        pass
    return refused.value.retry_after


def gate_letting_through(requests: int, every: float) -> admission.Gate:
    """A gate of one that let ``requests`` through, one each ``every`` seconds."""
    clock = FakeClock()
    gate = admission.Gate("sign-in", 1, 2, clock=clock)
    for _ in range(requests):
        with gate.admit():
            pass
        clock.now += every
    return gate


def test_before_any_request_has_left_a_refused_client_waits_the_gates_own_time():
    gate = admission.Gate("sign-in", 1, 2, clock=FakeClock())
    with gate.admit("a"):
        assert [refuse(gate, f"phone{n}") for n in range(50)] == [2] * 50


def test_a_refused_client_is_told_its_place_in_line_over_the_throughput():
    gate = gate_letting_through(20, every=0.5)  # 20 in the last 10 s: 2 a second
    with gate.admit("in"):
        waits = [refuse(gate, f"phone{n}") for n in range(100)]
        # Asking again keeps one's place: 51st in line, 2 a second, stretched 1.5 on average.
        assert refuse(gate, "phone50") == 17
        assert refuse(gate, "phone0") == 2
        for n in range(200, 400):
            refuse(gate, f"phone{n}")
        assert refuse(gate, "late") == admission.MAX_RETRY_AFTER
    assert waits[:6] == [2] * 6  # near the front: the gate's own time
    assert waits[59] == 20 and waits[83] == 28  # 60th and 84th in line
    assert waits[-1] == admission.MAX_RETRY_AFTER == 30


def test_those_let_in_leave_the_line_and_those_behind_move_up():
    gate = gate_letting_through(20, every=0.5)
    with gate.admit("in"):
        for n in range(90):
            refuse(gate, n)
        assert refuse(gate, 89) == 30
    for n in range(60):
        with gate.admit(n):
            pass
    assert gate.waiting == 30
    with gate.admit("in"):  # 30th in line, and 81 let through in 10 s
        assert refuse(gate, 89) == 3


def test_the_first_seconds_of_a_rush_are_not_taken_for_a_slow_gate():
    gate = gate_letting_through(8, every=0.25)  # 8 in the first 2 s: 4 a second
    with gate.admit("in"):
        assert [refuse(gate, n) for n in range(60)][-1] == 10  # 60th, 4 a second


def test_a_gate_never_refused_keeps_only_the_last_seconds_of_departures():
    gate = gate_letting_through(1000, every=1.0)
    assert len(gate._left) <= admission.THROUGHPUT_WINDOW + 1


def test_a_client_let_in_or_gone_long_ago_no_longer_counts_as_waiting():
    clock = FakeClock()
    gate = admission.Gate("pull", 1, 2, clock=clock)
    with gate.admit():
        for n in range(10):
            refuse(gate, n)
    assert gate.waiting == 10
    with gate.admit(3):
        pass
    assert gate.waiting == 9
    clock.now += admission.WAITING_WINDOW + 1
    with gate.admit("in"):
        refuse(gate, "new")
    assert gate.waiting == 1


def test_a_pull_beyond_the_bound_is_busy_at_once(client, app):
    token_phone = phone(client, "field1")
    gate = app.state.gates["pull"]
    url = f"/api/sync/pull?client_id={new_id()}&cursor=0"
    with contextlib_admit_all(gate):
        started = time.perf_counter()
        response = token_phone.request("GET", url, retry=False)
        assert time.perf_counter() - started < 1
    assert response.status == 503
    assert response.headers["retry-after"] == "2"
    assert response.json()["error"] == {"code": "busy",
                                        "message": "服务器正忙，请 2 秒后再试（App 会自动重试）。"}
    assert token_phone.request("GET", url, retry=False).status == 200


def test_an_upload_beyond_the_bound_is_busy_and_keeps_no_bytes(client, app, world):
    tus = Tus(client, "field1")
    data = jpeg()
    url = tus.start(data)
    with contextlib_admit_all(app.state.gates["upload"]):
        response = tus.patch(url, 0, data)
    assert response.status_code == 503 and response.headers["tus-resumable"] == "1.0.0"
    assert response.headers["retry-after"] == "3"
    assert tus.offset(url) == 0
    assert tus.patch(url, 0, data).status_code == 204 and tus.photo(sha256(data)).status_code == 200


class contextlib_admit_all:  # noqa: N801 (used as a context manager)
    """Fill a gate from the test, as many requests in flight would."""

    def __init__(self, gate: admission.Gate):
        self.gate = gate
        self.held = []

    def __enter__(self):
        for _ in range(self.gate.capacity):
            held = self.gate.admit()
            held.__enter__()
            self.held.append(held)
        return self

    def __exit__(self, *exc):
        for held in self.held:
            held.__exit__(None, None, None)


# Sign-in: a client that has gone is not checked --------------------------------------


def test_each_worker_takes_its_share_of_the_machine_s_bounds(db_path, photos_folder, world):
    cpus = app_module.CPUS
    apps = [app_module.create_app(db_path, photos=photos_folder, workers=workers)
            for workers in (1, 3)]
    try:
        bounds = [(app.state.password_checks.workers, app.state.password_checks.capacity,
                   app.state.gates["pull"].capacity, app.state.gates["upload"].capacity)
                  for app in apps]
    finally:
        for app in apps:
            app.state.store.close()
    assert bounds[0] == (cpus, 33 * cpus, 4 * cpus, 4 * cpus)
    checks = max(1, cpus // 3)
    assert bounds[1] == (checks, checks + max(1, 32 * cpus // 3),
                         max(1, 4 * cpus // 3), max(1, 4 * cpus // 3))


def test_bounds_given_are_the_machine_s_too_and_never_below_one():
    settings = app_module.Settings(password_checks=4, password_check_queue=10,
                                   pull_concurrency=9, upload_concurrency=2)
    assert settings.per_worker(4) == app_module.Settings(
        password_checks=1, password_check_queue=2, pull_concurrency=2, upload_concurrency=1)
    assert settings.per_worker(1) == settings
    no_queue = app_module.Settings(password_checks=4, password_check_queue=0)
    assert no_queue.per_worker(2).password_check_queue == 0


def test_a_queued_password_check_whose_client_has_gone_never_runs(monkeypatch):
    monkeypatch.setattr(auth, "GONE_POLL_SECONDS", 0.05)
    checks = auth.PasswordChecks(workers=1, queue=4)
    release = threading.Event()
    ran = []

    def slow():
        release.wait(5)
        ran.append("slow")

    async def scenario():
        first = asyncio.ensure_future(checks.run(slow))
        await asyncio.sleep(0.05)

        async def gone():
            return True

        with pytest.raises(auth.ClientGone):
            await checks.run(lambda: ran.append("queued"), gone=gone)
        release.set()
        await first

    asyncio.run(scenario())
    checks.close()
    assert ran == ["slow"]


def test_a_sign_in_whose_client_has_gone_counts_no_attempt(app, client, db, monkeypatch):
    async def gone():
        return True

    monkeypatch.setattr(auth, "GONE_POLL_SECONDS", 0.01)

    def slow_match(candidate, password):
        time.sleep(0.2)
        return True

    monkeypatch.setattr(auth, "password_matches", slow_match)

    async def scenario():
        with pytest.raises(auth.ClientGone):
            await auth.sign_in(app.state.store, app.state.password_checks, "field1", "x",
                               "203.0.113.9", gone=gone)

    asyncio.run(scenario())
    assert db.execute("SELECT count(*) FROM login_attempts WHERE address = '203.0.113.9'"
                      ).fetchone() == (0,)


# The reference client backs off --------------------------------------------------------


def busy_then_ok(busy_answers: int, retry_after: str | None):
    calls = []

    def transport(method, path, headers, body):
        calls.append(path)
        if len(calls) <= busy_answers:
            headers = {"retry-after": retry_after} if retry_after else {}
            return Response(503, headers, b'{"error": {"code": "busy", "message": "busy"}}')
        return Response(200, {}, b"{}")

    return transport, calls


def test_the_reference_client_waits_retry_after_stretched_by_jitter():
    transport, calls = busy_then_ok(5, "4")
    pauses: list[float] = []
    client = SyncClient(transport, sleep=pauses.append)
    assert client.request("GET", "/api/sync/pull").status == 200
    assert len(calls) == 6 and len(pauses) == 5
    assert all(4 <= pause <= 8 for pause in pauses) and len(set(pauses)) > 1


def test_without_retry_after_it_backs_off_exponentially_and_gives_up_in_the_end():
    transport, calls = busy_then_ok(100, None)
    pauses: list[float] = []
    client = SyncClient(transport, sleep=pauses.append, max_busy_attempts=8)
    assert client.request("GET", "/api/sync/pull").status == 503
    assert len(calls) == 8 and len(pauses) == 7
    assert pauses[-1] > pauses[0]
