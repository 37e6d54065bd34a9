"""The ledger list: every filter, search (Chinese bigrams), scope, sort, pages, bad parameters."""

from __future__ import annotations

import datetime as dt
import random
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.datastructures import QueryParams

from server import authz
from server.db import immediate
from server.db.dialect import POSTGRESQL
from server.ledger import queries, search
from server.timeutil import to_iso
from tests.ledger_helpers import add_problem, load


@pytest.fixture(autouse=True)
def time_to_count(monkeypatch):
    """Counts here are exact: a loaded test machine must not run out of the page's budget."""
    monkeypatch.setattr(queries, "COUNT_BUDGET_S", 30)


def ids(db, world, username: str, query: str = "") -> set[str]:
    f = queries.parse(QueryParams(query))
    f.page = 1
    rows = queries.list_rows(db, load(db, world, username), f)
    return {row["id"] for row in rows}


def names(world, found: set[str]) -> set[str]:
    by_id = {value: key for key, value in world.problems.items()}
    return {by_id.get(problem_id, problem_id) for problem_id in found}


# Search ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("漏水", {"p1"}),  # a two-character word
        ("物业", {"p3"}),
        ("物业不作为", {"p3"}),  # a 3+ character phrase must appear as written
        ("物业作为", set()),
        ("水压 杏花", {"p2"}),  # every part must match
        ("ZF-2026-000002", {"p2"}),  # a ledger number, on its unique index
        ("zf-2026-2", {"p2"}),
        ("000003", {"p3"}),  # a word of the ledger number
        ("漏", {"p1"}),  # one Chinese character: a prefix query
        ("水", {"p1", "p2"}),  # ... including the end of a run (渗水, 自来水)
        ("3", {"p1", "p3"}),  # one other character: LIKE (3号楼, ZF-2026-000003)
        ("不存在的词", set()),
        ("!!", set()),
    ],
)
def test_search(db, world, query, expected):
    found = ids(db, world, "office", f"q={query}")
    assert names(world, found) == expected


@pytest.mark.parametrize("query", ["漏水", "物业不作为", "水", "水压 杏花", "000003"])
def test_broad_search_gives_the_same_rows(db, world, monkeypatch, query):
    # A search matching many problems is checked row by row, read in sort order.
    narrow = ids(db, world, "office", f"q={query}")
    monkeypatch.setattr(queries, "SEARCH_DRIVE_MAX", 0)
    monkeypatch.setattr(queries, "COUNT_CAP", 0)
    assert ids(db, world, "office", f"q={query}") == narrow
    f = queries.parse(QueryParams(f"q={query}"))
    assert {row["id"] for row in queries.ledger(db, load(db, world, "office"), f)["rows"]} \
        == narrow
    assert f.broad_search


def test_a_search_is_listed_when_its_matches_are_few_and_checked_row_by_row_when_many(
        db, world, monkeypatch):
    def matched(found: search.Search) -> set[str]:
        return {row[0] for row in db.execute(
            f"SELECT p.id FROM problems p WHERE {found.sql}", found.params)}

    few = search.search_condition(db, "漏水")
    many = search.search_condition(db, "漏水", drive_max=0)
    assert few.listed and not few.broad and many.broad and many.listed is None
    assert matched(few) == matched(many) != set()
    if db.dialect.name == "postgresql":
        # Checked in the row, where the GIN index (and its guess) plays no part.
        assert many.sql.startswith("arraycontains(p.search_tokens")
        # A guess of many is taken without counting; one of few is counted.
        monkeypatch.setattr(search, "BROAD_GUESS", 0)
        assert search.search_condition(db, "漏水").broad
        monkeypatch.setattr(search, "BROAD_GUESS", 10**9)
        assert search.search_condition(db, "漏水").listed
        # After the ordered read failed, the planner may start from the index.
        late = search.search_condition(db, "漏水", drive_max=search.SEARCH_DRIVE_MAX + 1)
        assert late.sql.startswith("p.search_tokens @>") and matched(late) == matched(few)


