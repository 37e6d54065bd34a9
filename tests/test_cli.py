"""The fieldledger command."""

from __future__ import annotations

import pytest

from server import auth
from server.app import CPUS, app_from_environment
from server.cli import main
from server.db import open_database


@pytest.fixture(autouse=True)
def each_test_owns_its_environment(own_environment):
    """``serve`` hands its settings to the workers through the environment."""


@pytest.fixture
def factory():
    """``server.app:app_from_environment`` as a worker calls it (each app's store is closed
    after the test)."""
    apps = []
    yield lambda: apps.append(app_from_environment()) or apps[-1]
    for app in apps:
        app.state.store.close()


@pytest.fixture
def started(monkeypatch):
    """What ``serve`` would have started: uvicorn's options, and the app its factory makes."""
    import uvicorn

    options = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **given: options.update(app=app, **given))
    return options


def test_create_user_and_sign_in(db_path, world, capsys):
    code = main(["--db", str(db_path), "create-user", "wang", "--roles", "field,office",
                 "--area", "370102", "--password", "long-enough-1", "--display-name", "王伟"])
    assert code == 0
    db = open_database(db_path)
    row = next(db["users"].rows_where("username = ?", ["wang"]))
    assert row["roles"] == "field,office"
    assert auth.verify_password(row["password_hash"], "long-enough-1")


def test_create_user_reports_bad_input_and_saves_nothing(db_path, world, capsys):
    code = main(["--db", str(db_path), "create-user", "x", "--roles", "boss",
                 "--area", "999", "--password", "short"])
    assert code == 2
    err = capsys.readouterr().err
    assert "roles" in err and "password" in err
    assert open_database(db_path)["users"].count == len(world.users)


def test_create_user_needs_areas_first(db_path, capsys):
    code = main(["--db", str(db_path), "create-user", "admin", "--roles", "admin",
                 "--area", "1", "--password", "long-enough-1"])
    assert code == 1
    assert "import" in capsys.readouterr().err


def test_import_command_all_or_nothing(db_path, world, tmp_path, capsys):
    good = tmp_path / "units.csv"
    good.write_text("单位名称,所属区域\n东城区体育局,370102\n", encoding="utf-8-sig")
    assert main(["--db", str(db_path), "import", "units", str(good)]) == 0
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "单位名称,所属区域\n东城区档案馆,370102\n无效单位,999999\n", encoding="utf-8-sig"
    )
    assert main(["--db", str(db_path), "import", "units", str(bad)]) == 2
    assert "row 3" in capsys.readouterr().err
    names = {row["name"] for row in open_database(db_path)["units"].rows}
    assert "东城区体育局" in names and "东城区档案馆" not in names


CALENDAR_2027 = "日期,类型,说明\n2027-01-01,休,元旦\n2027-02-13,班,春节调休\n"


def test_calendar_import_enters_the_year_and_recomputes(db_path, db, world, tmp_path, capsys):
    db["problems"].update(world.problems["p2"], {"deadline": "2027-01-01",
                                                 "deadline_provisional": 1})
    db["problem_events"].insert({
        "id": "00000000-0000-4000-8000-000000009001", "problem_id": world.problems["p2"],
        "kind": "dispatch", "at": "2026-12-06T02:00:00+00:00",
        "data": '{"time_limit_days": 20, "deadline": "2027-01-01", "provisional": true}'})
    path = tmp_path / "2027.csv"
    path.write_bytes(CALENDAR_2027.encode("gbk"))
    assert main(["--db", str(db_path), "calendar", "import", str(path), "--year", "2027"]) == 0
    out = capsys.readouterr().out
    assert "Entered 2027: 1 holidays, 1 adjusted working days" in out
    assert "ZF-2026-000002: 2027-01-01 -> 2027-01-04" in out
    db = open_database(db_path)
    assert db["problems"].get(world.problems["p2"])["deadline"] == "2027-01-04"
    record = db["calendar_years"].get(2027)
    assert (record["entered_by"], record["source"]) == (None, "2027.csv")
    [event] = db.query("SELECT actor_id FROM problem_events WHERE kind = 'deadline_recomputed'")
    assert event["actor_id"] is None


