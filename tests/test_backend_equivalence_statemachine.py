"""The same random workflow actions and pushes, on SQLite and on PostgreSQL at once: after
every step both keep the same roll-up, the same change log order of entities and the same
statistics totals (docs/postgresql.md 5.4, item 5)."""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import shutil
import uuid

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from starlette.testclient import TestClient

from server import auth
from server.app import create_app
from server.db import immediate, open_database
from server.errors import NotFound
from server.ledger import clock as ledger_clock
from server.ledger import metrics, workflow
from server.ledger.states import TransitionError
from server.timeutil import LOCAL_TZ
from server.validation import ValidationError
from tests.conftest import build_world
from tests.sync_helpers import phone
from tests.test_backend_equivalence import as_json, table_rows

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

START = dt.datetime(2026, 11, 2, 10, tzinfo=LOCAL_TZ).astimezone(dt.UTC)  # a Monday
FOUND_AT = "2026-10-20T02:00:00+00:00"
REPORTERS = ("field1", "field2")
AREAS = {"field1": ("t1", "v1", "g1"), "field2": ("t2", "v2")}
TEXT = st.text(alphabet="漏水路灯不亮供水ab 12", min_size=1, max_size=12).filter(str.strip)
# Who takes each action, and what they send (the lead unit's handler: by the unit).
ACTORS = {"office": "office", "leader": "leader", "handler": None, "field": "field1"}
ACTION_DATA = st.fixed_dictionaries({
    "category_id": st.just(1),
    "urgency": st.sampled_from(["normal", "urgent"]),
    "note": st.sampled_from(["处理意见", "已联系居民"]),
    "lead_unit_id": st.sampled_from([1, 2]),
    "time_limit_days": st.sampled_from(["", "1", "5"]),
    "contacted": st.sampled_from(["1", "0"]),
    "outcome": st.sampled_from(["solved", "partial", "unsolved"]),
    "method": st.just("phone"),
    "result": st.sampled_from(["reached", "no_answer"]),
    "solved": st.sampled_from(["1", "0"]),
    "satisfaction": st.sampled_from(["satisfied", "basically", "unsatisfied"]),
    "extra_days": st.sampled_from(["2", "30"]),
    "held": st.sampled_from(["1", "0"]),
})
USERS = ("office", "office_d1", "leader_d2", "field1", "handler1")


def event_id(numbers) -> str:
    """The workflow's event ids, alike on both backends (the change log names them)."""
    return str(uuid.UUID(int=next(numbers)))


class Backend:
    """One backend's ledger: the app its phones push to, and a connection for the actions."""

    def __init__(self, target, photos):
        self.app = create_app(target, photos=photos)
        self.client = TestClient(self.app)
        self.client.__enter__()
        self.db = open_database(target)
        self.phones = {username: phone(self.client, username) for username in REPORTERS}

    def close(self):
        self.db.close()
        self.client.__exit__(None, None, None)