@pytest.mark.sqlite_only  # traces SQLite's statements for its INDEXED BY hint
@pytest.mark.parametrize("query", ["q=漏水", "q=水&sort=ledger_no&dir=asc",
                                   "q=水&sort=deadline&dir=desc"])
def test_a_page_not_found_in_order_in_time_reads_the_matches_first(db, world, monkeypatch,
                                                                   query):
    """The ordered read runs out of time: the matches are read first, through the id index."""
    expected = queries.ledger(db, load(db, world, "office"),
                                   queries.parse(QueryParams(query)))["rows"]
    monkeypatch.setattr(queries, "SEARCH_DRIVE_MAX", 0)
    monkeypatch.setattr(queries, "COUNT_CAP", 0)
    monkeypatch.setattr(queries, "ORDERED_BUDGET_S", 0)
    statements = []
    db.conn.set_trace_callback(statements.append)
    try:
        rows = queries.ledger(db, load(db, world, "office"),
                                   queries.parse(QueryParams(query)))["rows"]
    finally:
        db.conn.set_trace_callback(None)
    assert [row["id"] for row in rows] == [row["id"] for row in expected]
    assert any(f"INDEXED BY {queries.ID_INDEX}" in sql for sql in statements)


def test_search_covers_place_and_resident_and_follows_edits(db, world):
    extra = add_problem(db, world, description="路面坑洼", place="人民路口", resident_name="赵大爷")
    assert ids(db, world, "office", "q=人民路") == {extra}
    assert ids(db, world, "office", "q=赵大爷") == {extra}
    with immediate(db):
        db["problems"].update(extra, {"description": "井盖缺失"})
    assert ids(db, world, "office", "q=坑洼") == set()
    assert ids(db, world, "office", "q=井盖") == {extra}
    # A status change does not touch the index, and search still finds the row.
    with immediate(db):
        db["problems"].update(extra, {"status": "dispatched"})
    assert ids(db, world, "office", "q=井盖") == {extra}


def test_fts_query_shapes():
    assert search.fts_query(search.parse_query("漏水")) == '"漏水"'
    assert search.fts_query(search.parse_query("物业不作为")) == '"物业 业不 不作 作为"'
    assert search.fts_query(search.parse_query("漏")) == '"漏"*'
    assert search.fts_query(search.parse_query("3号楼 ABC")) == '"3" "号楼" "ABC"'
    assert search.fts_query(search.parse_query('"，。')) is None


# Filters -----------------------------------------------------------------------------


def test_every_filter(db, world):
    a, w = world.areas, world
    day = dt.datetime(2026, 3, 10, 2, 0, tzinfo=dt.UTC)  # 10:00 in Shanghai
    target = add_problem(
        db, w, status="handling", lead_unit_id=w.units["u1"], source="hotline",
        urgency="critical", supervision="flagged", reporter_id=w.users["field2"],
        area_id=a["v1"], deadline="2020-01-01", found_at=to_iso(day),
        accepted_at=to_iso(day + dt.timedelta(days=1)),
        closed_at=to_iso(day + dt.timedelta(days=5)),
    )
    cases = {
        "status=handling": {"p3", target},
        "category=999": set(),
        f"category={w.category}": {"p1", "p2", "p3", target},
        "area=370103": {"p2"},  # district d2's subtree
        "area=370102001001": {"p1", "p3", target},  # the community v1 and its grid
        f"unit={w.units['u2']}": {"p2"},
        "source=hotline": {target},
        "urgency=critical": {target},
        "overdue=yes": {target},
        "overdue=no": {"p1", "p2", "p3"},
        "supervision=flagged": {target},
        "supervision=none": {"p1", "p2", "p3"},
        f"reporter={w.users['field2']}": {"p2", "p3", target},
        "found_from=2026-03-10&found_to=2026-03-10": {target},
        "found_to=2026-03-09": set(),
        "accepted_from=2026-03-11&accepted_to=2026-03-11": {target},
        "closed_from=2026-03-15": {target},
        "closed_to=2026-03-14": set(),
        # Combinations: every condition holds.
        f"status=handling&unit={w.units['u1']}&q=物业": {"p3"},
        "area=370102&overdue=yes&urgency=critical": {target},
        "area=370103&source=hotline": set(),
    }
    for query, expected in cases.items():
        found = names(w, ids(db, w, "office", query))
        assert found == {names(w, {e}).pop() for e in expected}, query


