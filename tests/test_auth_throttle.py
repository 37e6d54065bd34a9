"""Sign-in limits (server/auth.py, "Sign-in throttling"): attempts are counted before the
password is checked, per account and per (account, address), and the password checks
running at once are bounded."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx2
import pytest
from starlette.testclient import TestClient

from server import auth
from server.app import create_app
from server.i18n import gettext as _
from tests.conftest import PASSWORD, login

ATTACKER = ("203.0.113.9", 40000)
VICTIM = ("198.51.100.7", 40000)


class CountingChecks:
    """Wraps auth.verify_password: how many checks ran, and how many at most at once."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.calls = 0
        self.running = 0
        self.most_at_once = 0
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self._lock = threading.Lock()

    def wrap(self, verify):
        def counted(password_hash, password):
            with self._lock:
                self.calls += 1
                self.running += 1
                self.most_at_once = max(self.most_at_once, self.running)
            self.started.set()
            try:
                self.release.wait(10)
                time.sleep(self.delay)
                return verify(password_hash, password)
            finally:
                with self._lock:
                    self.running -= 1

        return counted


@pytest.fixture
def checks(monkeypatch):
    counting = CountingChecks()
    monkeypatch.setattr(auth, "verify_password", counting.wrap(auth.verify_password))
    return counting


def api_client(app, address=("127.0.0.1", 40000)) -> httpx2.AsyncClient:
    transport = httpx2.ASGITransport(app=app, client=address)
    return httpx2.AsyncClient(transport=transport, base_url="http://testserver")


async def api_sign_in(app, username, password, address=("127.0.0.1", 40000)):
    async with api_client(app, address) as client:
        return await client.post(
            "/api/login", json={"username": username, "password": password}
        )


def attempt_rows(db) -> list[dict]:
    return list(db.query("SELECT account, address, state FROM login_attempts ORDER BY id"))


# Counting before checking ------------------------------------------------------------


def test_parallel_wrong_passwords_from_one_address_check_no_more_than_allowed(
    db_path, photos_folder, world, checks
):
    app = create_app(db_path, photos=photos_folder, password_checks=2, password_check_queue=1000)

    async def flood():
        return await asyncio.gather(
            *(api_sign_in(app, "field1", f"wrong-{n}") for n in range(200))
        )

    responses = asyncio.run(flood())
    assert checks.calls <= auth.MAX_FAILURES
    statuses = [response.status_code for response in responses]
    assert set(statuses) <= {401, 429}
    assert statuses.count(401) <= auth.MAX_FAILURES
    locked = next(r for r in responses if r.status_code == 429)
    assert locked.json()["error"]["code"] == "locked_out"
    assert int(locked.headers["retry-after"]) > 0
    # Even the right password is refused now, without being checked.
    calls = checks.calls
    right = asyncio.run(api_sign_in(app, "field1", PASSWORD))
    assert right.status_code == 429
    assert checks.calls == calls


def test_parallel_wrong_passwords_from_many_addresses_check_no_more_than_the_account_allows(
    db_path, photos_folder, world, checks
):
    app = create_app(db_path, photos=photos_folder, password_checks=2, password_check_queue=1000)

    async def flood():
        return await asyncio.gather(*(
            api_sign_in(app, "field1", "wrong", (f"10.0.{n // 200}.{n % 200}", 40000))
            for n in range(200)
        ))

    responses = asyncio.run(flood())
    assert checks.calls <= auth.MAX_ACCOUNT_FAILURES
    assert {response.status_code for response in responses} <= {401, 429}
    fresh = asyncio.run(api_sign_in(app, "field1", PASSWORD, ("192.0.2.50", 40000)))
    assert fresh.status_code == 429
    assert checks.calls <= auth.MAX_ACCOUNT_FAILURES