def test_calendar_import_refuses_a_bad_file_whole(db_path, world, tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("2027-01-01,休\n2027-02-30,休\n2028-01-01,班\n", encoding="utf-8")
    assert main(["--db", str(db_path), "calendar", "import", str(path)]) == 2
    err = capsys.readouterr().err
    assert "line 2:" in err and "2027-02-30" in err and "line 3:" in err
    assert "line 1" not in err
    db = open_database(db_path)
    assert db.execute("SELECT count(*) FROM calendar_days").fetchone()[0] == 0
    assert main(["--db", str(db_path), "calendar", "import", str(tmp_path / "none.csv")]) == 2


def test_calendar_export_round_trip(db_path, world, tmp_path, capsys):
    path = tmp_path / "2027.csv"
    path.write_text(CALENDAR_2027, encoding="utf-8")
    assert main(["--db", str(db_path), "calendar", "import", str(path)]) == 0
    out = tmp_path / "out.csv"
    assert main(["--db", str(db_path), "calendar", "export", "2027", "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8-sig").splitlines() == CALENDAR_2027.splitlines()
    capsys.readouterr()
    assert main(["--db", str(db_path), "calendar", "export", "2026"]) == 0
    assert "2026-10-10,班" in capsys.readouterr().out
    assert main(["--db", str(db_path), "calendar", "export", "99"]) == 2


def test_revoke_devices(db_path, world, client, capsys):
    from tests.conftest import api_login

    token = api_login(client, "field1")
    assert main(["--db", str(db_path), "revoke-devices", "field1", "--wipe"]) == 0
    response = client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert response.json()["error"]["code"] == "device_wiped"


def test_serve_and_demo_print_the_field_app_address(db_path, world, photos_folder, capsys,
                                                    started):
    for command in ("serve", "demo"):
        assert main(["--db", str(db_path), "--photos", str(photos_folder), command,
                     "--host", "0.0.0.0", "--port", "8123"]) == 0
        out = capsys.readouterr().out
        assert "http://0.0.0.0:8123/app/" in out and "手机走访 App" in out


def test_serve_takes_the_client_address_from_the_trusted_proxy_and_bounds_password_checks(
    db_path, world, photos_folder, started, factory, monkeypatch
):
    monkeypatch.setenv("FIELDLEDGER_PHOTOS", str(photos_folder))
    assert main(["--db", str(db_path), "serve"]) == 0
    assert (started["app"], started["factory"]) == ("server.app:app_from_environment", True)
    assert started["proxy_headers"] is True
    assert started["forwarded_allow_ips"] == "127.0.0.1"
    checks = factory().state.password_checks
    assert checks.workers == CPUS
    assert checks.capacity == 33 * checks.workers  # each check and 32 waiting for it
    assert main(["--db", str(db_path), "serve", "--forwarded-allow-ips", "10.0.0.2",
                 "--password-checks", "3", "--password-check-queue", "4"]) == 0
    assert started["forwarded_allow_ips"] == "10.0.0.2"
    checks = factory().state.password_checks
    assert (checks.workers, checks.capacity) == (3, 7)


def test_the_factory_serves_the_database_and_settings_serve_was_given(db_path, world, started,
                                                                      factory, tmp_path):
    assert main(["--db", str(db_path), "--photos", str(tmp_path / "shared"), "serve",
                 "--secure-cookies", "--pull-concurrency", "5", "--upload-concurrency", "6"]) == 0
    assert started["workers"] == 1
    app = factory()
    assert _opened(app.state.store) == str(db_path)
    assert app.state.photos.root == tmp_path / "shared"
    assert app.state.settings.secure_cookies is True
    assert (app.state.gates["pull"].capacity, app.state.gates["upload"].capacity) == (5, 6)


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_several_workers_on_sqlite_are_refused_and_nothing_starts(command, started, tmp_path,
                                                                  monkeypatch, capsys):
    err = _refused(["--db", "ledger.db", command, "--workers", "2"], tmp_path, monkeypatch,
                   capsys)
    assert err == ("fieldledger: --workers 2: an SQLite database is written by one process;"
                   " several workers need PostgreSQL (--db postgresql://...)\n")
    assert started == {}


def _opened(store) -> str:
    """What a store was opened on: an SQLite file's path, or a PostgreSQL URL."""
    return str(getattr(store, "path", None) or store.url)


@pytest.mark.sqlite_only  # the default folder sits beside the SQLite file
def test_photos_names_the_photos_folder(db_path, world, started, factory, tmp_path,
                                        monkeypatch):
    monkeypatch.setenv("FIELDLEDGER_PHOTOS", str(tmp_path / "from-env"))
    assert main(["--db", str(db_path), "serve"]) == 0
    assert factory().state.photos.root == tmp_path / "from-env"
    assert main(["--db", str(db_path), "--photos", str(tmp_path / "given"), "serve"]) == 0
    assert factory().state.photos.root == tmp_path / "given"  # --photos wins
    assert (tmp_path / "given" / "uploads").is_dir()
    monkeypatch.delenv("FIELDLEDGER_PHOTOS")
    assert main(["--db", str(db_path), "serve"]) == 0
    assert factory().state.photos.root == tmp_path / "fieldledger.db.photos"


def _refused(argv, tmp_path, monkeypatch, capsys) -> str:
    """Runs the command in an empty folder; it must refuse with exit 2, create nothing
    and say why on one line."""
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
    return captured.err


POSTGRES_URL = "postgresql://fl:secret@db1:5432/ledger"
PHOTOS_REFUSAL = ("fieldledger: --photos DIR (or FIELDLEDGER_PHOTOS) is required with a"
                  " PostgreSQL database: the photos folder cannot sit beside a file\n")


@pytest.mark.parametrize("command", [["serve"], ["demo"], ["serve", "--workers", "2"]],
                         ids=" ".join)
def test_postgresql_without_photos_is_refused_and_nothing_starts(command, started, tmp_path,
                                                                 monkeypatch, capsys):
    monkeypatch.delenv("FIELDLEDGER_PHOTOS", raising=False)
    err = _refused(["--db", POSTGRES_URL, *command], tmp_path, monkeypatch, capsys)
    assert err == PHOTOS_REFUSAL  # refused before any connection to db1 is tried
    assert started == {}


@pytest.mark.parametrize(
    ("url", "says"),
    [("postgresql://fl:secret@db1:70000/ledger", "'70000' is not a port number"),
     ("postgresql://fl:secret@db1/ledger?colour=blue", "invalid URI query parameter")],
)
def test_a_malformed_postgresql_url_is_refused_without_its_password(url, says, tmp_path,
                                                                   monkeypatch, capsys):
    err = _refused(["--db", url, "seed-demo"], tmp_path, monkeypatch, capsys)
    assert err.startswith("fieldledger: --db postgresql://fl:***@db1") and says in err
    assert "secret" not in err


@pytest.mark.parametrize(
    "url", ["mysql://root@localhost/ledger", "http://example.org/x.db", "sqlite:///ledger.db"]
)
def test_other_urls_are_refused_naming_what_is_accepted(url, tmp_path, monkeypatch, capsys):
    err = _refused(["--db", url, "seed-demo"], tmp_path, monkeypatch, capsys)
    assert f"{url.split('://')[0]}:// is not a database FieldLedger can open" in err
    assert ("give the path of an SQLite file, such as data/fieldledger.db, or a postgresql://"
            " URL") in err


def test_the_process_exits_2(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    environment = {**os.environ, "PYTHONPATH": str(root)}
    environment.pop("FIELDLEDGER_PHOTOS", None)
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "--db", POSTGRES_URL, "serve"], cwd=tmp_path,
        env=environment, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr == PHOTOS_REFUSAL and done.stdout == ""
    assert list(tmp_path.iterdir()) == []


@pytest.mark.sqlite_only  # a path in FIELDLEDGER_DB or --db creates an SQLite file
def test_fieldledger_db_is_read_by_the_same_rule(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FIELDLEDGER_DB", "mysql://fl:secret@db1/ledger")
    err = _refused(["revoke-devices", "field1"], tmp_path, monkeypatch, capsys)
    assert err.startswith("fieldledger: FIELDLEDGER_DB mysql://fl:***@db1/ledger: ")
    monkeypatch.setenv("FIELDLEDGER_DB", str(tmp_path / "from-env" / "ledger.db"))
    assert main(["revoke-devices", "nobody"]) == 0
    assert (tmp_path / "from-env" / "ledger.db").is_file()
    capsys.readouterr()
    assert main(["--db", "given.db", "revoke-devices", "nobody"]) == 0  # --db wins
    assert (tmp_path / "given.db").is_file()


@pytest.mark.sqlite_only  # creates SQLite files
def test_a_path_still_opens_sqlite_creating_its_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FIELDLEDGER_DB", raising=False)
    assert main(["revoke-devices", "nobody"]) == 0
    assert (tmp_path / "data" / "fieldledger.db").is_file()
    assert main(["--db", "台账/ledger.db", "revoke-devices", "nobody"]) == 0
    assert (tmp_path / "台账" / "ledger.db").is_file()


def test_simulate_devices_opens_no_database(tmp_path, monkeypatch, capsys):
    import sync.simulate

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sync.simulate, "simulate", lambda *a, **k: {"errors": 0, "unsent": 0})
    monkeypatch.setattr(sync.simulate, "format_report", lambda report: "report")
    assert main(["--db", POSTGRES_URL, "simulate-devices", "--devices", "1"]) == 0
    assert list(tmp_path.iterdir()) == []


# --- Every command on PostgreSQL ------------------------------------------------------


@pytest.fixture
def fresh_postgres(pg_databases, request):
    """The URL of a new, empty database (no schema yet), with a password the cluster's
    trust authentication ignores and no message may show."""
    name = pg_databases.create()
    request.addfinalizer(lambda: pg_databases.drop(name))
    url = pg_databases.url_of(name)
    user, at, rest = url.partition("://")[2].partition("@")
    return f"postgresql://{user}:s3cret-pw@{rest}" if at else url


def _tables(url: str) -> set[str]:
    import psycopg

    with psycopg.connect(url) as conn:
        return {name for (name,) in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


AREAS_CSV = ("区划编码,区域名称,层级,上级区域\n370100,青川市,1,\n370102,东城区,2,370100\n"
             "370102001,杏花街道,3,370102\n")


def _import_areas(url: str, tmp_path) -> None:
    areas = tmp_path / "areas.csv"
    areas.write_text(AREAS_CSV, encoding="utf-8-sig")
    assert main(["--db", url, "import", "areas", str(areas)]) == 0


@pytest.mark.postgres
def test_seed_demo_then_serve_with_two_workers_on_postgresql(fresh_postgres, tmp_path, capsys):
    import urllib.request

    from tests.live import running_server

    assert main(["--db", fresh_postgres, "seed-demo", "--problems", "40"]) == 0
    out = capsys.readouterr().out
    assert "Seeded 40 problems" in out and "s3cret-pw" not in out
    db = open_database(fresh_postgres)
    try:
        assert db.execute("SELECT count(*) FROM problems").fetchone()[0] == 40
        users = db.execute("SELECT max(id) FROM users").fetchone()[0]
        assert db["users"].count == users > 10
    finally:
        db.close()
    assert main(["--db", fresh_postgres, "seed-demo"]) == 1  # already holds data
    assert "s3cret-pw" not in capsys.readouterr().err
    # The seed gave users explicit ids: the next account's id follows them.
    assert main(["--db", fresh_postgres, "create-user", "newcomer", "--roles", "office",
                 "--area", "379900000000", "--password", "long-enough-1"]) == 0
    assert f"(id {users + 1})" in capsys.readouterr().out
    log = tmp_path / "server.log"
    with running_server(fresh_postgres, options=["--workers", "2"], log=log,
                        env={"FIELDLEDGER_PHOTOS": str(tmp_path / "photos")}) as url:
        for _ in range(4):  # whichever worker answers
            with urllib.request.urlopen(f"{url}/login", timeout=10) as response:
                assert response.status == 200
    served = log.read_text(errors="replace")
    assert "s3cret-pw" not in served and (tmp_path / "photos" / "uploads").is_dir()


@pytest.mark.postgres
def test_demo_seeds_postgresql_and_serves_it_with_several_workers(fresh_postgres, tmp_path,
                                                                  started, factory, capsys):
    photos = tmp_path / "photos"
    assert main(["--db", fresh_postgres, "--photos", str(photos), "demo", "--problems", "20",
                 "--workers", "3"]) == 0
    out = capsys.readouterr().out
    assert "Demo accounts" in out and "s3cret-pw" not in out
    assert started["workers"] == 3
    app = factory()
    assert app.state.photos.root == photos
    assert app.state.settings.pull_concurrency == max(1, 4 * CPUS // 3)
    assert main(["--db", fresh_postgres, "--photos", str(photos), "demo"]) == 0  # not again
    db = open_database(fresh_postgres)
    try:
        assert db.execute("SELECT count(*) FROM problems").fetchone()[0] == 20
    finally:
        db.close()


@pytest.mark.postgres
def test_import_create_user_and_revoke_devices_on_postgresql(fresh_postgres, tmp_path, capsys):
    _import_areas(fresh_postgres, tmp_path)
    units = tmp_path / "units.csv"
    units.write_text("单位名称,所属区域\n东城区体育局,370102\n", encoding="utf-8-sig")
    assert main(["--db", fresh_postgres, "import", "units", str(units)]) == 0
    bad = tmp_path / "bad.csv"
    bad.write_text("单位名称,所属区域\n东城区档案馆,370102\n无效单位,999999\n",
                   encoding="utf-8-sig")
    assert main(["--db", fresh_postgres, "import", "units", str(bad)]) == 2
    assert "row 3" in capsys.readouterr().err
    assert main(["--db", fresh_postgres, "create-user", "wang", "--roles", "field",
                 "--area", "370102001", "--password", "long-enough-1"]) == 0
    assert main(["--db", fresh_postgres, "create-user", "WANG", "--roles", "field",
                 "--area", "370102001", "--password", "long-enough-1"]) == 2  # NOCASE
    db = open_database(fresh_postgres)
    try:
        assert [row["name"] for row in db["units"].rows] == ["东城区体育局"]
        assert db["areas"].count == 3
        user = next(db["users"].rows_where("username = ?", ["wang"]))
        assert auth.verify_password(user["password_hash"], "long-enough-1")
        with db.write_transaction():
            device_ids = [auth.register_device(db, user["id"], f"手机{n}")[0] for n in (1, 2)]
    finally:
        db.close()
    capsys.readouterr()
    assert main(["--db", fresh_postgres, "revoke-devices", "Wang", "--wipe"]) == 0
    assert capsys.readouterr().out == "Revoked 2 device(s) of Wang.\n"
    db = open_database(fresh_postgres)
    try:
        for device_id in device_ids:
            assert db["devices"].get(device_id)["revoked_at"] is not None
    finally:
        db.close()


@pytest.mark.postgres
def test_calendar_import_and_export_on_postgresql(fresh_postgres, tmp_path, capsys):
    path = tmp_path / "2027.csv"
    path.write_bytes(CALENDAR_2027.encode("gbk"))
    assert main(["--db", fresh_postgres, "calendar", "import", str(path)]) == 0
    assert "Entered 2027: 1 holidays, 1 adjusted working days" in capsys.readouterr().out
    out = tmp_path / "out.csv"
    assert main(["--db", fresh_postgres, "calendar", "export", "2027", "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8-sig").splitlines() == CALENDAR_2027.splitlines()


@pytest.mark.postgres
def test_simulate_devices_against_a_served_postgresql_app(fresh_postgres, tmp_path, capsys):
    import json

    from tests.live import running_server

    assert main(["--db", fresh_postgres, "seed-demo", "--problems", "20"]) == 0
    capsys.readouterr()
    with running_server(fresh_postgres, options=["--workers", "2"], log=tmp_path / "server.log",
                        env={"FIELDLEDGER_PHOTOS": str(tmp_path / "photos")}) as url:
        code = main(["simulate-devices", "--url", url, "--devices", "3", "--mutations", "3",
                     "--photos", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, (tmp_path / "server.log").read_text(errors="replace")[-3000:]
    assert (report["errors"], report["unsent"], report["devices_ok"]) == (0, 0, 3)
    assert report["mutations_acknowledged"] == 9
    db = open_database(fresh_postgres)
    try:
        assert db.execute("SELECT count(*) FROM attachments").fetchone()[0] > 0
    finally:
        db.close()


@pytest.mark.postgres
@pytest.mark.parametrize("command", ["serve", "demo"])
def test_postgresql_without_photos_leaves_the_database_untouched(command, fresh_postgres,
                                                                 started, capsys, monkeypatch):
    monkeypatch.delenv("FIELDLEDGER_PHOTOS", raising=False)
    assert main(["--db", fresh_postgres, command, "--workers", "2"]) == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", PHOTOS_REFUSAL)
    assert started == {} and _tables(fresh_postgres) == set()