def test_local_days_bound_the_date_filters(db, world):
    # 23:30 on 9 March in Shanghai is 15:30 UTC: it belongs to 9 March, not the 10th.
    late = add_problem(db, world, found_at="2026-03-09T15:30:00+00:00")
    assert ids(db, world, "office", "found_from=2026-03-09&found_to=2026-03-09") == {late}
    assert ids(db, world, "office", "found_from=2026-03-10&found_to=2026-03-10") == set()


# Scope -------------------------------------------------------------------------------


def test_handler_sees_only_own_unit(db, world):
    assert names(world, ids(db, world, "handler1")) == {"p3"}
    # Asking for the other unit's problems gives nothing, not them.
    assert ids(db, world, "handler1", f"unit={world.units['u2']}") == set()
    assert ids(db, world, "handler1", "q=水压") == set()


def test_district_office_never_sees_other_district(db, world):
    assert names(world, ids(db, world, "office_d1")) == {"p1", "p3"}
    assert ids(db, world, "office_d1", "area=370103") == set()
    assert ids(db, world, "office_d1", "q=ZF-2026-000002") == set()
    counts = queries.status_counts(db, load(db, world, "office_d1"), queries.Filter())
    assert counts["dispatched"] == 0 and counts["submitted"] == 1 and counts["handling"] == 1


# Counts, sort and pages --------------------------------------------------------------------


def test_counts_per_state_follow_the_other_filters(db, world):
    user = load(db, world, "office")
    f = queries.parse(QueryParams("status=handling&q=水"))
    counts = queries.status_counts(db, user, f)
    # The state tabs ignore the state filter itself: 水 is in p1 (submitted) and p2 (dispatched).
    assert counts["submitted"] == 1 and counts["dispatched"] == 1 and counts["handling"] == 0
    assert str(queries.total(counts, f)) == "0"


def test_counts_are_capped(db, world, monkeypatch):
    monkeypatch.setattr(queries, "COUNT_CAP", 2)
    for _ in range(3):
        add_problem(db, world, status="submitted")
    user = load(db, world, "office")
    f = queries.Filter()
    counts = queries.status_counts(db, user, f)
    assert counts["submitted"] == 3  # the cap plus one: "more than the cap"
    total = queries.total(counts, f)
    assert total.capped and str(total) == "2+"


def test_uncountable_counts_show_as_unknown(db, world, monkeypatch):
    monkeypatch.setattr(queries, "COUNT_BUDGET_S", -1)  # no time to count at all
    data = queries.ledger(db, load(db, world, "office"), queries.Filter())
    assert str(data["total"]) == "…" and data["total"].many
    assert len(data["rows"]) == 3 and data["pages"] == 1


@pytest.mark.parametrize("many", [False, True])
def test_sort_and_pages_are_stable(db, world, many, monkeypatch):
    if many:  # read through the sort order's index (as with a million problems)
        monkeypatch.setattr(queries, "COUNT_CAP", 1)
    same_time = "2026-01-05T01:00:00+00:00"
    made = {add_problem(db, world, found_at=same_time, deadline=f"2026-02-{n % 20 + 1:02d}")
            for n in range(120)}
    user = load(db, world, "office")
    for sort in queries.SORTS:
        pages = {}
        for direction in ("asc", "desc"):
            seen = []
            for page in (1, 2, 3):
                f = queries.parse(QueryParams(
                    f"sort={sort}&dir={direction}&page={page}&found_to=2026-01-05"))
                seen += [row["id"] for row in queries.ledger(db, user, f)["rows"]]
            assert len(seen) == len(set(seen)) == 120, sort
            assert set(seen) == made
            pages[direction] = seen
        assert pages["asc"] == pages["desc"][::-1], sort
    f = queries.parse(QueryParams("sort=deadline&dir=asc&found_to=2026-01-05"))
    deadlines = [row["deadline"] for row in queries.list_rows(db, user, f)]
    assert deadlines == sorted(deadlines)


