"""``fieldledger --db FILE copy-to postgresql://…`` (server/db/copy.py): an SQLite ledger
copied into PostgreSQL, verified, and served from there."""

from __future__ import annotations

import re

import psycopg
import pytest
from starlette.testclient import TestClient

from server import audit, auth, drafts
from server.app import create_app, photos_dir
from server.calendar_entry import apply_year, parse_file
from server.cli import main
from server.db import immediate, open_database
from server.db.copy import canonical, copy_to, tables, verify
from server.demo import DEMO_PASSWORD, seed_demo
from server.ledger import search, tracking, workflow
from sync.client import SyncClient
from tests.conftest import csrf_of
from tests.sync_helpers import asgi_transport, jpeg, new_id, problem_args, visit_args

pytestmark = pytest.mark.postgres

CALENDAR_2027 = "日期,类型,说明\n2027-01-01,休,元旦\n2027-02-13,班,春节调休\n"


def seeded(path, problems: int = 40):
    db = open_database(path)
    seed_demo(db, seed=3, problems=problems)
    return db


def demo_phone(client: TestClient, username: str) -> SyncClient:
    phone = SyncClient(asgi_transport(client), sleep=lambda _s: None)
    phone.login(username, DEMO_PASSWORD)
    return phone


def user_id(db, username: str) -> int:
    return db.execute("SELECT id FROM users WHERE username = ?", [username]).fetchone()[0]


def act(db, username: str, problem_id: str, action: str, **data) -> dict:
    actor = auth.load_user(db, user_id(db, username))
    with immediate(db):
        return workflow.apply(db, actor, problem_id, action, data)


def fields(records: dict[str, dict]) -> dict[str, dict]:
    """A phone's records without PostgreSQL's rowid column, which a pull there sends along
    with visits and diary entries whether the ledger was copied or not."""
    return {key: {name: value for name, value in record.items() if name != "rowid"}
            for key, record in records.items()}


def empty_tables(db) -> list[str]:
    return [table.name for table in tables(db)
            if not db.execute(f'SELECT EXISTS (SELECT 1 FROM "{table.name}")').fetchone()[0]]


@pytest.fixture
def target(pg_databases):
    """The URL of a new, empty (not yet migrated) PostgreSQL database."""
    name = pg_databases.create()
    yield pg_databases.url_of(name)
    pg_databases.drop(name)


@pytest.fixture
def full_ledger(tmp_path):
    """An SQLite ledger in which every table of the schema holds rows, written by the app:
    the demo city, a phone's push with a photo and a refused mutation, a sign-in, workflow
    actions, a supervision order, an issued report, a calendar year, a draft, a tracking
    request, an audit entry. Gives the file and the phone (its cursor taken on SQLite)."""
    path = tmp_path / "ledger.db"
    seeded(path, problems=30).close()
    app = create_app(path)
    with TestClient(app) as client:
        phone = demo_phone(client, "field")
        db = open_database(path)
        area = db.execute(
            "SELECT area_id FROM users WHERE username = 'field'").fetchone()[0]
        photo = phone.add_photo(jpeg(seed=5))
        visit = visit_args(area_id=area, photos=[photo])
        report = problem_args(area_id=area, visit_id=visit["id"], photos=[photo],
                              description="幸福小区路灯不亮，夜间出行不便")
        phone.capture("visit.save", visit)
        phone.capture("diary.save", {
            "id": new_id(), "person_kind": "resident", "content": "群众反映路灯不亮",
            "recorded_at": visit["started_at"], "visit_id": visit["id"]})
        phone.capture("problem.report", report)
        phone.capture("problem.note", {"id": new_id(), "problem_id": new_id(), "note": "无此问题",
                                       "at": "2026-05-02T10:00:00+08:00"})  # refused: unknown
        phone.sync()

        office = TestClient(app)
        for username, password in (("office", DEMO_PASSWORD), ("leader", "wrong-password")):
            office.post("/login", data={"username": username, "password": password,
                                        "csrf_token": csrf_of(office)}, follow_redirects=False)

        unit = db.execute("SELECT id FROM units ORDER BY id LIMIT 1").fetchone()[0]
        act(db, "office", report["id"], "accept")
        act(db, "office", report["id"], "dispatch", lead_unit_id=unit, time_limit_days="20")
        open_problem = db.execute(
            "SELECT id FROM problems WHERE status IN ('dispatched', 'handling')"
            " AND id <> ? ORDER BY rowid LIMIT 1", [report["id"]]).fetchone()[0]
        act(db, "office", open_problem, "supervise", note="请于三日内答复办理进度",
            answer_by="2030-01-01")

        csrf = office.cookies["fl_csrf"]
        root = db.execute("SELECT id FROM areas WHERE level = 1").fetchone()[0]
        issued = office.post("/reports", data={"csrf_token": csrf, "kind": "quarter",
                                               "period": "2026-04-01", "area": str(root)},
                             follow_redirects=False)
        assert issued.status_code == 303, issued.text
        office.close()

        office_id = user_id(db, "office")
        with immediate(db):
            apply_year(db, parse_file("2027.csv", CALENDAR_2027.encode()), office_id, "2027.csv")
            audit.record(db, office_id, "enter", "calendar", None, label="2027")
            drafts.put(db, office_id, f"/problems/{open_problem}/actions/remind",
                       [("note", "尽快办理")])
            tracking.count_request(db, "127.0.0.1", tracking.new_token())
        db.close()
    return path, phone


