"""Shared fixtures: a real database with a small known world, the real ASGI app.

The database is an SQLite file, or with ``--backend postgresql`` (or
``FIELDLEDGER_TEST_BACKEND=postgresql``) a database of its own on a throw-away
PostgreSQL cluster (tests/pg_cluster.py), copied from a template built once per run.
Tests marked ``sqlite_only`` are left out of a PostgreSQL run.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from dataclasses import dataclass, field

import argon2
import pytest
from starlette.testclient import TestClient

from server import auth
from server.app import create_app, photos_dir
from server.areas import insert_area
from server.db import immediate, open_database
from server.ledger import workflow
from server.timeutil import now_iso
from tests import pg_cluster

BACKENDS = ("sqlite", "postgresql")


def pytest_addoption(parser):
    parser.addoption(
        "--backend", choices=BACKENDS,
        default=os.environ.get("FIELDLEDGER_TEST_BACKEND", "sqlite"),
        help="the database the tests' ledger lives in: an SQLite file (default) or a"
             " throw-away PostgreSQL cluster",
    )


def _left_out_on_postgresql(item) -> bool:
    """A PostgreSQL run leaves out what tests SQLite itself, the browser tests but those
    marked ``both_backends`` (the browser sees no backend), and the ``postgres`` tests,
    which make their own PostgreSQL databases and so ran in the SQLite run already."""
    keywords = item.keywords
    return ("sqlite_only" in keywords or "postgres" in keywords
            or ("browser" in keywords and "both_backends" not in keywords))


def pytest_collection_modifyitems(config, items):
    if config.getoption("backend") != "postgresql":
        return
    left_out = [item for item in items if _left_out_on_postgresql(item)]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not _left_out_on_postgresql(item)]


def pytest_report_header(config):
    return f"database backend: {config.getoption('backend')}"

PASSWORD = "secret-pass-1"

# One user per role, plus a second office user scoped to one district and a
# second field official and handler, so scope boundaries can be tested.
USERS = {
    "admin": ("admin", "city", None),
    "office": ("office", "city", None),
    "office_d1": ("office", "d1", None),
    "leader": ("leader", "city", None),
    "leader_d2": ("leader", "d2", None),
    "field1": ("field", "t1", None),
    "field2": ("field", "t2", None),
    "handler1": ("handler", "city", "u1"),
    "handler2": ("handler", "city", "u2"),
    "admin_d2": ("admin", "d2", None),
}
ROLE_USERS = {
    "field": "field1",
    "office": "office",
    "handler": "handler1",
    "leader": "leader",
    "admin": "admin",
}


@pytest.fixture(autouse=True, scope="session")
def cheap_password_hashing():
    auth.set_hasher(argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


def _settings(environment) -> dict[str, str]:
    return {name: value for name, value in environment.items()
            if name.startswith("FIELDLEDGER_")}


@pytest.fixture(autouse=True)
def no_leaked_settings():
    """``fieldledger serve`` hands its settings to uvicorn's workers in ``os.environ``; a
    test that runs it in the test process must give it a copy (``own_environment``). A
    leaked FIELDLEDGER_PHOTOS or FIELDLEDGER_DB would reach every server started later."""
    before = _settings(os.environ)
    yield
    leaked = _settings(os.environ)
    os.environ.update(before)
    for name in leaked.keys() - before.keys():
        del os.environ[name]
    assert leaked == before, f"the test left FIELDLEDGER_ settings in os.environ: {leaked}"


@pytest.fixture
def own_environment(monkeypatch):
    """A copy of ``os.environ`` for this test: what it sets there leaves with it."""
    monkeypatch.setattr(os, "environ", os.environ.copy())


@dataclass
class World:
    areas: dict[str, int] = field(default_factory=dict)
    units: dict[str, int] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    visits: dict[str, str] = field(default_factory=dict)
    category: int = 0


def _uuid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def build_world(db) -> World:
    world = World()
    now = now_iso()
    with immediate(db):
        a = world.areas
        a["city"] = insert_area(db, "370100", "青川市", 1, None)
        a["d1"] = insert_area(db, "370102", "东城区", 2, a["city"])
        a["d2"] = insert_area(db, "370103", "西湖区", 2, a["city"])
        a["t1"] = insert_area(db, "370102001", "杏花街道", 3, a["d1"])
        a["t2"] = insert_area(db, "370103001", "白石镇", 3, a["d2"])
        a["v1"] = insert_area(db, "370102001001", "幸福社区", 4, a["t1"])
        a["v2"] = insert_area(db, "370103001001", "杏花村", 4, a["t2"])
        a["g1"] = insert_area(db, "370102001001001", "第一网格", 5, a["v1"])
        world.units["u1"] = (
            db["units"]
            .insert(
                {
                    "name": "住建局",
                    "area_id": a["city"],
                    "contact_name": "王强",
                    "contact_phone": "0531-1234567",
                }
            )
            .last_pk
        )
        world.units["u2"] = (
            db["units"]
            .insert(
                {
                    "name": "水务集团",
                    "area_id": a["city"],
                    "contact_name": "李梅",
                    "contact_phone": "0531-7654321",
                }
            )
            .last_pk
        )
        world.category = (
            db["categories"]
            .insert(
                {
                    "code": "water",
                    "name": "供水",
                    "default_unit_id": world.units["u2"],
                    "time_limit_days": 10,
                }
            )
            .last_pk
        )
        password_hash = auth.hash_password(PASSWORD)
        for username, (role, area, unit) in USERS.items():
            world.users[username] = (
                db["users"]
                .insert(
                    {
                        "username": username,
                        "display_name": f"测试{username}",
                        "phone": "",
                        "roles": role,
                        "area_id": a[area],
                        "unit_id": world.units[unit] if unit else None,
                        "password_hash": password_hash,
                        "active": 1,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                .last_pk
            )
        for n, (key, author, area) in enumerate(
            [("v1", "field1", "v1"), ("v2", "field2", "v2")], start=1
        ):
            world.visits[key] = _uuid(100 + n)
            db["visits"].insert(
                {
                    "id": world.visits[key],
                    "author_id": world.users[author],
                    "area_id": a[area],
                    "place": "村委会",
                    "method": "sbls",
                    "checklist": json.dumps(["no_notice"]),
                    "started_at": now,
                    "ended_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        # p1: field1's own area, not yet accepted.
        # p2: field2's area, assigned to unit u2.
        # p3: a grid inside district d1, reported by field2 (outside field2's own area), unit u1.
        for n, (key, reporter, area, status, unit, description) in enumerate(
            [
                ("p1", "field1", "v1", "submitted", None, "幸福社区3号楼漏水，墙面渗水"),
                ("p2", "field2", "v2", "dispatched", "u2", "杏花村自来水水压不足"),
                ("p3", "field2", "g1", "handling", "u1", "第一网格小区物业不作为，路灯不亮"),
            ],
            start=1,
        ):
            world.problems[key] = _uuid(n)
            db["problems"].insert(
                {
                    "id": world.problems[key],
                    "reporter_id": world.users[reporter],
                    "area_id": a[area],
                    "description": description,
                    "status": status,
                    "lead_unit_id": world.units[unit] if unit else None,
                    "category_id": world.category,
                    "ledger_no": None if status == "submitted" else f"ZF-2026-{n:06d}",
                    "found_at": now,
                    "created_at": now,
                    "updated_at": now,
                    "visit_id": world.visits["v1"] if key == "p1" else None,
                }
            )
            if status != "submitted":
                db.execute(
                    "INSERT INTO ledger_counters (year, last_no) VALUES (2026, ?)"
                    " ON CONFLICT(year) DO UPDATE SET last_no = excluded.last_no",
                    [n],
                )
            db["problem_events"].insert(
                {
                    "id": _uuid(1000 + n),
                    "problem_id": world.problems[key],
                    "kind": "reported",
                    "actor_id": world.users[reporter],
                    "at": now,
                    "to_status": "submitted",
                }
            )
    return world


@pytest.fixture(scope="session")
def postgres_url():
    """The URL of a database on a throw-away PostgreSQL cluster, one per test run."""
    with pg_cluster.cluster() as cluster:
        yield cluster.url


@pytest.fixture(scope="session")
def backend(request) -> str:
    return request.config.getoption("backend")


@pytest.fixture(scope="session")
def pg_databases(postgres_url):
    """Makes the tests' databases on the cluster; ``empty`` is a migrated one to copy."""
    databases = pg_cluster.Databases(postgres_url)
    name = databases.create(name="fl_empty")
    open_database(databases.url_of(name)).close()
    databases.empty = name
    yield databases
    databases.close()