# The index that drives a page -------------------------------------------------------------

DRIVEN_QUERIES = [
    "accepted_from=2026-01-01&status=closed",
    "accepted_from=2026-01-10&accepted_to=2026-01-20&closed_to=2026-03-01",
    "found_from=2026-01-05&found_to=2026-01-12&q=漏水",
    "closed_from=2026-01-01&status=closed&sort=deadline",
    "status=closed&urgency=urgent",
    "category={category}&unit={unit}&status=closed",
    "source=hotline&supervision=flagged&sort=ledger_no&dir=asc",
    "reporter={reporter}&q=水",
    "urgency=critical&area=370102",
    "area=370102001&overdue=yes&sort=deadline&dir=asc",
    "area=370103&q=水",
    "page=2",
    "found_from=2026-01-05&found_to=2026-01-20&sort=deadline&dir=desc",
    "found_from=2026-01-05&sort=deadline&page=2",
    "reporter={reporter}&sort=status&dir=desc",
    "q=漏水&sort=ledger_no&dir=desc",
]


@pytest.mark.parametrize("narrow_max", [0, 10, 10_000])
@pytest.mark.parametrize("count_cap", [3, 10_000])
@pytest.mark.parametrize("area_max", [0, 10_000])
def test_a_driven_page_is_the_page_the_planner_gives(db, world, monkeypatch, narrow_max,
                                                    count_cap, area_max):
    """Whichever index choose_drive() picks, the rows and counts are the same."""
    rng = random.Random(7)
    start = dt.datetime(2026, 1, 1, 2, 0, tzinfo=dt.UTC)
    for n in range(90):
        found = start + dt.timedelta(hours=rng.randint(0, 24 * 40))
        status = rng.choice(["accepted", "handling", "closed", "closed", "dispatched"])
        add_problem(
            db, world, status=status, found_at=to_iso(found),
            accepted_at=to_iso(found + dt.timedelta(hours=rng.randint(1, 48))),
            closed_at=to_iso(found + dt.timedelta(days=rng.randint(2, 30)))
            if status == "closed" else None,
            deadline=rng.choice([None, f"2026-02-{rng.randint(1, 28):02d}"]),
            urgency=rng.choice(["normal", "urgent", "critical"]),
            source=rng.choice(["visit", "hotline"]),
            supervision=rng.choice(["none", "flagged"]),
            lead_unit_id=rng.choice([None, *world.units.values()]),
            reporter_id=rng.choice([world.users["field1"], world.users["field2"]]),
            area_id=rng.choice([world.areas["g1"], world.areas["v2"]]),
            description=rng.choice(["楼道漏水", "自来水水压不足", "路灯不亮"]) + str(n),
        )
    monkeypatch.setattr(queries, "COUNT_CAP", count_cap)
    monkeypatch.setattr(queries, "NARROW_MAX", narrow_max)
    monkeypatch.setattr(queries, "AREA_DRIVE_MAX", area_max)
    user = load(db, world, "office")
    for template in DRIVEN_QUERIES:
        query = template.format(category=world.category, unit=world.units["u1"],
                                reporter=world.users["field2"])
        driven = queries.ledger(db, user, queries.parse(QueryParams(query)))
        with monkeypatch.context() as plain:
            plain.setattr(queries, "choose_drive", lambda db, user, f: None)
            expected = queries.ledger(db, user, queries.parse(QueryParams(query)))
        assert [row["id"] for row in driven["rows"]] == [row["id"] for row in expected["rows"]]
        assert driven["rows"], query
        if None not in {count.value for count in driven["counts"].values()} | {
                count.value for count in expected["counts"].values()}:
            assert driven["counts"] == expected["counts"], query


