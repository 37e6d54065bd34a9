"""server/device_health.py: the health a phone reports with push and pull, the rule for a
phone at risk, the administrator's 设备 page, and the reference client reporting it."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest

from server import device_health
from server.device_health import BadHealth, parse, risks
from server.views import field_app
from sync.client import APP_VERSION, TransportError
from tests.sync_helpers import new_id, phone, problem_args

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
HEALTHY = {"app_version": "v1", "unsynced_mutations": 0, "unsynced_photos": 0,
           "oldest_unsynced_at": None, "storage_used": 10_000_000,
           "storage_quota": 100_000_000, "storage_persisted": True,
           "last_sync_at": "2026-12-06T11:00:00+00:00"}


def kinds(health: dict) -> list[str]:
    return [risk.kind for risk in risks(health, "v1", NOW)]


# The rule -------------------------------------------------------------------------------


def test_a_healthy_phone_has_no_risk():
    assert kinds(HEALTHY) == [] and risks(None, "v1") == []


def test_records_unsynced_for_more_than_a_day():
    stale = {**HEALTHY, "unsynced_mutations": 2, "unsynced_photos": 1,
             "oldest_unsynced_at": "2026-12-05T11:59:00+00:00"}
    assert kinds(stale) == ["unsynced"]
    assert risks(stale, "v1", NOW)[0].text == "3 条记录超过 24 小时未同步"
    assert kinds({**stale, "oldest_unsynced_at": "2026-12-05T12:00:00+00:00"}) == []
    assert kinds({**stale, "unsynced_mutations": 0, "unsynced_photos": 0}) == []


def test_storage_not_persisted_or_above_four_fifths():
    assert kinds({**HEALTHY, "storage_persisted": False}) == ["not_persisted"]
    assert kinds({**HEALTHY, "storage_persisted": None}) == []
    assert kinds({**HEALTHY, "storage_used": 80_000_000}) == []
    full = {**HEALTHY, "storage_used": 81_000_000}
    assert kinds(full) == ["storage_full"] and risks(full, "v1", NOW)[0].text == "存储空间已用 81%"
    assert kinds({**HEALTHY, "storage_quota": 0}) == []


def test_an_app_older_than_the_one_served():
    assert kinds({**HEALTHY, "app_version": "v0"}) == ["old_version"]


def test_the_phone_app_uses_the_same_thresholds():
    script = (Path(__file__).parent.parent / "static/app/health.js").read_text()
    assert re.search(r"UNSYNCED_HOURS = (\d+);", script)[1] == str(device_health.UNSYNCED_HOURS)
    assert float(re.search(r"STORAGE_RATIO = ([\d.]+);", script)[1]) == device_health.STORAGE_RATIO


# Reading the header ---------------------------------------------------------------------


def test_a_time_that_is_no_real_time_is_dropped_not_refused():
    health = parse(json.dumps({**HEALTHY, "oldest_unsynced_at": "2026-02-30T10:00:00Z"}))
    assert health["oldest_unsynced_at"] is None and health["app_version"] == "v1"


def test_a_health_header_is_read():
    assert parse(None) is None
    assert parse(json.dumps(HEALTHY)) == HEALTHY
    assert parse('{"app_version": "x", "unsynced_mutations": 0, "unsynced_photos": 0}')


@pytest.mark.parametrize(("header", "words"), [
    ("not json", "不是有效的 JSON"),
    ("[]", "health"),
    ('{"app_version": "x"}', "unsynced_mutations"),
    (json.dumps({**HEALTHY, "unsynced_mutations": -1}), "unsynced_mutations"),
    (json.dumps({**HEALTHY, "extra": 1}), "extra"),
    (json.dumps({**HEALTHY, "oldest_unsynced_at": "yesterday"}), "oldest_unsynced_at"),
    (json.dumps({**HEALTHY, "app_version": "x" * 2000}), "1024"),
])
def test_a_bad_health_header_is_refused_with_its_reason(header, words):
    with pytest.raises(BadHealth) as refused:
        parse(header)
    assert refused.value.message.startswith("设备状态信息") and words in refused.value.message


# Push and pull carry it -----------------------------------------------------------------


def stored_health(db, username: str, world) -> tuple:
    return db.execute(
        "SELECT d.health, d.health_at FROM devices d WHERE d.user_id = ?"
        " ORDER BY d.id DESC LIMIT 1", [world.users[username]]).fetchone()


def test_the_reference_client_reports_its_health_with_push_and_pull(client, db, world):
    sender = phone(client, "field1")
    online = sender.transport
    sender.transport = lambda *args: (_ for _ in ()).throw(TransportError("no signal"))
    sender.capture("problem.report", problem_args(area_id=world.areas["v1"]))
    with pytest.raises(TransportError):
        sender.sync()
    waiting = sender.health()
    assert waiting["unsynced_mutations"] == 1 and waiting["oldest_unsynced_at"]
    sender.transport = online
    seen = []

    def recording(method, path, headers, body):
        seen.append((method, path.split("?")[0], "X-Device-Health" in headers))
        return online(method, path, headers, body)

    sender.transport = recording
    sender.sync()
    assert ("POST", "/api/sync/push", True) in seen and ("GET", "/api/sync/pull", True) in seen
    health, health_at = stored_health(db, "field1", world)
    assert json.loads(health)["app_version"] == APP_VERSION and health_at
    # The pull, after the push: nothing unsynced any more.
    assert json.loads(health)["unsynced_mutations"] == 0


def test_a_bad_health_header_refuses_the_push_and_applies_nothing(client, db, world):
    sender = phone(client, "field1")
    report = problem_args(area_id=world.areas["v1"])
    response = sender.request("POST", "/api/sync/push", {
        "client_id": sender.state["client_id"], "schema_version": 1,
        "mutations": [{"id": 1, "name": "problem.report", "args": report}],
    }, {"X-Device-Health": "{broken"})
    assert response.status == 400
    assert response.json()["error"]["code"] == "bad_health"
    assert "设备状态信息不是有效的 JSON" in response.json()["error"]["message"]
    stored = db.execute("SELECT count(*) FROM problems WHERE id = ?", [report["id"]]).fetchone()
    assert stored == (0,)
    assert stored_health(db, "field1", world) == (None, None)


def test_a_bad_health_header_refuses_the_pull(client, world):
    sender = phone(client, "field1")
    response = sender.request("GET", f"/api/sync/pull?client_id={new_id()}&cursor=0",
                              headers={"X-Device-Health": json.dumps({"app_version": 1})})
    assert response.status == 400 and response.json()["error"]["code"] == "bad_health"


# The administrator's page ---------------------------------------------------------------


def report(db, world, username: str, health: dict) -> None:
    device = db.execute("SELECT id FROM devices WHERE user_id = ? ORDER BY id DESC LIMIT 1",
                        [world.users[username]]).fetchone()[0]
    device_health.record(db, device, health)


def test_the_devices_page_lists_phones_at_risk_with_their_owners(client, login_as, db, world):
    phone(client, "field1")
    phone(client, "field2")
    stale = {**HEALTHY, "app_version": field_app.version(), "unsynced_mutations": 4,
             "oldest_unsynced_at": "2020-01-01T00:00:00+00:00"}
    report(db, world, "field1", stale)
    report(db, world, "field2", {**HEALTHY, "app_version": field_app.version()})
    page = login_as("admin").get("/admin/devices").text
    assert "1 部手机有丢失记录的风险" in page and "4 条记录超过" in page
    assert "4 条记录、0 张照片" in page and "正常" in page
    only = login_as("admin").get("/admin/devices?risk=1").text
    assert "测试field1" in only and "测试field2" not in only


def test_a_district_administrator_sees_only_the_phones_of_their_area(client, login_as, db,
                                                                      world):
    phone(client, "field1")  # in district d1
    report(db, world, "field1", {**HEALTHY, "storage_persisted": False})
    page = login_as("admin_d2").get("/admin/devices?risk=1").text
    assert "没有有风险的手机" in page and "测试field1" not in page