@pytest.fixture
def db_path(request, tmp_path, backend):
    """Where the test's database lives: a file path, or a postgresql:// URL of a migrated,
    empty database of its own (dropped after the test)."""
    if backend == "sqlite":
        return tmp_path / "fieldledger.db"
    databases = request.getfixturevalue("pg_databases")
    name = databases.create(template=databases.empty)
    request.addfinalizer(lambda: databases.drop(name))
    return databases.url_of(name)


@pytest.fixture
def photos_folder(request, db_path, tmp_path):
    return photos_folder_of(request, db_path, tmp_path)


def new_database(request, folder, name: str):
    """A database for a fixture of wider scope than ``db_path``'s: an SQLite file ``name``
    in ``folder``, or on a PostgreSQL run a new, migrated database of the cluster (dropped
    when ``request``'s scope ends)."""
    if request.config.getoption("backend") == "sqlite":
        return folder / name
    databases = request.getfixturevalue("pg_databases")
    dbname = databases.create(template=databases.empty)
    request.addfinalizer(lambda: databases.drop(dbname))
    return databases.url_of(dbname)


def photos_folder_of(request, database, folder):
    """The app's photos folder: beside the SQLite file as by default; on PostgreSQL, which
    has no file to put it beside, ``photos`` in ``folder``."""
    if request.config.getoption("backend") == "sqlite":
        return photos_dir(database)
    return folder / "photos"