@pytest.mark.sqlite_only  # SQLite's planner steering (the drive chosen); PostgreSQL plans itself
def test_a_narrow_date_range_drives_the_page(db, world):
    office = load(db, world, "office")
    f = queries.parse(QueryParams("accepted_from=2026-03-01&status=closed"))
    queries.choose_drive(db, office, f)
    assert f.narrow and f.drive_index == queries.DATE_INDEXES["accepted"]
    f = queries.parse(QueryParams("urgency=critical"))
    queries.choose_drive(db, office, f)
    assert f.narrow and f.drive_index == "idx_problems_urgency_found"


class PlansItself:
    """A database whose engine plans with statistics; any query is a failure."""
    dialect = POSTGRESQL

    def execute(self, *args):
        raise AssertionError("no query expected")


@pytest.mark.parametrize("query", ["accepted_from=2026-03-01&overdue=yes", "status=closed",
                                   "area=370102&supervision=flagged", ""])
def test_an_engine_that_plans_itself_is_left_to_plan_one_filter(query):
    f = queries.parse(QueryParams(query))
    queries.choose_drive(PlansItself(), None, f)
    assert (f.drive_index, f.narrow, f.presorted, f.rowids) == (None, False, False, None)
    assert f.drive_clause(POSTGRESQL) == ""


@pytest.mark.parametrize("narrow_max", [0, 3, 10_000])
def test_filters_that_may_be_correlated_are_read_as_a_list_of_rowids(db, world, monkeypatch,
                                                                    narrow_max):
    """planned_drive (PostgreSQL's choose_drive): two filters, the narrowest read as rowids
    when few enough; never a state's, whose rowids would empty the other states' counts."""
    for n in range(6):
        add_problem(db, world, status="closed", accepted_at=f"2026-03-0{n + 1}T02:00:00Z",
                    closed_at=f"2026-03-{n + 10}T02:00:00Z", urgency="critical")
    monkeypatch.setattr(queries, "NARROW_MAX", narrow_max)
    office = load(db, world, "office")
    for query in ("accepted_from=2026-03-01&accepted_to=2026-03-02&closed_to=2026-03-11"
                  "&status=closed", "urgency=critical&status=closed&accepted_from=2026-03-04",
                  "status=closed&urgency=critical"):
        f = queries.parse(QueryParams(query))
        queries.planned_drive(db, office, f)
        listed = f.rowids is not None
        assert listed == (f.drive_index == queries.BY_ROWID)
        assert not listed or len(f.rowids) <= narrow_max
        if query.startswith("accepted_from=2026-03-01&accepted_to"):  # two problems
            assert listed == (narrow_max >= 2)
        driven = queries.ledger(db, office, f)
        with monkeypatch.context() as plain:
            plain.setattr(queries, "choose_drive", lambda db, user, f: None)
            expected = queries.ledger(db, office, queries.parse(QueryParams(query)))
        assert [row["id"] for row in driven["rows"]] == [row["id"] for row in expected["rows"]]
        assert driven["rows"], query
        if listed:
            assert driven["counts"] == expected["counts"]
            assert sum(count.value for count in driven["counts"].values()) == len(
                driven["rows"])


@pytest.mark.parametrize("query", ["q=漏水", "q=水&sort=ledger_no&dir=asc",
                                   "q=水&sort=deadline&dir=desc", "sort=status&dir=asc"])