def test_a_seeded_ledger_is_copied_and_verified(tmp_path, target, capsys):
    source = tmp_path / "seeded.db"
    seeded(source).close()

    assert main(["--db", str(source), "copy-to", target]) == 0
    out = capsys.readouterr().out
    assert "Copied" in out and "holds what" in out
    assert "DIFFERS" not in out
    for line in ("problems", "changes", "stats_rollup = rebuild", "reason_rollup = rebuild",
                 "latest version", "search ("):
        assert f"\n{line}" in out

    lite, pg = open_database(source), open_database(target)
    try:
        checks = verify(lite, pg)
        assert all(check.ok for check in checks), [c for c in checks if not c.ok]
        assert {check.name for check in checks} >= {"problems", "stats_rollup = rebuild"}
        search_check = checks[-1]
        assert search_check.name.startswith("search (50 words)") and search_check.source_rows
    finally:
        lite.close()
        pg.close()


def test_a_ledger_with_every_table_filled_is_copied_whole(full_ledger, target):
    path, _phone = full_ledger
    lite = open_database(path)
    try:
        assert empty_tables(lite) == []
        counts = copy_to(lite, target)
        pg = open_database(target)
        try:
            assert all(counts.values()) and set(counts) == {t.name for t in tables(lite)}
            checks = verify(lite, pg)
            assert [check.name for check in checks if not check.ok] == []
            for table in ("problems", "problem_events", "visits", "diary_entries"):
                rowids = f"SELECT id, rowid FROM {table} ORDER BY id"
                assert pg.execute(rowids).fetchall() == lite.execute(rowids).fetchall()
            # Each problem's search words were worked out as it went in (m029's trigger).
            without_words = pg.execute(
                "SELECT count(*) FROM problems WHERE search_tokens IS DISTINCT FROM"
                " fl_search_tokens(description, place, resident_name, ledger_no)"
                " OR search_tokens = '{}'").fetchone()[0]
            assert without_words == 0
        finally:
            pg.close()
    finally:
        lite.close()


