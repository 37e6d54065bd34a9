"""Reports handed up: issued once, frozen, compared with today; the issue form's refusals."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import zipfile

import pytest

from server.db import immediate
from server.ledger import clock, metrics, reports
from server.timeutil import to_iso
from tests.conftest import csrf_of
from tests.ledger_helpers import add_problem

TODAY = clock.local_today()
LAST_MONTH = reports.recent("month", TODAY)[0]


def in_last_month(day: int = 3) -> str:
    return to_iso(dt.datetime.combine(LAST_MONTH.start + dt.timedelta(days=day), dt.time(2),
                                      dt.UTC))


@pytest.fixture
def ledger(db, world):
    """Last month in district d1: two problems of unit u1, one closed, one open past its
    deadline; one of u2 closed."""
    u1, u2 = world.units["u1"], world.units["u2"]
    common = {"accepted_at": in_last_month(), "found_at": in_last_month(0),
              "dispatched_at": in_last_month(), "deadline": LAST_MONTH.start.isoformat()}
    ids = {
        "closed": add_problem(db, world, **common, lead_unit_id=u1, status="closed",
                              closed_at=in_last_month(), closed_on_time=1,
                              ledger_no="ZF-2026-000101"),
        "open": add_problem(db, world, **common, lead_unit_id=u1, status="handling",
                            ledger_no="ZF-2026-000102", description="楼道灯不亮"),
        "u2": add_problem(db, world, **common, lead_unit_id=u2, status="closed",
                          closed_at=in_last_month(), closed_on_time=1,
                          ledger_no="ZF-2026-000103"),
    }
    return ids


def issue(client, **form):
    data = {"csrf_token": csrf_of(client), "kind": "month",
            "period": LAST_MONTH.start.isoformat(), **form}
    return client.post("/reports", data=data, follow_redirects=False)


def report_count(db) -> int:
    return db.execute("SELECT count(*) FROM reports").fetchone()[0]


def test_periods():
    assert reports.period_of("month", dt.date(2026, 2, 1)) == metrics.Period(
        dt.date(2026, 2, 1), dt.date(2026, 2, 28))
    assert reports.period_of("quarter", dt.date(2026, 10, 1)) == metrics.Period(
        dt.date(2026, 10, 1), dt.date(2026, 12, 31))
    assert reports.period_of("week", dt.date(2026, 11, 30)).end == dt.date(2026, 12, 6)
    assert reports.recent("quarter", dt.date(2026, 1, 15), 2) == [
        metrics.Period(dt.date(2025, 10, 1), dt.date(2025, 12, 31)),
        metrics.Period(dt.date(2025, 7, 1), dt.date(2025, 9, 30))]
    assert reports.recent("week", dt.date(2026, 12, 6), 1)[0].start == dt.date(2026, 11, 23)
    assert reports.period_label("quarter", reports.period_of("quarter", dt.date(2026, 7, 1))) \
        == "2026年第3季度"


def test_a_report_keeps_its_issued_figures_and_shows_todays_difference(db, world, ledger,
                                                                        login_as):
    office = login_as("office")
    response = issue(office, area=str(world.areas["city"]))
    assert response.status_code == 303
    report_id = int(response.headers["location"].rsplit("/", 1)[1])
    row = db["reports"].get(report_id)
    assert row["number"] == f"BG-{TODAY.year}-0001"
    assert (row["kind"], row["period_start"], row["period_end"]) == (
        "month", LAST_MONTH.start.isoformat(), LAST_MONTH.end.isoformat())
    frozen = json.loads(row["data"])
    assert frozen["metrics"]["rates"]["completion"] == {"numerator": 2, "n": 3,
                                                       "value": pytest.approx(2 / 3)}
    assert [item["row"]["label"] for item in frozen["assessment"]["too_few"]] == [
        "住建局", "水务集团"]  # two and one problems: below the minimum sample of 5
    assert frozen["overdue"]["total"] == 1
    assert frozen["overdue"]["rows"][0]["description"] == "楼道灯不亮"

    page = office.get(f"/reports/{report_id}")
    assert page.status_code == 200
    assert "66.67%" in page.text
    assert "今天按同一周期、同一范围重新计算，各项数字与出具时一致" in page.text
    assert "今天按同一周期、同一范围重新计算，各项数字与出具时一致" in page.text

    # The data changes afterwards: the open problem is closed.
    with immediate(db):
        db["problems"].update(ledger["open"], {"status": "closed", "closed_at": in_last_month(),
                                               "closed_on_time": 0})
    page = office.get(f"/reports/{report_id}")
    assert json.loads(db["reports"].get(report_id)["data"]) == frozen
    figures = page.text.split('id="report-figures"')[1].split("</table>")[0]
    assert "66.67%" in figures  # the report's own figures stay as issued
    changes = page.text.split('id="report-changes"')[1].split("</table>")[0]
    assert "66.67% (n=3)" in changes and "100.00% (n=3)" in changes
    assert "+33.33 个百分点" in changes
    # and a leader of the city reads it too, the same way
    assert "+33.33 个百分点" in login_as("leader").get(f"/reports/{report_id}").text


def test_the_figures_computed_beside_compute_are_frozen_too(db, world, ledger, login_as):
    """The helper units (协办), counted apart on the statistics page, are in the report."""
    with immediate(db):
        db["joint_parts"].insert({"problem_id": ledger["open"], "unit_id": world.units["u2"],
                                  "state": "signed", "dispatched_at": in_last_month(),
                                  "signed_at": in_last_month()})
    office = login_as("office")
    report_id = int(issue(office, area=str(world.areas["city"])).headers["location"]
                    .rsplit("/", 1)[1])
    frozen = json.loads(db["reports"].get(report_id)["data"])
    [helper] = frozen["helper_units"]
    assert helper["label"] == "水务集团"
    assert helper["rates"]["signed"] == {"numerator": 1, "n": 1, "value": 1.0}
    assert "reason_counts" in frozen
    section = office.get(f"/reports/{report_id}").text.split('id="report-helpers"')[1]
    assert "水务集团" in section.split("</table>")[0]


def test_the_report_downloads_as_xlsx(db, world, ledger, login_as):
    office = login_as("office")
    report_id = int(issue(office, area=str(world.areas["d1"])).headers["location"]
                    .rsplit("/", 1)[1])
    response = office.get(f"/reports/{report_id}.xlsx")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        sheet = archive.read("xl/worksheets/sheet1.xml").decode()
        assert 'paperSize="9"' in sheet
    assert f"BG-{TODAY.year}-0001" in sheet and "东城区" in sheet and "办结率" in sheet
    assert "楼道灯不亮" in sheet and "<f>" not in sheet


@pytest.mark.parametrize(("form", "message"), [
    ({"kind": "year"}, "请选择报告类型"),
    ({"period": "last month"}, "统计周期应为日期"),
    ({"period": (LAST_MONTH.start + dt.timedelta(days=1)).isoformat()}, "应从周一"),
    ({"period": reports.starts("month", TODAY).isoformat()}, "尚未结束（未完结"),
    ({"kind": "week", "period": reports.starts("week", TODAY).isoformat()}, "尚未结束"),
    ({"area": "999999"}, "请选择您管辖范围内的区域"),
    ({"area": "abc"}, "请选择您管辖范围内的区域"),
])
def test_bad_input_is_refused_with_its_message_and_nothing_saved(db, world, login_as, form,
                                                                  message):
    office = login_as("office")
    response = issue(office, **{"area": str(world.areas["city"]), **form})
    assert response.status_code == 400
    assert message in response.text
    assert report_count(db) == 0
    assert db.execute("SELECT max(report_last_no) FROM ledger_counters").fetchone()[0] in (0,
                                                                                           None)


def test_a_scope_outside_the_users_area_is_refused(db, world, login_as):
    response = issue(login_as("office_d1"), area=str(world.areas["d2"]))
    assert response.status_code == 400 and "管辖范围" in response.text
    assert report_count(db) == 0


def test_a_report_outside_the_readers_scope_or_unknown_is_not_found(db, world, ledger,
                                                                    login_as):
    office = login_as("office")
    report_id = int(issue(office, area=str(world.areas["d1"])).headers["location"]
                    .rsplit("/", 1)[1])
    leader_d2 = login_as("leader_d2")
    assert leader_d2.get(f"/reports/{report_id}").status_code == 404
    assert leader_d2.get(f"/reports/{report_id}.xlsx").status_code == 404
    assert "BG-" not in leader_d2.get("/reports").text
    assert office.get("/reports/999").status_code == 404
    assert office.get("/reports/abc").status_code == 404
    assert f"BG-{TODAY.year}-0001" in login_as("office_d1").get("/reports").text


def test_a_leader_reads_but_does_not_issue(db, world, login_as):
    leader = login_as("leader")
    assert "出具报告" not in leader.get("/reports").text
    assert issue(leader, area=str(world.areas["city"])).status_code == 403
    assert report_count(db) == 0


def test_reports_are_never_changed(db, world, ledger, login_as):
    issue(login_as("office"), area=str(world.areas["city"]))
    with pytest.raises(Exception, match="issued once"), immediate(db):
        db.execute("UPDATE reports SET data = '{}'")
    with pytest.raises(Exception, match="issued once"), immediate(db):
        db.execute("DELETE FROM reports")


def test_every_figure_of_the_computation_is_frozen(db, world, ledger, monkeypatch):
    """A figure added to metrics.compute (here a rate and a count) is frozen with the rest,
    without naming it anywhere in reports."""
    compute = metrics.compute

    @dataclasses.dataclass
    class Extra:
        share: metrics.Rate

    def with_more(*args, **kwargs):
        result = compute(*args, **kwargs)
        result["rates"]["self_rated"] = metrics.Rate(3, 4)
        result["totals"]["rework"] = 7
        result["extra"] = Extra(metrics.Rate(1, 2))
        return result

    monkeypatch.setattr(metrics, "compute", with_more)
    with immediate(db):
        report_id = reports.issue(db, load_office(db, world), {
            "kind": "month", "period": LAST_MONTH.start.isoformat(),
            "area": str(world.areas["city"])})
    frozen = json.loads(db["reports"].get(report_id)["data"])["metrics"]
    assert frozen["rates"]["self_rated"] == {"numerator": 3, "n": 4, "value": 0.75}
    assert frozen["totals"]["rework"] == 7
    assert frozen["extra"] == {"share": {"numerator": 1, "n": 2, "value": 0.5}}


def load_office(db, world):
    from tests.ledger_helpers import load

    return load(db, world, "office")


def test_compare_shows_figures_missing_on_either_side():
    frozen = {"rates": {"completion": {"numerator": 82, "n": 100}, "gone": {"numerator": 1,
                                                                           "n": 2}},
              "totals": {"accepted": 100}}
    today = {"rates": {"completion": {"numerator": 161, "n": 200},
                       "new_rate": {"numerator": 0, "n": 0}},
             "totals": {"accepted": 200, "rework": 3}}
    found = {row.name: row for row in reports.compare(frozen, today)}
    assert found["completion"].change == pytest.approx(-1.5)
    assert found["completion"].label == "办结率"
    assert found["gone"].today is None and found["gone"].change is None
    assert found["gone"].differs and found["gone"].label == "gone"
    assert found["new_rate"].issued is None and found["new_rate"].is_rate
    assert found["accepted"].change == 100 and found["accepted"].label == "立案数"
    assert found["rework"].issued is None and found["rework"].change is None
    assert reports.compare({}, {}) == []