def test_a_page_read_after_the_ordered_read_ran_out_of_time_is_the_same(db, world,
                                                                        monkeypatch, query):
    """Out of time in sort order, the matches are read first (on PostgreSQL in an order no
    index gives, ``order_by(unindexed=True)``): the same rows."""
    expected = queries.ledger(db, load(db, world, "office"), queries.parse(QueryParams(query)))
    monkeypatch.setattr(queries, "SEARCH_DRIVE_MAX", 0)
    monkeypatch.setattr(queries, "COUNT_CAP", 0)
    monkeypatch.setattr(queries, "ORDERED_BUDGET_S", 0)
    rows = queries.ledger(db, load(db, world, "office"), queries.parse(QueryParams(query)))
    assert [row["id"] for row in rows["rows"]] == [row["id"] for row in expected["rows"]]
    assert rows["rows"]


def test_the_order_no_index_gives_is_the_same_order():
    f = queries.Filter(sort="status", dir="asc")
    assert queries.order_by(f, unindexed=True) == (
        "p.status || '' ASC NULLS FIRST, p.found_at || '' ASC NULLS FIRST,"
        " p.rowid + 0 ASC NULLS FIRST")


def test_the_order_puts_null_first_ascending_and_last_descending():
    """SQLite's order of NULL, spelt so that PostgreSQL (NULL last ascending) sorts alike."""
    assert queries.order_by(queries.Filter(sort="deadline", dir="asc")) == (
        "p.deadline ASC NULLS FIRST, p.rowid ASC NULLS FIRST")
    assert queries.order_by(queries.Filter(sort="status", dir="desc")) == (
        "p.status DESC NULLS LAST, p.found_at DESC NULLS LAST, p.rowid DESC NULLS LAST")


@pytest.mark.sqlite_only  # SQLite's planner steering (the drive chosen); PostgreSQL plans itself
def test_a_broad_search_within_an_area_is_read_from_the_areas_keys(db, world, monkeypatch):
    """A word with many matches in the whole ledger but few in the area: listed, not checked
    row by row, and the page drives by those matches."""
    monkeypatch.setattr(queries, "SEARCH_DRIVE_MAX", 2)
    elsewhere = {add_problem(db, world, area_id=world.areas["v2"], description="楼道漏水")
                 for _ in range(3)}
    here = {add_problem(db, world, area_id=world.areas["g1"], description="屋顶漏水"),
            world.problems["p1"]}
    office = load(db, world, "office")
    f = queries.parse(QueryParams("area=370102001&q=漏水"))
    data = queries.ledger(db, office, f)
    assert {row["id"] for row in data["rows"]} == here
    assert not f.broad_search and f.drive_index == queries.ID_INDEX
    assert sum(count.value for count in data["counts"].values()) == 2
    # Without an area filter, the whole city: too many to list.
    f = queries.parse(QueryParams("q=漏水"))
    data = queries.ledger(db, office, f)
    assert f.broad_search and {row["id"] for row in data["rows"]} == here | elsewhere
    # A district office's own area bounds the search like a filter.
    f = queries.parse(QueryParams("q=漏水"))
    data = queries.ledger(db, load(db, world, "office_d1"), f)
    assert not f.broad_search and {row["id"] for row in data["rows"]} == here
    # An area with more matches than may be listed: checked row by row, still right.
    f = queries.parse(QueryParams("area=370103&q=漏水"))
    data = queries.ledger(db, office, f)
    assert f.broad_search and {row["id"] for row in data["rows"]} == elsewhere
    # No match in the area at all.
    f = queries.parse(QueryParams("area=370102001&q=楼道漏水"))
    assert queries.ledger(db, office, f)["rows"] == []
    assert not f.broad_search


def test_search_keys_follow_the_problems_area(db, world, monkeypatch):
    monkeypatch.setattr(queries, "SEARCH_DRIVE_MAX", 0)
    moved = add_problem(db, world, area_id=world.areas["g1"], description="井盖丢失")

    def found(area: str) -> set[str]:
        return ids(db, world, "office", f"area={area}&q=井盖") & {moved}

    assert found("370102") == {moved} and found("370103") == set()
    with immediate(db):
        db.execute("UPDATE problems SET area_id = ? WHERE id = ?", [world.areas["v2"], moved])
    assert found("370102") == set() and found("370103") == {moved}
    assert db.execute(
        "SELECT count(*) FROM problem_search_keys k JOIN problems p ON p.id = k.problem_id"
        " WHERE k.area_id IS DISTINCT FROM p.area_id").fetchone() == (0,)