def test_the_app_on_postgresql_serves_the_copied_ledger(full_ledger, target, tmp_path):
    path, phone = full_ledger
    lite = open_database(path)
    copy_to(lite, target)
    copied_version = lite.execute("SELECT max(version) FROM changes").fetchone()[0]
    copied_rowid = lite.execute("SELECT max(rowid) FROM problems").fetchone()[0]
    copied_device = lite.execute("SELECT max(id) FROM devices").fetchone()[0]
    copied = lite.execute(
        "SELECT id, description FROM problems WHERE status = 'closed' ORDER BY rowid LIMIT 1"
    ).fetchone()
    lite.close()

    # The photos folder moves along, as docs/deployment.md tells.
    photos = tmp_path / "shared-photos"
    photos_dir(path).rename(photos)
    with TestClient(create_app(target, photos=photos)) as client:
        phone.transport = asgi_transport(client)  # the same phone, its cursor from SQLite
        phone.sync()
        fresh = demo_phone(client, "field")
        fresh.sync()
        for entity in ("problem", "visit", "diary", "area", "unit", "category"):
            assert fields(fresh.records(entity)) == fields(phone.records(entity)), entity
        assert phone.records("problem")

        report = problem_args(description="新华路窨井盖缺失，存在安全隐患")
        fresh.capture("problem.report", report)
        fresh.sync()
        phone.sync()
        assert report["id"] in phone.records("problem")

    pg = open_database(target)
    try:
        version, rowid = pg.execute(
            "SELECT c.version, p.rowid FROM changes c JOIN problems p ON p.id = c.entity_id"
            " WHERE c.entity = 'problem' AND c.entity_id = ?", [report["id"]]).fetchone()
        assert version > copied_version and rowid > copied_rowid
        assert pg.execute("SELECT max(id) FROM devices").fetchone()[0] > copied_device
        word = re.findall(r"[\u3400-\u9fff]{2,}", copied[1])[0][:2]
        condition = search.search_condition(pg, word)
        found = {row[0] for row in pg.execute(
            f"SELECT p.id FROM problems p WHERE {condition.sql}", condition.params)}
        assert copied[0] in found
    finally:
        pg.close()


def test_a_target_holding_a_ledger_is_refused(tmp_path, target, capsys):
    source = tmp_path / "seeded.db"
    seeded(source, problems=5).close()
    assert main(["--db", str(source), "copy-to", target]) == 0
    capsys.readouterr()

    assert main(["--db", str(source), "copy-to", target]) == 2
    err = capsys.readouterr().err
    assert "copy-to: the target database is not empty" in err and "problems" in err


def test_a_target_sorting_text_otherwise_is_refused(tmp_path, postgres_url, pg_databases,
                                                    capsys):
    source = tmp_path / "seeded.db"
    seeded(source, problems=5).close()
    name = "copy_wrong_collation"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8'"
                      " LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'")
    try:
        assert main(["--db", str(source), "copy-to", pg_databases.url_of(name)]) == 2
        err = capsys.readouterr().err
        assert "LC_COLLATE 'C'" in err and "byte order" in err
    finally:
        pg_databases.drop(name)


def seeded_with_first_problem(tmp_path, sql: str, value) -> tuple[str, str]:
    """A seeded SQLite file whose first problem ``sql`` changes (``?`` its value, ``?2`` its
    id; foreign keys off, as a file written without them): the file and the id."""
    source = tmp_path / "seeded.db"
    seeded(source, problems=5).close()
    lite = open_database(source)
    problem_id = lite.execute("SELECT id FROM problems ORDER BY rowid LIMIT 1").fetchone()[0]
    lite.execute("PRAGMA foreign_keys = OFF")
    with immediate(lite):
        lite.execute(sql, [value, problem_id])
    lite.close()
    return str(source), problem_id


def assert_nothing_copied(target) -> None:
    pg = open_database(target)
    try:
        assert pg.execute("SELECT count(*) FROM problems").fetchone()[0] == 0
        assert pg.execute("SELECT count(*) FROM areas").fetchone()[0] == 0
    finally:
        pg.close()


def test_a_text_holding_nul_refuses_the_copy_before_writing(tmp_path, target, capsys):
    source, problem_id = seeded_with_first_problem(
        tmp_path, "UPDATE problems SET place = ?1 WHERE id = ?2", "3号楼\x00东侧")

    assert main(["--db", source, "copy-to", target]) == 2
    err = capsys.readouterr().err
    assert "NUL" in err and f"problems (id='{problem_id}'): place" in err
    assert_nothing_copied(target)