@pytest.fixture(scope="session")
def world_template(request, tmp_path_factory, cheap_password_hashing, backend):
    """The world, built once per test run; each test gets its own copy of the database."""
    if backend == "sqlite":
        target = tmp_path_factory.mktemp("world") / "fieldledger.db"
    else:
        databases = request.getfixturevalue("pg_databases")
        target = databases.create(template=databases.empty, name="fl_world")
    db = open_database(target if backend == "sqlite" else databases.url_of(target))
    try:
        return target, build_world(db)
    finally:
        db.close()


@pytest.fixture
def world(request, db_path, world_template, backend) -> World:
    template, built = world_template
    if backend == "sqlite":
        shutil.copyfile(template, db_path)
    else:
        databases = request.getfixturevalue("pg_databases")
        name = pg_cluster.dbname_of(db_path)
        databases.drop(name)
        databases.create(template=template, name=name)
    return copy.deepcopy(built)


@pytest.fixture
def app(db_path, world, photos_folder):
    return create_app(db_path, photos=photos_folder)


@pytest.fixture
def client(app):
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def db(db_path, world):
    """A separate connection for checking what the app wrote."""
    connection = open_database(db_path)
    yield connection
    connection.close()


def csrf_of(client: TestClient) -> str:
    if "fl_csrf" not in client.cookies:
        client.get("/login")
    return client.cookies["fl_csrf"]


def login(client: TestClient, username: str, password: str = PASSWORD):
    token = csrf_of(client)
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token},
        follow_redirects=False,
    )


def post_form(client: TestClient, url: str, data: dict | None = None, **kwargs):
    """POST a form with the CSRF token, as a browser would."""
    return client.post(
        url, data={**(data or {}), "csrf_token": csrf_of(client)}, follow_redirects=False, **kwargs
    )


@pytest.fixture
def login_as(app):
    """A function that returns a TestClient signed in as the given user."""
    clients = []

    def make(username: str) -> TestClient:
        test_client = TestClient(app)
        test_client.__enter__()
        clients.append(test_client)
        response = login(test_client, username)
        assert response.status_code == 303, response.text
        return test_client

    yield make
    for test_client in clients:
        test_client.__exit__(None, None, None)


@pytest.fixture
def admin(login_as):
    return login_as("admin")


@pytest.fixture
def admin_d2(login_as):
    return login_as("admin_d2")


@pytest.fixture
def act(db, world):
    """act(username, problem_key_or_id, action, **data) applies one workflow action as that
    user, in a write transaction, and returns the problem row."""

    def run(username, problem, action, **data):
        actor = auth.load_user(db, world.users[username])
        with immediate(db):
            return workflow.apply(db, actor, world.problems.get(problem, problem), action, data)

    return run


def api_login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    response = client.post(
        "/api/login", json={"username": username, "password": password, "device_name": "测试手机"}
    )
    assert response.status_code == 201, response.text
    return response.json()["token"]


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium under Playwright, for a module's browser tests (tests/live.py)."""
    from playwright.sync_api import sync_playwright

    from tests.live import launch_chromium

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()