# Bad parameters ---------------------------------------------------------------------------


def test_bad_parameters_are_ignored_with_a_notice(login_as, world):
    client = login_as("office")
    response = client.get(
        "/problems?category=abc&unit=1e9&found_from=2026-13-45&status=nope&page=-1"
        "&area=../x&sort=evil;drop&dir=up&overdue=maybe&reporter=%00&q=" + "漏" * 300
    )
    assert response.status_code == 200
    assert "已忽略" in response.text
    for label in ("类别", "责任单位", "发现时间（起）", "状态", "页码", "区域", "排序"):
        assert label in response.text
    response = client.get("/problems?area=999999")  # well-formed but unknown
    assert response.status_code == 200 and "已忽略" in response.text


def test_the_page_keeps_every_filter_in_links(login_as, world):
    client = login_as("office")
    response = client.get("/problems?q=漏水&urgency=normal&sort=deadline&dir=asc")
    assert response.status_code == 200
    assert world.problems["p1"] in response.text
    assert world.problems["p3"] not in response.text
    links = re.findall(r'href="/problems\?([^"]*)"', response.text)
    assert any("status=submitted" in link and "urgency=normal" in link and "sort=deadline" in link
               for link in links)
    assert 'value="漏水"' in response.text


# Random combinations -------------------------------------------------------------------------

FIXTURES = [HealthCheck.function_scoped_fixture]
FILTER_VALUES = {
    "status": st.sampled_from(["submitted", "handling", "closed", "bogus", ""]),
    "category": st.sampled_from(["1", "2", "x", ""]),
    "area": st.sampled_from(["370102", "370103", "370102001001001", "nope", ""]),
    "unit": st.sampled_from(["1", "2", "-1", ""]),
    "source": st.sampled_from(["visit", "hotline", "x", ""]),
    "urgency": st.sampled_from(["normal", "critical", ""]),
    "overdue": st.sampled_from(["yes", "no", "?", ""]),
    "supervision": st.sampled_from(["none", "flagged", ""]),
    "found_from": st.sampled_from(["2026-01-01", "2026-02-30", ""]),
    "q": st.sampled_from(["漏水", "物业", "水", "3", "ZF-2026-000003", "a\"b", "", "%_"]),
    "sort": st.sampled_from(list(queries.SORTS) + ["x"]),
    "dir": st.sampled_from(["asc", "desc", "x"]),
    "page": st.sampled_from(["1", "2", "0", "abc"]),
}


def _matches(row: dict, f: queries.Filter, areas: dict, today: str) -> bool:
    checks = [
        f.status is None or row["status"] == f.status,
        f.category is None or row["category_id"] == f.category,
        f.unit is None or row["lead_unit_id"] == f.unit,
        f.source is None or row["source"] == f.source,
        f.urgency is None or row["urgency"] == f.urgency,
        f.supervision is None or row["supervision"] == f.supervision,
        f.area is None or areas[row["area_id"]].startswith(areas[f.area]),
        f.found_from is None or row["found_at"] >= queries.local_day_start(f.found_from),
    ]
    overdue = row["status"] not in ("closed", "rejected", "merged") and bool(
        row["deadline"] and row["deadline"] < today)
    checks.append(f.overdue is None or overdue == (f.overdue == "yes"))
    if f.q and len(f.q) > 1 and not f.q.startswith("ZF"):
        text = row["description"] + row["place"] + row["resident_name"]
        checks.append(all(part in text for part in f.q.split()))
    return all(checks)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=FIXTURES)