def test_a_row_whose_parent_is_missing_refuses_the_copy_and_nothing_stays(tmp_path, target,
                                                                         capsys):
    """SQLite keeps foreign keys only where they were on; PostgreSQL checks every one."""
    source, _problem_id = seeded_with_first_problem(
        tmp_path, "UPDATE problems SET area_id = ?1 WHERE id = ?2", 987654)

    assert main(["--db", source, "copy-to", target]) == 2
    err = capsys.readouterr().err
    assert "a row of problems names what the SQLite file does not hold" in err
    assert "(area_id)=(987654)" in err and "Nothing was copied" in err
    assert_nothing_copied(target)


def test_the_copy_puts_back_every_foreign_key(full_ledger, target, pg_databases):
    """The copy takes the foreign keys off while rows go in (one join each to put them
    back is far quicker than a check per row): they end as the schema history made them."""
    path, _phone = full_ledger
    lite = open_database(path)
    try:
        copy_to(lite, target)
    finally:
        lite.close()
    copied, new = open_database(target), open_database(pg_databases.url_of(pg_databases.empty))
    try:
        assert len(foreign_keys(new)) > 30
        assert foreign_keys(copied) == foreign_keys(new)
    finally:
        copied.close()
        new.close()


def foreign_keys(pg) -> list[tuple]:
    return pg.execute(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), convalidated"
        " FROM pg_constraint WHERE contype = 'f' ORDER BY 1, 2").fetchall()


def test_a_postgresql_source_or_an_sqlite_target_is_refused(tmp_path, target, capsys):
    assert main(["--db", target, "copy-to", target]) == 2
    assert "is a PostgreSQL database; copy-to copies an SQLite file" in capsys.readouterr().err
    source = tmp_path / "seeded.db"
    assert main(["--db", str(source), "copy-to", str(tmp_path / "other.db")]) == 2
    assert "is not a postgresql:// URL" in capsys.readouterr().err
    assert main(["--db", str(source), "copy-to", target]) == 2
    assert f"no SQLite file at {source}" in capsys.readouterr().err
    assert not source.exists()


def test_verify_only_names_the_table_of_an_altered_row(tmp_path, target, capsys):
    source = tmp_path / "seeded.db"
    seeded(source, problems=5).close()
    assert main(["--db", str(source), "copy-to", target]) == 0
    assert main(["--db", str(source), "copy-to", target, "--verify-only"]) == 0
    assert "DIFFERS" not in capsys.readouterr().out

    pg = open_database(target)
    with immediate(pg):
        pg.execute("UPDATE users SET phone = '13800000000' WHERE username = 'office'")
    pg.close()
    assert main(["--db", str(source), "copy-to", target, "--verify-only"]) == 1
    captured = capsys.readouterr()
    differing = [line.split()[0] for line in captured.out.splitlines() if "DIFFERS" in line]
    assert differing == ["users"]
    assert "differs from" in captured.err and "users" in captured.err


def test_values_are_written_alike_whichever_backend_read_them():
    assert canonical(None) == b"N"
    assert canonical(1) != canonical("1") != canonical(1.0)
    assert canonical(0.1) == b"f0.1"
    assert canonical("a|b") == b"t3:a|b"
    assert canonical(b"\x00\xff") == canonical(memoryview(b"\x00\xff")) == b"b00ff"


def test_verify_only_against_a_database_never_copied_into_fails_naming_every_table(
        tmp_path, target, capsys):
    source = tmp_path / "seeded.db"
    seeded(source, problems=5).close()
    assert main(["--db", str(source), "copy-to", target, "--verify-only"]) == 1
    out = capsys.readouterr().out
    assert "problems" in out and "/absent" in out and "latest version" not in out


def test_an_unreachable_server_is_reported_in_one_line(tmp_path, capsys):
    source = tmp_path / "seeded.db"
    seeded(source, problems=5).close()
    url = f"postgresql://fieldledger:secret@/fieldledger?host={tmp_path / 'nowhere'}"
    assert main(["--db", str(source), "copy-to", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fieldledger: copy-to: postgresql://fieldledger:***@") and \
        len(err.strip().splitlines()) == 1 and "secret" not in err