class SameOnBoth(RuleBasedStateMachine):
    """Set up by ``run``: ``targets`` gives each example its two fresh ledgers."""

    targets = None

    def __init__(self):
        super().__init__()
        (lite, pg), self.world, self.cleanup = self.targets()
        self.backends = (Backend(*lite), Backend(*pg))
        self.now = START
        self.event_numbers = itertools.count(1)

    # Rules --------------------------------------------------------------------

    @rule(reporter=st.sampled_from(REPORTERS), data=st.data(), description=TEXT)
    def report(self, reporter, data, description):
        area = data.draw(st.sampled_from(AREAS[reporter]), label="area")
        args = {"id": str(uuid.uuid4()), "description": description, "found_at": FOUND_AT,
                "area_id": self.world.areas[area]}
        for backend in self.backends:
            backend.phones[reporter].capture("problem.report", args)

    @rule(reporter=st.sampled_from(REPORTERS))
    def push(self, reporter):
        for backend in self.backends:
            backend.phones[reporter].sync()

    @rule(data=st.data(), values=ACTION_DATA)
    def act(self, data, values):
        """An action the problem's state allows for one of its actors (mostly), or any."""
        lite = self.backends[0].db
        problems = [row[0] for row in lite.execute("SELECT id FROM problems ORDER BY id")]
        problem_id = data.draw(st.sampled_from(problems), label="problem")
        allowed = sorted({(action, role) for role in ACTORS
                          for action in self.allowed(lite, problem_id, role)})
        if allowed and data.draw(st.integers(0, 9), label="allowed") > 0:
            action, role = data.draw(st.sampled_from(allowed), label="action")
        else:
            action = data.draw(st.sampled_from(sorted(workflow.ACTIONS)), label="action")
            role = sorted(workflow.ACTIONS[action].roles)[0]
        outcomes = []
        first_event = next(self.event_numbers) * 100
        for backend in self.backends:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(workflow, "uuid7", functools.partial(
                    event_id, itertools.count(first_event)))
                outcomes.append(self.apply(backend.db, problem_id, action, role, values))
        assert outcomes[0] == outcomes[1]

    @rule(days=st.integers(1, 12))
    def later(self, days):
        self.now += dt.timedelta(days=days)

    def actor(self, db, problem_id, role):
        username = ACTORS[role] or self.handler_of(db, problem_id)
        return auth.load_user(db, self.world.users[username])

    def allowed(self, db, problem_id, role) -> list[str]:
        user = self.actor(db, problem_id, role)
        try:
            problem = workflow.load(db, user, problem_id)
        except NotFound:
            return []
        return workflow.allowed_actions(db, problem, user)

    def apply(self, db, problem_id, action, role, values) -> str:
        user = self.actor(db, problem_id, role)
        try:
            with immediate(db):
                workflow.apply(db, user, problem_id, action, values)
        except (TransitionError, ValidationError, NotFound) as error:
            return type(error).__name__
        return "applied"

    def handler_of(self, db, problem_id) -> str:
        unit = db.execute("SELECT lead_unit_id FROM problems WHERE id = ?",
                          [problem_id]).fetchone()[0]
        return "handler2" if unit == self.world.units["u2"] else "handler1"

    # What must hold -------------------------------------------------------------

    @invariant()
    def same_rollup_changes_and_totals(self):
        lite, pg = (backend.db for backend in self.backends)
        assert table_rows(lite, "stats_rollup") == table_rows(pg, "stats_rollup")
        order = "SELECT entity, entity_id, deleted FROM changes ORDER BY version"
        assert [tuple(row) for row in lite.execute(order)] == [
            tuple(row) for row in pg.execute(order)]
        today = self.now.astimezone(LOCAL_TZ).date()
        for username in USERS:
            for period in (metrics.Period(today - dt.timedelta(days=70), today),
                           metrics.Period(dt.date(2026, 11, 2), dt.date(2026, 11, 29))):
                figures = [
                    as_json(metrics.totals(db, auth.load_user(db, self.world.users[username]),
                                           period))
                    for db in (lite, pg)]
                assert figures[0] == figures[1], (username, period)

    def teardown(self):
        for backend in self.backends:
            backend.close()
        self.cleanup()


@pytest.fixture
def ledger_clock_at(monkeypatch):
    """Lets the machine move the ledger's clock."""
    holder = {"machine": None}
    monkeypatch.setattr(ledger_clock, "utcnow",
                        lambda: holder["machine"].now if holder["machine"] else START)
    return holder


def test_both_backends_stay_the_same(pg_databases, tmp_path_factory, ledger_clock_at):
    folder = tmp_path_factory.mktemp("equivalent")
    lite_world = folder / "world.db"
    db = open_database(lite_world)
    world = build_world(db)
    db.close()
    pg_world = pg_databases.create(template=pg_databases.empty)
    db = open_database(pg_databases.url_of(pg_world))
    build_world(db)
    db.close()
    examples = itertools.count(1)

    def targets():
        number = next(examples)
        lite = folder / f"ledger{number}.db"
        shutil.copyfile(lite_world, lite)
        pg = pg_databases.create(template=pg_world)

        def cleanup():
            pg_databases.drop(pg)
            lite.unlink()

        return ((lite, folder / f"photos{number}"),
                (pg_databases.url_of(pg), folder / f"pg-photos{number}")), world, cleanup

    class Machine(SameOnBoth):
        def __init__(self):
            super().__init__()
            ledger_clock_at["machine"] = self

    Machine.targets = staticmethod(targets)
    try:
        run_state_machine_as_test(Machine, settings=settings(
            max_examples=30, stateful_step_count=40, deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                   HealthCheck.function_scoped_fixture]))
    finally:
        pg_databases.drop(pg_world)