@given(params=st.fixed_dictionaries({}, optional=FILTER_VALUES),
       search_drive_max=st.sampled_from([0, 1, search.SEARCH_DRIVE_MAX]))
def test_random_filters_never_fail_and_rows_match(db, world, monkeypatch, params,
                                                  search_drive_max):
    # A small SEARCH_DRIVE_MAX makes every search broad, to be listed within an area or not.
    monkeypatch.setattr(queries, "SEARCH_DRIVE_MAX", search_drive_max)
    for username in ("office", "office_d1", "handler1", "field1"):
        user = load(db, world, username)
        f = queries.parse(QueryParams(params))
        data = queries.ledger(db, user, f)
        areas = {row[0]: row[1] for row in db.execute("SELECT id, path FROM areas")}
        areas.update({row[0]: row[1] for row in db.execute("SELECT code, path FROM areas")})
        scope, scope_params = authz.problem_scope(user, "p")
        visible = {row[0] for row in db.execute(
            f"SELECT p.id FROM problems p WHERE {scope}", scope_params)}
        today = queries.local_today().isoformat()
        for listed in data["rows"]:
            row = next(db.query("SELECT * FROM problems WHERE id = ?", [listed["id"]]))
            assert row["id"] in visible
            assert _matches(row, f, areas, today), (params, row)
        if not f.broad_search:
            assert sum(c.value for c in data["counts"].values()) >= len(data["rows"])
        oracle_knows_q = not f.q or (len(f.q) > 1 and not f.q.startswith("ZF"))
        if data["total"].value is not None and not data["total"].capped and oracle_knows_q:
            expected = [row for row in db.query(
                f"SELECT * FROM problems p WHERE {scope}", scope_params)
                if _matches(row, f, areas, today)]
            assert data["total"].value == len(expected), params


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURES)
@given(params=st.fixed_dictionaries({}, optional=FILTER_VALUES))
def test_random_filters_over_http_never_500(client, world, params):
    from tests.conftest import login

    if "fl_session" not in client.cookies:
        login(client, "office")
    response = client.get("/problems", params=params)
    assert response.status_code == 200


@pytest.mark.sqlite_only  # SQLite's planner steering (the drive chosen); PostgreSQL plans itself
def test_two_filters_that_rarely_meet_drive_by_their_common_rows(db, world, monkeypatch):
    monkeypatch.setattr(queries, "NARROW_MAX", 1)
    for _ in range(2):  # the unit's other problems have no category
        add_problem(db, world, category_id=None, lead_unit_id=world.units["u1"])
    f = queries.parse(QueryParams(
        f"category={world.category}&unit={world.units['u1']}"))
    data = queries.ledger(db, load(db, world, "office"), f)
    assert f.drive_index == queries.BY_ROWID and f.narrow
    assert [row["id"] for row in data["rows"]] == [world.problems["p3"]]
    assert str(data["total"]) == "1" and data["counts"]["handling"].value == 1


@pytest.mark.sqlite_only  # SQLite's planner steering (the drive chosen); PostgreSQL plans itself
def test_a_problem_moved_out_of_scope_between_the_reads_is_not_shown(db, world, monkeypatch):
    """Few matches are read once, then the page's rows: the scope holds for both."""
    moved = add_problem(db, world, urgency="critical", lead_unit_id=world.units["u1"],
                        status="handling")
    handler = load(db, world, "handler1")
    read_once = queries.matches_in_one_read

    def then_redispatched(db, user, f):
        matches = read_once(db, user, f)
        with immediate(db):
            db.execute("UPDATE problems SET lead_unit_id = ? WHERE id = ?",
                       [world.units["u2"], moved])
        return matches

    monkeypatch.setattr(queries, "matches_in_one_read", then_redispatched)
    f = queries.parse(QueryParams("urgency=critical"))
    data = queries.ledger(db, handler, f)
    assert queries.reads_once(f)
    assert moved not in {row["id"] for row in data["rows"]}