def test_an_attempt_is_counted_before_its_check_ends(db_path, photos_folder, world, db, checks):
    app = create_app(db_path, photos=photos_folder, password_checks=1, password_check_queue=10)
    checks.release.clear()

    async def scenario():
        first = asyncio.create_task(api_sign_in(app, "field1", "wrong"))
        while not checks.started.is_set():
            await asyncio.sleep(0.005)
        during = attempt_rows(db)
        checks.release.set()
        await first
        return during

    during = asyncio.run(scenario())
    assert during == [{"account": "field1", "address": "127.0.0.1", "state": "checking"}]
    assert attempt_rows(db) == [{"account": "field1", "address": "127.0.0.1", "state": "failed"}]


# One address cannot lock out another --------------------------------------------------


def test_one_address_hammering_cannot_lock_the_account_for_another(app, world):
    with TestClient(app, client=ATTACKER) as attacker, TestClient(app, client=VICTIM) as victim:
        for _attempt in range(3 * auth.MAX_FAILURES):
            assert login(attacker, "field1", "wrong").status_code in (401, 429)
        assert login(attacker, "field1", "wrong").status_code == 429
        # The attacker's address is locked for this account, even with the right password...
        assert login(attacker, "field1").status_code == 429
        # ...but the account is not: its owner signs in from elsewhere.
        assert login(victim, "field1").status_code == 303


def test_behind_the_trusted_proxy_the_forwarded_address_is_counted(app, world, db):
    """As ``fieldledger serve`` runs it (uvicorn's proxy headers, docs/deployment.md)."""
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    proxied = ProxyHeadersMiddleware(app, trusted_hosts="127.0.0.1")

    def sign_in(browser, password, forwarded_for):
        return browser.post(
            "/login",
            data={"username": "field1", "password": password,
                  "csrf_token": browser.cookies["fl_csrf"]},
            headers={"X-Forwarded-For": forwarded_for},
            follow_redirects=False,
        )

    with TestClient(proxied, client=("127.0.0.1", 40000)) as browser:
        browser.get("/login")
        for _attempt in range(auth.MAX_FAILURES):
            # A client's own X-Forwarded-For is kept on the left by nginx; it is not believed.
            sign_in(browser, "wrong", f"{VICTIM[0]}, {ATTACKER[0]}")
        assert sign_in(browser, PASSWORD, ATTACKER[0]).status_code == 429
        assert sign_in(browser, PASSWORD, VICTIM[0]).status_code == 303
    assert {row["address"] for row in attempt_rows(db)} == {ATTACKER[0]}


def test_failures_from_several_addresses_lock_the_account_everywhere(app, world):
    addresses = auth.MAX_ACCOUNT_FAILURES // auth.MAX_FAILURES
    for n in range(addresses):
        with TestClient(app, client=(f"203.0.113.{n + 1}", 40000)) as attacker:
            for _attempt in range(auth.MAX_FAILURES):
                login(attacker, "field1", "wrong")
    with TestClient(app, client=VICTIM) as victim:
        response = login(victim, "field1")
        assert response.status_code == 429
        assert _("login.locked_out", minutes=15) in response.text
        assert response.headers["retry-after"] == str(15 * 60)
        # Other accounts are not affected.
        assert login(victim, "field2").status_code == 303


def test_a_success_clears_its_own_address_failures_only(app, world, db):
    with TestClient(app, client=ATTACKER) as attacker, TestClient(app, client=VICTIM) as victim:
        for _attempt in range(auth.MAX_FAILURES - 1):
            login(attacker, "field1", "wrong")
            login(victim, "field1", "wrong")
        assert login(victim, "field1").status_code == 303
    assert {row["address"] for row in attempt_rows(db)} == {ATTACKER[0]}
    assert len(attempt_rows(db)) == auth.MAX_FAILURES - 1


def test_the_lock_lifts_when_the_failures_leave_the_window(app, world, db):
    with TestClient(app, client=VICTIM) as browser:
        for _attempt in range(auth.MAX_FAILURES):
            login(browser, "field1", "wrong")
        assert login(browser, "field1").status_code == 429
        db.execute("UPDATE login_attempts SET at = '2026-01-01T00:00:00+00:00'")
        db.conn.commit()
        assert login(browser, "field1").status_code == 303
    assert attempt_rows(db) == []


