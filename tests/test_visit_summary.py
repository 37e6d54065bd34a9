"""server/visit_summary.py: a visit's 走访小结, line by line."""

from __future__ import annotations

from server.visit_summary import SummaryProblem, VisitFacts, clip, facts_of, lines, text
from server.visits import CHECKLIST, get_visit
from tests.ledger_helpers import load

START = "2026-12-06T01:30:00+00:00"  # 09:30 in Shanghai
END = "2026-12-06T03:10:59+00:00"


def facts(**changes) -> VisitFacts:
    values = dict(method="sbls", place="青山镇 · 村委会", started_at=START, ended_at=END,
                  checklist=tuple(CHECKLIST), people=(), problems=())
    return VisitFacts(**{**values, **changes})


def test_time_place_and_method_in_local_time_whole_minutes():
    summary = lines(facts())
    assert summary[:4] == ["走访小结", "时间：2026-12-06 09:30—11:10（100分钟）",
                           "地点：青山镇 · 村委会", "方式：四不两直暗访"]


def test_a_visit_not_yet_ended_says_so():
    assert "时间：2026-12-06 09:30 起（走访未结束）" in lines(facts(ended_at=None))


def test_the_four_no_statement_all_some_or_none():
    everything = "不发通知、不打招呼、不听汇报、不用陪同接待、直奔基层、直插现场"
    assert f"四不两直：{everything}，全部做到" in lines(facts())
    assert ("四不两直：做到不发通知、直插现场；未做到不打招呼、不听汇报、不用陪同接待、直奔基层"
            in lines(facts(checklist=("direct_scene", "no_notice"))))
    assert "四不两直：未勾选任何一项" in lines(facts(checklist=()))


def test_people_counted_by_kind_and_named_only_masked():
    people = (("resident", "张三"), ("cadre", "王五"), ("resident", "欧阳娜娜"), ("resident", ""))
    summary = text(facts(people=people))
    assert "走访对象：4人（群众3人、村社区干部1人）" in summary
    assert "谈话对象：张*、王*、欧***" in summary
    assert "张三" not in summary and "娜娜" not in summary
    assert "走访对象：未记录" in lines(facts())


def test_problems_with_their_status_and_what_was_solved_on_the_spot():
    problems = (SummaryProblem("ZF-2026-000123", "路" * 40, "handling", False),
                SummaryProblem(None, "垃圾堆放", None, True))
    summary = lines(facts(problems=problems))
    assert "发现问题：2个，其中当场解决1个" in summary
    assert f"1. ZF-2026-000123 {'路' * 30}…（办理中）" in summary
    assert "2. 垃圾堆放（待同步、当场解决）" in summary
    assert "发现问题：无" in lines(facts())


def test_clip_counts_characters():
    assert clip("  短  ") == "短"
    assert clip("一二三", 2) == "一二…"


def test_facts_of_a_stored_visit(db, world):
    db["diary_entries"].insert({
        "id": "00000000-0000-7000-8000-000000000501", "visit_id": world.visits["v1"],
        "author_id": world.users["field1"], "area_id": world.areas["v1"],
        "person_name": "李四", "person_kind": "resident", "content": "路灯不亮",
        "recorded_at": START, "created_at": START, "updated_at": START,
    })
    visit = get_visit(db, load(db, world, "field1"), world.visits["v1"])
    summary = text(facts_of(visit))
    assert "走访对象：1人（群众1人）" in summary and "谈话对象：李*" in summary
    assert "四不两直：做到不发通知；" in summary
    assert "1. 幸福社区3号楼漏水，墙面渗水（待受理）" in summary
