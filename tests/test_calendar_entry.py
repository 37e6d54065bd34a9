"""Entering a year's holiday arrangement: one parser for files and typed rows, refusals with
line numbers, all or nothing, and the provisional deadlines computed again."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest

from server import calendar_entry
from server.calendar_entry import CalendarRejected, apply_year, parse_file, parse_text
from server.db import immediate
from server.ledger import workflow

pytest_plugins = ["tests.clock"]

# An arrangement for the tests (not the official 2027 one).
SAMPLE_2027 = (
    "日期,类型,说明\n"
    "2027-01-01,休,元旦\n"
    "2027-02-05,放假,春节\n"
    "2027-02-08,休,春节\n"
    "2027-02-09,休,春节\n"
    "2027-02-10,休,春节\n"
    "2027-02-11,休,春节\n"
    "2027-02-13,班,春节调休\n"
    "2027-02-20,调休上班,春节调休\n"
)


def xlsx(rows) -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def rows_of(failure) -> dict[int, str]:
    return {problem.row: problem.message for problem in failure.problems}


def enter(db, text=SAMPLE_2027, actor_id=None, source="test"):
    with immediate(db):
        return apply_year(db, parse_text(text), actor_id, source)


def events(db, problem_id, kind=None):
    rows = db.query("SELECT kind, actor_id, note, data FROM problem_events WHERE problem_id = ?"
                    " ORDER BY at, rowid", [problem_id])
    return [dict(r, data=json.loads(r["data"])) for r in rows if kind in (None, r["kind"])]


# Reading ----------------------------------------------------------------------------


def test_a_csv_with_a_header_bom_and_chinese_words():
    entered = parse_file("2027.csv", ("\ufeff" + SAMPLE_2027).encode("utf-8"))
    assert entered.year == 2027
    assert entered.holidays[0] == dt.date(2027, 1, 1) and len(entered.holidays) == 6
    assert entered.workdays == [dt.date(2027, 2, 13), dt.date(2027, 2, 20)]
    assert entered.entries[0].note == "元旦"


def test_a_csv_saved_by_excel_in_gbk():
    entered = parse_file("2027.csv", SAMPLE_2027.encode("gbk"))
    assert len(entered.entries) == 8 and entered.entries[-1].note == "春节调休"


def test_typed_rows_without_header_in_many_spellings():
    text = ("2027-01-01 休\n2027/2/5，放假\n2027年2月8日\t节假日\n20270209 holiday\n"
            "2027.2.13 补班\n2027-02-20 WORKDAY\n2027-02-27 上班\n\n")
    entered = parse_text(text, 2027)
    assert [e.workday for e in entered.entries] == [False] * 4 + [True] * 3
    assert entered.entries[1].day == dt.date(2027, 2, 5)


def test_an_xlsx_file_with_date_cells():
    content = xlsx([("日期", "类型"), (dt.datetime(2027, 1, 1), "休"), ("2027-02-13", "班")])
    entered = parse_file("2027.xlsx", content)
    assert entered.holidays == [dt.date(2027, 1, 1)] and entered.workdays == [dt.date(2027, 2, 13)]


def test_every_bad_row_is_refused_with_its_line_number():
    text = ("日期,类型\n2027-01-01,休\n2027-13-01,休\n2027-02-05,调休\n2026-12-31,休\n"
            "2027-01-01,班\n2027-02-06\n")
    with pytest.raises(CalendarRejected) as refused:
        parse_text(text, 2027)
    rows = rows_of(refused.value)
    assert set(rows) == {3, 4, 5, 6, 7}
    assert "2027-13-01" in rows[3]
    assert "调休" in rows[4]
    assert "2026-12-31" in rows[5] and "2027" in rows[5]
    assert "第 2 行" in rows[6]
    assert "缺少类型" in rows[7]


def test_a_bad_first_row_is_reported_not_taken_for_a_header():
    with pytest.raises(CalendarRejected) as refused:
        parse_text("2027-02-30,加班\n2027-01-01,休\n")
    assert set(rows_of(refused.value)) == {1}


def test_a_bad_xlsx_row_refuses_the_whole_file():
    content = xlsx([("日期", "类型"), ("2027-01-01", "休"), ("不是日期", "休")])
    with pytest.raises(CalendarRejected) as refused:
        parse_file("2027.xlsx", content)
    assert set(rows_of(refused.value)) == {3}


@pytest.mark.parametrize("content, name", [
    (b"", "empty.csv"), (b"\xd0\xcf\x11\xe0old", "old.xls"), (b"date,kind\n", "header.csv"),
])
def test_files_that_are_not_a_year_are_refused_whole(content, name):
    with pytest.raises(CalendarRejected) as refused:
        parse_file(name, content)
    assert set(rows_of(refused.value)) == {0}


def test_a_year_outside_the_range_is_refused():
    with pytest.raises(CalendarRejected):
        parse_text("1999-01-01,休", 1999)


# Applying ---------------------------------------------------------------------------


def test_dispatch_in_december_with_20_working_days_is_provisional(act, db, world, clock):
    clock(2026, 12, 6)
    act("office", "p1", "accept")
    problem = act("office", "p1", "dispatch", lead_unit_id=world.units["u1"],
                  time_limit_days="20")
    # 7 December to 31 December: 19 weekdays; the 20th counts into 2027, Monday to Friday.
    assert problem["deadline"] == "2027-01-01"
    assert problem["deadline_provisional"] == 1


def test_entering_the_year_recomputes_open_deadlines_with_an_event(act, db, world, clock):
    clock(2026, 12, 6)
    act("office", "p1", "accept")
    act("office", "p1", "dispatch", lead_unit_id=world.units["u1"], time_limit_days="20")
    admin = world.users["admin"]
    applied = enter(db, actor_id=admin)
    assert (applied.year, applied.holidays, applied.workdays) == (2027, 6, 2)
    row = db["problems"].get(world.problems["p1"])
    # 1 January 2027 is a holiday now: the 20th working day is Monday 4 January.
    assert (row["deadline"], row["original_deadline"], row["deadline_provisional"]) == (
        "2027-01-04", "2027-01-04", 0)
    [event] = events(db, world.problems["p1"], "deadline_recomputed")
    assert event["actor_id"] == admin
    assert event["data"] == {"old_deadline": "2027-01-01", "deadline": "2027-01-04",
                             "provisional": False, "year": 2027}
    assert "2027-01-01 → 2027-01-04" in event["note"]
    record = db["calendar_years"].get(2027)
    assert (record["holidays"], record["workdays"], record["entered_by"], record["source"]) == (
        6, 2, admin, "test")
    # Entering the same year again changes nothing more, and adds no event.
    assert enter(db).changes == []
    assert len(events(db, world.problems["p1"], "deadline_recomputed")) == 1


def test_an_extension_across_the_year_end(act, db, world, clock):
    clock(2026, 12, 6)
    act("office", "p1", "accept")
    act("office", "p1", "dispatch", lead_unit_id=world.units["u1"], time_limit_days="5")
    act("handler1", "p1", "sign", contacted="1")
    clock(2026, 12, 10)
    act("handler1", "p1", "request_extension", reason_code="funding", extra_days="20",
        note="需协调供水公司")
    act("office", "p1", "approve_extension")  # longer than 10 working days: a leader's too
    problem = act("leader", "p1", "approve_extension_leader")
    # From Friday 11 December: 14 weekdays to the year end, then 1, 4, 5, 6, 7, 8 January.
    assert (problem["deadline"], problem["deadline_provisional"]) == ("2027-01-08", 1)
    assert problem["original_deadline"] == "2026-12-11"
    enter(db)
    row = db["problems"].get(world.problems["p1"])
    assert (row["deadline"], row["deadline_provisional"]) == ("2027-01-11", 0)
    assert row["original_deadline"] == "2026-12-11"  # it never ran into 2027


def test_frozen_facts_of_closed_problems_are_left_alone(act, db, world, clock):
    clock(2026, 12, 6)
    act("office", "p1", "accept")
    act("office", "p1", "dispatch", lead_unit_id=world.units["u1"], time_limit_days="20")
    act("handler1", "p1", "sign", contacted="1")
    act("handler1", "p1", "reply", outcome="solved", note="已修复")
    act("office", "p1", "verify")
    db["problems"].update(world.problems["p1"], {"resident_phone": "13812345678"})
    closed = act("office", "p1", "callback", method="phone", result="reached", solved="1",
                 satisfaction="satisfied")
    assert closed["status"] == "closed" and closed["closed_on_time"] == 1
    act("handler1", "p3", "return", reason_code="not_our_duty", note="不属于本单位")
    act("office", "p3", "accept_return")
    act("office", "p3", "dispatch", lead_unit_id=world.units["u2"], time_limit_days="20")
    before = db["problems"].get(world.problems["p1"])
    applied = enter(db)
    assert [change.problem_id for change in applied.changes] == [world.problems["p3"]]
    assert db["problems"].get(world.problems["p1"]) == before
    assert events(db, world.problems["p1"], "deadline_recomputed") == []
    assert db["problems"].get(world.problems["p3"])["deadline"] == "2027-01-04"


def test_preview_writes_nothing_and_matches_apply(act, db, world, clock):
    clock(2026, 12, 6)
    act("office", "p1", "accept")
    act("office", "p1", "dispatch", lead_unit_id=world.units["u1"], time_limit_days="20")
    previewed = calendar_entry.preview(db, parse_text(SAMPLE_2027))
    assert [(c.old_deadline, c.deadline) for c in previewed] == [("2027-01-01", "2027-01-04")]
    assert db["problems"].get(world.problems["p1"])["deadline"] == "2027-01-01"
    assert db.execute("SELECT count(*) FROM calendar_days").fetchone()[0] == 0
    assert enter(db).changes == previewed


def test_a_deadline_that_does_not_move_only_loses_its_flag(act, db, world, clock):
    clock(2026, 12, 6)
    act("office", "p1", "accept")
    act("office", "p1", "dispatch", lead_unit_id=world.units["u1"], time_limit_days="20")
    applied = enter(db, "2027-05-03,休")  # nothing in the way of 1 January
    assert [(c.moved, c.provisional) for c in applied.changes] == [(False, False)]
    assert db["problems"].get(world.problems["p1"])["deadline_provisional"] == 0
    assert events(db, world.problems["p1"], "deadline_recomputed") == []


def test_apply_needs_a_transaction(db):
    from server.importer import NotInTransaction

    with pytest.raises(NotInTransaction):
        apply_year(db, parse_text(SAMPLE_2027), None, "test")


def test_a_failure_while_applying_leaves_nothing(act, db, world, clock, monkeypatch):
    clock(2026, 12, 6)
    act("office", "p1", "accept")
    act("office", "p1", "dispatch", lead_unit_id=world.units["u1"], time_limit_days="20")

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(workflow, "append_event", broken)
    with pytest.raises(RuntimeError):
        enter(db)
    assert db.execute("SELECT count(*) FROM calendar_days").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM calendar_years").fetchone()[0] == 0
    assert db["problems"].get(world.problems["p1"])["deadline"] == "2027-01-01"


# What the calendar knows ------------------------------------------------------------


def test_the_year_to_enter(db):
    assert calendar_entry.missing_year(db, dt.date(2026, 10, 31)) is None
    assert calendar_entry.missing_year(db, dt.date(2026, 11, 1)) == 2027
    assert calendar_entry.missing_year(db, dt.date(2027, 3, 1)) == 2027
    enter(db)
    assert calendar_entry.missing_year(db, dt.date(2026, 12, 6)) is None


def test_export_reads_back_as_the_same_year(db):
    enter(db)
    again = parse_file("2027.csv", calendar_entry.export_csv(db, 2027))
    assert [(e.day, e.workday, e.note) for e in again.entries] == [
        (e.day, e.workday, e.note) for e in parse_text(SAMPLE_2027).entries]


def test_export_of_a_year_the_package_knows(db):
    import chinese_calendar

    source, entries = calendar_entry.year_entries(db, 2026)
    assert source == "package"
    marked = {e.day: e.workday for e in entries}
    day = dt.date(2026, 1, 1)
    while day.year == 2026:  # the entries and Monday to Friday give the package's calendar
        assert marked.get(day, day.weekday() < 5) == chinese_calendar.is_workday(day)
        day += dt.timedelta(days=1)


def test_a_formula_like_note_exports_as_text_and_imports_back(db):
    from server import calendar_entry

    entries = calendar_entry.parse_text('2027-01-01,休,=HYPERLINK("x")', year=2027).entries
    text = calendar_entry.rows_csv(entries)
    assert "'=HYPERLINK" in text
    again = calendar_entry.parse_file("2027.csv", text.encode(), year=2027).entries
    assert again[0].note == '=HYPERLINK("x")'


def test_a_note_past_its_limit_is_refused_with_its_line_not_cut(db):
    from server import calendar_entry

    with pytest.raises(calendar_entry.CalendarRejected) as error:
        calendar_entry.parse_text("2027-01-01,休,元旦\n2027-01-02,休," + "节" * 41, year=2027)
    assert [problem.row for problem in error.value.problems] == [2]
    assert "41" in error.value.problems[0].message