def test_a_refused_attempt_is_not_counted(app, world, db, checks):
    with TestClient(app, client=VICTIM) as browser:
        for _attempt in range(auth.MAX_FAILURES + 3):
            login(browser, "field1", "wrong")
    assert checks.calls == auth.MAX_FAILURES
    assert len(attempt_rows(db)) == auth.MAX_FAILURES


# Bounded password checks --------------------------------------------------------------


def test_with_one_check_at_a_time_parallel_checks_never_overlap(
    db_path, photos_folder, world, checks
):
    checks.delay = 0.02
    app = create_app(db_path, photos=photos_folder, password_checks=1, password_check_queue=100)
    users = ["office", "leader", "field1", "field2", "handler1", "handler2", "admin"]

    async def crowd():
        return await asyncio.gather(*(api_sign_in(app, name, PASSWORD) for name in users * 2))

    responses = asyncio.run(crowd())
    assert [response.status_code for response in responses] == [201] * len(users) * 2
    assert checks.calls == len(users) * 2
    assert checks.most_at_once == 1


def test_checks_at_once_follow_the_setting(db_path, photos_folder, world, checks):
    checks.delay = 0.02
    app = create_app(db_path, photos=photos_folder, password_checks=3, password_check_queue=100)

    async def crowd():
        return await asyncio.gather(*(
            api_sign_in(app, "office", PASSWORD, (f"10.1.0.{n}", 1)) for n in range(12)
        ))

    asyncio.run(crowd())
    assert 1 <= checks.most_at_once <= 3


def test_beyond_the_queue_a_sign_in_is_answered_503_at_once(
    db_path, photos_folder, world, db, checks
):
    app = create_app(db_path, photos=photos_folder, password_checks=1, password_check_queue=0)
    checks.release.clear()

    async def scenario():
        first = asyncio.create_task(api_sign_in(app, "office", PASSWORD))
        while not checks.started.is_set():
            await asyncio.sleep(0.005)
        started = time.monotonic()
        api = await api_sign_in(app, "field1", PASSWORD, VICTIM)
        async with api_client(app, VICTIM) as browser:
            await browser.get("/login")
            page = await browser.post("/login", data={
                "username": "field1", "password": PASSWORD,
                "csrf_token": browser.cookies["fl_csrf"],
            })
        waited = time.monotonic() - started
        rows_while_busy = attempt_rows(db)
        checks.release.set()
        return await first, api, page, waited, rows_while_busy

    first, api, page, waited, rows_while_busy = asyncio.run(scenario())
    assert first.status_code == 201
    assert waited < 5
    assert api.status_code == 503
    assert api.json()["error"]["code"] == "busy"
    assert api.json()["error"]["message"] == _("lockout.busy", seconds=auth.BUSY_RETRY_SECONDS)
    assert api.headers["retry-after"] == str(auth.BUSY_RETRY_SECONDS)
    assert page.status_code == 503
    assert page.headers["retry-after"] == str(auth.BUSY_RETRY_SECONDS)
    assert _("lockout.busy", seconds=auth.BUSY_RETRY_SECONDS) in page.text
    assert 'value="field1"' in page.text  # the sign-in form, username kept
    # Nothing was counted for the refused sign-ins: only the first one's attempt.
    assert [row["account"] for row in rows_while_busy] == ["office"]
    assert checks.calls == 1
    # Once the check is done, sign-ins are let in again.
    assert asyncio.run(api_sign_in(app, "field1", PASSWORD, VICTIM)).status_code == 201


def test_the_default_bound_is_the_number_of_cpus(app):
    import os

    assert app.state.password_checks.workers == (os.cpu_count() or 1)
    assert app.state.settings.password_checks == (os.cpu_count() or 1)
