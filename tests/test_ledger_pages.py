"""The ledger pages for each role: ledger, my work, diaries, statistics, similar problems."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from server.db import immediate
from server.ledger import charts, clock, metrics
from server.timeutil import now_iso, to_iso
from server.views import ledger_pages
from tests.conftest import post_form
from tests.ledger_helpers import add_problem

PAGES = {
    "/problems": {"field", "office", "handler", "leader"},
    "/problems?q=漏水&overdue=no&sort=deadline": {"field", "office", "handler", "leader"},
    "/problems/export.csv": {"office", "handler", "leader"},
    "/problems/export.xlsx": {"office", "handler", "leader"},
    "/work": {"office", "handler", "leader"},
    "/diary": {"field", "office", "leader"},
    "/stats": {"office", "leader"},
}
USERS = {"field": "field1", "office": "office", "handler": "handler1", "leader": "leader",
         "admin": "admin"}


@pytest.mark.parametrize("role", sorted(USERS))
def test_pages_for_each_role(login_as, world, role):
    client = login_as(USERS[role])
    for url, allowed in PAGES.items():
        response = client.get(url)
        expected = 200 if role in allowed else 403
        assert response.status_code == expected, (url, role, response.status_code)


def test_nav_links_follow_permissions(login_as, world):
    office = login_as("office").get("/").text
    for link in ('href="/work"', 'href="/diary"', 'href="/stats"', 'href="/problems"'):
        assert link in office
    handler = login_as("handler1").get("/").text
    assert 'href="/work"' in handler and 'href="/stats"' not in handler
    assert 'href="/diary"' not in handler


def queue(html: str, key: str) -> str:
    match = re.search(rf'<section class="card" id="q-{key}".*?</section>', html, re.S)
    assert match, key
    return match.group(0)


def test_office_work_queues(login_as, db, world):
    office = world.users["office"]
    replied = add_problem(db, world, status="replied", description="待审核的答复")
    callback = add_problem(db, world, status="callback", description="待回访的问题")
    today = clock.local_today()
    due = add_problem(db, world, status="closed", description="回头看到期",
                      return_visit_due=(today - dt.timedelta(days=1)).isoformat())
    add_problem(db, world, status="closed", description="回头看已做",
                return_visit_due=today.isoformat(), return_visit_result="held")
    add_problem(db, world, status="closed", description="回头看未到期",
                return_visit_due=(today + dt.timedelta(days=3)).isoformat())
    extension = add_problem(db, world, status="handling", lead_unit_id=world.units["u1"],
                            extension_request='{"extra_days": 3}', description="申请延期")
    html = login_as("office").get("/work").text
    assert world.problems["p1"] in queue(html, "intake")
    assert world.problems["p2"] not in queue(html, "intake")
    assert replied in queue(html, "verify")
    assert callback in queue(html, "callback")
    visits = queue(html, "return_visit")
    assert due in visits and "回头看已做" not in visits and "回头看未到期" not in visits
    assert extension in queue(html, "extension")
    assert office  # the office sees no unit or leader lists
    assert 'id="q-to_sign"' not in html and 'id="q-flagged"' not in html


def test_handler_work_queues(login_as, db, world):
    u1 = world.units["u1"]
    today = clock.local_today()
    soon = add_problem(db, world, status="handling", lead_unit_id=u1, description="快到期",
                       deadline=(today + dt.timedelta(days=1)).isoformat())
    later = add_problem(db, world, status="handling", lead_unit_id=u1, description="还早",
                        deadline=(today + dt.timedelta(days=30)).isoformat())
    to_sign = add_problem(db, world, status="dispatched", lead_unit_id=u1, description="待签",
                          deadline=(today + dt.timedelta(days=10)).isoformat())
    html = login_as("handler1").get("/work").text
    assert to_sign in queue(html, "to_sign")
    hand = queue(html, "in_hand")
    assert world.problems["p3"] in hand and soon in hand and later in hand
    due = queue(html, "due_soon")
    assert soon in due and later not in due
    # The other unit's dispatched problem is not on this unit's list.
    assert world.problems["p2"] not in html
    html = login_as("handler2").get("/work").text
    assert world.problems["p2"] in queue(html, "to_sign")


def test_leader_work_queues(login_as, db, world):
    late = add_problem(db, world, status="handling", deadline="2020-01-01", description="超期了")
    flagged = add_problem(db, world, status="handling", supervision="flagged",
                          description="挂牌的")
    add_problem(db, world, status="closed", supervision="flagged", deadline="2020-01-01",
                description="已办结的挂牌")
    html = login_as("leader").get("/work").text
    assert late in queue(html, "overdue")
    assert flagged in queue(html, "flagged")
    assert "已办结的挂牌" not in html
    # leader_d2 does not see district d1's problems.
    html = login_as("leader_d2").get("/work").text
    assert late not in html and flagged not in html


def add_diary(db, world, author: str, area: str, content: str, person: str = "张大娘") -> str:
    diary_id = f"d-{content}"
    now = now_iso()
    with immediate(db):
        db["diary_entries"].insert({
            "id": diary_id, "visit_id": world.visits["v1" if author == "field1" else "v2"],
            "author_id": world.users[author], "area_id": world.areas[area],
            "person_name": person, "person_kind": "resident", "content": content,
            "recorded_at": now, "created_at": now, "updated_at": now,
        })
    return diary_id


def test_diary_list_search_and_scope(login_as, db, world):
    add_diary(db, world, "field1", "v1", "反映小区物业收费不透明")
    add_diary(db, world, "field2", "v2", "村里自来水经常停水")
    html = login_as("office").get("/diary").text
    assert "物业收费" in html and "经常停水" in html
    assert f'href="/visits/{world.visits["v1"]}"' in html
    html = login_as("office").get("/diary?q=物业").text
    assert "物业收费" in html and "经常停水" not in html
    # A district office and a field official see only their part.
    html = login_as("office_d1").get("/diary").text
    assert "物业收费" in html and "经常停水" not in html
    html = login_as("field2").get("/diary").text
    assert "物业收费" not in html and "经常停水" in html
    assert login_as("office").get("/diary?q=%25&page=abc").status_code == 200


def test_stats_page(login_as, db, world):
    stamp = now_iso()
    for n in range(6):
        add_problem(db, world, status="closed" if n < 3 else "handling", accepted_at=stamp,
                    closed_at=stamp if n < 3 else None, lead_unit_id=world.units["u1"])
    response = login_as("office").get("/stats")
    assert response.status_code == 200
    html = response.text
    assert "<svg" in html and "<script" not in html
    assert "办结率" in html and "50.00%" in html  # 3 closed of 6 accepted
    assert "n=6" in html and "住建局" in html
    response = login_as("leader").get("/stats?from=2026-99-01&rank=bogus&min_n=0")
    assert response.status_code == 200 and "已忽略" in response.text
    response = login_as("leader").get("/stats?from=2026-03-01&to=2026-01-01")
    assert response.status_code == 200 and "已忽略" in response.text


def test_stats_page_shows_the_closures_apart_beside_the_rates(login_as, db, world):
    stamp = now_iso()
    for kind in ("unreachable", "unreachable", "no_contact", "explained", None):
        add_problem(db, world, status="closed", accepted_at=stamp, closed_at=stamp,
                    closure_kind=kind, callback_reached=1 if kind is None else 0,
                    callback_solved=1 if kind is None else None,
                    satisfaction="satisfied" if kind is None else None)
    add_problem(db, world, status="dispatched", accepted_at=stamp, relapsed=1)
    html = login_as("office").get("/stats").text
    assert "单独列出的办结与反弹" in html
    counts = dict(re.findall(r'id="st-(closed_\w+|relapsed)">(\d+)<', html))
    assert counts == {"closed_unreachable": "2", "closed_no_contact": "1",
                      "closed_explained": "1", "relapsed": "1"}
    assert "办结 5 ÷ 立案 6" in html  # closed, all of them
    # The closures apart are no sample; the relapse is, as not solved.
    assert "群众认为已解决且未反弹 1 ÷ 有效回访或反弹 2" in html


def test_stats_dashboard_cards_compare_with_the_previous_period(login_as, db, world):
    """Each rate has a card with its sample and the change against the previous period of
    the same length, in percentage points, and its 口径 in place (no file of the repository)."""
    today = clock.local_today()
    this_week = to_iso(dt.datetime.combine(today, dt.time(0, 30), dt.UTC))
    week_before = to_iso(dt.datetime.combine(today - dt.timedelta(days=7), dt.time(2), dt.UTC))
    answered = {"callback_reached": 1, "callback_solved": 1, "satisfaction": "satisfied"}
    for n in range(4):  # now: 3 closed of 4, each with a valid callback
        add_problem(db, world, status="closed" if n else "handling", accepted_at=this_week,
                    closed_at=this_week if n else None, lead_unit_id=world.units["u1"],
                    **(answered if n else {}))
    for n in range(2):  # the week before: 1 closed of 2
        add_problem(db, world, status="closed" if n else "handling", accepted_at=week_before,
                    closed_at=week_before if n else None, lead_unit_id=world.units["u1"])
    start = today - dt.timedelta(days=6)
    html = login_as("leader").get(f"/stats?from={start}&to={today}").text
    card = html.split('id="card-completion"')[1].split("</li>")[0]
    assert "75.00%" in card and "n=4" in card
    assert "↑ 25.0 个百分点" in card and "better" in card
    assert "办结率 = 已办结 ÷ 本期立案" in card  # the 口径 in words
    assert "上期：50.00%（n=2）" in card
    # The key rates as cards; every rate, a rate added later included, in the table below
    # with its 口径 in place.
    for name in metrics.RATES:
        row = html.split(f'id="row-{name}"')[1].split("</tr>")[0]
        assert "口径" in row, name
        assert (f'id="card-{name}"' in html) == (name in ledger_pages.DASHBOARD_RATES)
    assert "docs/" not in html and "metrics.md" not in html
    # One unit, 按期办结率 on 3 problems: below the minimum sample of 5, not ranked.
    assert 'id="dash-ranking-table"' not in html and "没有样本数达到 5" in html
    html = login_as("leader").get(f"/stats?from={start}&to={today}&min_n=1").text
    assert 'id="dash-ranking-table"' in html and "住建局" in html


def test_the_previous_period_is_as_long_and_just_before():
    period = metrics.Period(dt.date(2026, 3, 1), dt.date(2026, 3, 31))
    assert ledger_pages.previous_period(period) == metrics.Period(
        dt.date(2026, 1, 29), dt.date(2026, 2, 28))


@pytest.mark.parametrize("weeks", [1, 2, 8, 13, 26, 52, 156])
def test_trend_labels_stay_inside_the_chart_and_apart(weeks):
    """Every text of the trend lies inside its viewBox (nothing cut), and the week labels do
    not touch one another."""
    monday = dt.date(2026, 1, 5)
    labels = [(monday + dt.timedelta(weeks=n)).isoformat() for n in range(weeks)]
    series = {"办结率": [0.5] * weeks, "按期办结率": [1.0] * weeks, "满意率": [None] * weeks}
    svg = str(charts.trend(labels, series, "每周趋势"))
    width, height = map(float, re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', svg).groups())
    spans = []
    for x, y, anchor, text in re.findall(
            r'<text x="([\d.]+)" y="([\d.]+)"(?: text-anchor="(\w+)")?>([^<]*)</text>', svg):
        x, y, w = float(x), float(y), charts.text_width(text)
        left = {"end": x - w, "middle": x - w / 2}.get(anchor, x)
        assert left >= 0 and left + w <= width and 12 <= y <= height, (text, x, y)
        if re.fullmatch(r"\d\d-\d\d", text):
            spans.append((left, left + w))
    assert spans and all(a[1] < b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert '<line x1="46" x2="46"' in svg  # the y axis


def test_similar_problems_and_one_click_merge(login_as, db, world):
    base = {"category_id": world.category, "area_id": world.areas["v1"]}
    with immediate(db):
        db["problems"].update(world.problems["p1"], {"lat": 36.65, "lng": 117.01})
    near = add_problem(db, world, **base, status="accepted", ledger_no="ZF-2026-000050",
                       lat=36.651, lng=117.0105, description="供水管道破裂")  # about 120 m
    far = add_problem(db, world, **base, status="accepted", lat=36.70, lng=117.01,
                      description="另一处供水问题")  # about 5.5 km
    text = add_problem(db, world, **base, status="accepted",
                       description="幸福社区3号楼漏水，墙面渗水严重")  # no position, same words
    client = login_as("office")
    html = client.get(f"/problems/{world.problems['p1']}").text
    section = re.search(r'<section class="card" aria-labelledby="similar-h">.*?</section>', html,
                        re.S).group(0)
    assert near in section and text in section and far not in section
    assert "相距" in section and "描述相似" in section
    response = post_form(client, f"/problems/{world.problems['p1']}/actions/merge",
                         {"original_id": near, "note": "重复"})
    assert response.status_code == 303
    row = db.execute("SELECT status, merged_into FROM problems WHERE id = ?",
                     [world.problems["p1"]]).fetchone()
    assert row == ("merged", near)
    # A handler sees the section without merge buttons (it may not merge).
    html = login_as("handler1").get(f"/problems/{world.problems['p3']}").text
    assert "/actions/merge" not in html


def test_an_action_note_past_its_limit_is_refused_whole_with_a_message(login_as, db, world):
    from server.i18n import gettext as _
    from sync.schemas import NOTE_MAX_LENGTH

    client = login_as("office")
    problem = world.problems["p1"]
    page = client.get(f"/problems/{problem}").text
    assert 'name="note"' in page and "maxlength" not in page.split('name="note"')[1][:80]
    before = db.execute("SELECT count(*) FROM problem_events").fetchone()
    long_note = "退" * NOTE_MAX_LENGTH + "回"
    response = post_form(client, f"/problems/{problem}/actions/reject",
                         {"reason_code": "other", "note": long_note})
    assert response.status_code == 400
    message = _("validation.too_long", label=_("workflow.field.note"), max=NOTE_MAX_LENGTH)
    assert message in response.text
    assert long_note in response.text  # kept as typed, to shorten
    assert db.execute("SELECT count(*) FROM problem_events").fetchone() == before
    assert db["problems"].get(problem)["status"] == "submitted"
    response = post_form(client, f"/problems/{problem}/actions/reject",
                         {"reason_code": "other", "note": long_note[:NOTE_MAX_LENGTH]})
    assert response.status_code == 303
    assert db.execute("SELECT note FROM problem_events WHERE problem_id = ? AND kind = 'reject'",
                      [problem]).fetchone() == (long_note[:NOTE_MAX_LENGTH],)


def test_merge_form_takes_the_ledger_number_its_placeholder_shows(login_as, db, world):
    client = login_as("office")
    page = client.get(f"/problems/{world.problems['p1']}").text
    assert 'placeholder="ZF-2026-000123"' in page
    response = post_form(client, f"/problems/{world.problems['p1']}/actions/merge",
                         {"original_id": "zf-2026-000003"})
    assert response.status_code == 303
    assert db["problems"].get(world.problems["p1"])["merged_into"] == world.problems["p3"]


def test_merge_form_with_a_wrong_number_says_so_and_saves_nothing(login_as, db, world):
    before = db.execute("SELECT count(*) FROM problem_events").fetchone()
    response = post_form(login_as("office"), f"/problems/{world.problems['p1']}/actions/merge",
                         {"original_id": "ZF-2026-000777", "note": "重复"})
    assert response.status_code == 400
    assert "没有找到编号为 ZF-2026-000777 的问题" in response.text
    assert 'value="ZF-2026-000777"' in response.text  # the input is kept
    assert db["problems"].get(world.problems["p1"])["status"] == "submitted"
    assert db.execute("SELECT count(*) FROM problem_events").fetchone() == before


# The ledger list: links, area paths, paging every counted list ------------------------


def ledger_row(html: str, problem_id: str) -> str:
    match = re.search(rf'<tr>\s*<td[^>]*><a href="/problems/{problem_id}">.*?</tr>', html, re.S)
    assert match, problem_id
    return match.group(0)


def test_a_problem_without_a_number_links_by_its_description(login_as, db, world):
    blank = add_problem(db, world, status="submitted", description="",
                        id="00000000-0000-4000-8000-00000000abcd")
    for url in ("/problems", "/work", "/"):
        html = login_as("office").get(url).text
        assert "未编号" not in html, url
        p1 = ledger_row(html, world.problems["p1"])
        assert '">幸福社区3号楼漏水，墙面渗水</a>' in p1  # 14 characters: whole
        if url == "/problems":
            assert '">待受理 00abcd</a>' in ledger_row(html, blank)
    long = add_problem(db, world, status="submitted",
                       description="一二三四五六七八九十一二三四五六七八九十一二三")
    html = login_as("office").get("/problems").text
    assert '">一二三四五六七八九十一二三四五六七八九…</a>' in ledger_row(html, long)


def test_the_place_is_the_area_path_below_the_city(login_as, world):
    html = login_as("office").get("/problems").text
    # p3 lies in a grid: the path stops at its community, the grid is in the tooltip.
    p3 = ledger_row(html, world.problems["p3"])
    assert ">东城区 › 杏花街道 › 幸福社区</span>" in p3
    assert 'title="东城区 › 杏花街道 › 幸福社区 › 第一网格"' in p3
    assert ">西湖区 › 白石镇 › 杏花村</span>" in ledger_row(html, world.problems["p2"])


def test_area_paths_follow_an_edit_of_an_area(login_as, db, world):
    client = login_as("office")
    assert "杏花街道 › 幸福社区" in client.get("/problems").text
    with immediate(db):
        db["areas"].update(world.areas["t1"], {"name": "杏林街道"})
    html = client.get("/problems").text
    assert "杏林街道 › 幸福社区" in html and "杏花街道 › 幸福社区" not in html


@pytest.mark.sqlite_only  # counts statements with sqlite3's trace callback
def test_area_paths_cost_no_query_per_row(db, world):
    from server import areas
    from server.ledger import queries
    from tests.ledger_helpers import load

    for n in range(60):
        add_problem(db, world, description=f"第{n}个问题")
    office = load(db, world, "office")
    statements = []
    db.conn.set_trace_callback(statements.append)
    try:
        queries.ledger(db, office, queries.parse({}))
        many = len(statements)
        statements.clear()
        queries.ledger(db, office, queries.parse({"q": "第1个问题"}))
        few = len(statements)
        statements.clear()
        rows = areas.add_area_paths(db, [{"area_id": world.areas["g1"]}] * 50)
    finally:
        db.conn.set_trace_callback(None)
    assert len(statements) == 1  # the areas' stamp in the log (db.identity is read once)
    assert rows[0]["area_path"] == "东城区 › 杏花街道 › 幸福社区"
    assert many <= few + 5, (many, few)  # 50 rows cost what 1 row costs


def test_the_filters_show_one_row_and_count_the_others(login_as, world):
    html = login_as("office").get("/problems").text
    row = html.split('class="filter-row"')[1].split('<details class="more-filters"')[0]
    assert 'name="q"' in row and 'name="area"' in row and 'name="category"' in row
    assert 'name="source"' not in row
    more = html.split('<details class="more-filters"')[1].split("</details>")[0]
    assert 'name="source"' in more and 'name="found_from"' in more and 'name="sort"' in more
    assert "更多筛选</summary>" in more
    set_two = login_as("office").get("/problems?source=hotline&found_from=2026-01-01&area=370102"
                                     ).text
    assert '更多筛选 <span class="count">(2)</span>' in set_two


def test_every_work_list_is_paged_to_the_end_of_its_count(login_as, db, world):
    from server.ledger.work import WORK_LIMIT

    today = clock.local_today()
    due = (today - dt.timedelta(days=1)).isoformat()
    ids = [add_problem(db, world, status="closed", description=f"回头看{n:03d}",
                       return_visit_due=due) for n in range(WORK_LIMIT * 2 + 5)]
    client = login_as("office")
    overview = queue(client.get("/work").text, "return_visit")
    assert f'<span class="count">{len(ids)}</span>' in overview
    assert "第 1 / 3 页" in overview
    assert 'href="/work?queue=return_visit&page=2"' in overview
    seen = set()
    for page in (1, 2, 3):
        html = client.get(f"/work?queue=return_visit&page={page}").text
        seen |= {problem_id for problem_id in ids if f"/problems/{problem_id}\"" in html}
        assert 'id="q-intake"' not in html  # one list alone
    assert seen == set(ids)
    last = client.get("/work?queue=return_visit&page=99").text
    assert "回头看" in last and 'rel="next"' not in last


def test_an_unknown_work_list_is_not_found(login_as):
    assert login_as("office").get("/work?queue=to_sign").status_code == 404
    assert login_as("handler1").get("/work?queue=intake").status_code == 404
    assert login_as("handler1").get("/work?queue=to_sign").status_code == 200


def test_home_lists_lead_to_their_whole_lists(login_as):
    html = login_as("office").get("/").text
    assert 'href="/problems">查看全部问题' in html
    html = login_as("field1").get("/").text
    assert 'href="/visits">查看全部走访' in html


def test_the_diary_and_visit_lists_page_to_the_end_of_their_counts(login_as, db, world):
    now = now_iso()
    with immediate(db):
        for n in range(55):
            visit_id = f"00000000-0000-4000-8000-{500 + n:012d}"
            db["visits"].insert({"id": visit_id, "author_id": world.users["field1"],
                                 "area_id": world.areas["v1"], "place": f"地点{n:03d}",
                                 "method": "sbls", "checklist": "[]", "started_at": now,
                                 "created_at": now, "updated_at": now})
            db["diary_entries"].insert({"id": f"00000000-0000-4000-8000-{700 + n:012d}",
                                        "visit_id": visit_id, "author_id": world.users["field1"],
                                        "area_id": world.areas["v1"], "person_kind": "resident",
                                        "content": f"日记{n:03d}", "recorded_at": now,
                                        "created_at": now, "updated_at": now})
    client = login_as("field1")
    for path, total, marker in (("/visits", 56, "/visits/00000000-0000-4000-8000-0000000005"),
                                ("/diary", 55, "日记0")):
        first = client.get(path).text
        assert f"共 {total} 条" in first
        assert 'rel="next"' in first
        last = client.get(f"{path}?page=2").text
        assert 'rel="next"' not in last
        shown = first.count(marker) + last.count(marker)
        assert shown >= 55, (path, shown)


# Dates out of range ---------------------------------------------------------------------


@pytest.mark.parametrize("query", [
    "found_to=9999-12-31", "closed_to=9999-12-31", "accepted_to=9999-12-31",
    "found_from=0001-01-01", "closed_from=3000-01-01",
])
def test_a_date_out_of_range_is_refused_with_400_and_a_message(login_as, world, query):
    client = login_as("office")
    name = query.split("=")[0]
    label = {"found": "发现时间", "closed": "办结时间", "accepted": "立案时间"}[name.split("_")[0]]
    page = client.get(f"/problems?{query}&status=submitted")
    assert page.status_code == 400
    assert "日期超出范围" in page.text and label in page.text
    assert "1900-01-01 至 2999-12-31" in page.text
    assert 'role="alert"' in page.text  # shown where the page shows a filter it ignored
    for export in ("csv", "xlsx"):
        response = client.get(f"/problems/export.{export}?{query}")
        assert response.status_code == 400
        assert response.headers["content-type"].startswith("text/html")
        assert "日期超出范围" in response.text and label in response.text


def test_the_ends_of_the_date_range_still_filter(login_as, world):
    client = login_as("office")
    assert client.get("/problems?found_from=1900-01-01&found_to=2999-12-31").status_code == 200
    response = client.get("/problems/export.csv?closed_from=1900-01-01&closed_to=2999-12-31")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")


def test_a_problem_read_for_its_page_carries_no_rowid(db, world):
    from server.ledger import problems
    from tests.ledger_helpers import load

    problem = problems.get_problem(db, load(db, world, "office"), world.problems["p1"])
    assert "rowid" not in problem
    assert problem["events"] and not [event for event in problem["events"] if "rowid" in event]
