"""The compiled schema check answers as jsonschema does."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from sync.schema_check import compile_check
from sync.schemas import MUTATION, MUTATIONS, PUSH_BODY

UUID = "6f1c1f3e-2d6a-4d1e-9b7a-2c6d7f0e9a11"
SHA = "3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b"
VALID = {
    "visit.save": {"id": UUID, "method": "ruhu", "started_at": "2026-05-01T09:30:00+08:00",
                   "checklist": ["no_notice", "direct_scene"], "photos": [SHA], "lat": 36.6,
                   "ended_at": None, "area_id": 4, "place": "幸福小区"},
    "diary.save": {"id": UUID, "person_kind": "resident", "content": "反映取暖费用偏高",
                   "recorded_at": "2026-05-01T09:30:00Z", "visit_id": UUID, "phone": "139 1234"},
    "problem.report": {"id": UUID, "description": "楼顶漏水",
                       "found_at": "2026-05-01T10:12:00+08:00", "urgency": "urgent",
                       "category_id": 2, "lng": 117.12, "photos": [SHA],
                       "solved_on_spot": {"note": "已修好", "photos": []}},
    "problem.note": {"id": UUID, "problem_id": UUID, "at": "2026-05-01T10:12:00+08:00",
                     "note": "回访"},
    "problem.edit": {"problem_id": UUID, "base_version": 3,
                     "changes": {"description": "改正", "area_id": None}},
}
SCHEMAS = {**MUTATIONS, "mutation": MUTATION, "push": PUSH_BODY}
VALID["mutation"] = {"id": 1, "name": "problem.report", "args": {}}
VALID["push"] = {"client_id": UUID, "schema_version": 1, "mutations": [{"id": 1}]}

SCALARS = (
    st.none() | st.booleans() | st.integers(-2, 2**54) | st.sampled_from([2**53, 2**53 + 1])
    | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([1.0, 90.0, 90.5, -0.0])
    | st.text(max_size=8) | st.sampled_from(
        ["", " ", "\n", UUID, UUID.upper(), UUID + "\n", SHA, "ruhu", "urgent", "resident",
         "2026-05-01T10:12:00Z", "2026-05-01 10:12", "x" * 51, "漏" * 2001, "+86 (10) 1-2"])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["id", "note", "photos", "name", "args", "x"]), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def near_valid(draw, name: str):
    """A valid instance with a few fields replaced, removed or added."""
    instance = dict(VALID[name])
    properties = list(SCHEMAS[name]["properties"]) + ["unknown"]
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(properties))
        if draw(st.booleans()) and key in instance:
            del instance[key]
        else:
            instance[key] = draw(VALUES)
    return instance


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_valid_examples_pass_both(name):
    assert Draft202012Validator(SCHEMAS[name]).is_valid(VALID[name])
    assert compile_check(SCHEMAS[name])(VALID[name])


@pytest.mark.parametrize("name", sorted(SCHEMAS))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_compiled_check_agrees_with_jsonschema(name, data):
    # It may only be cautious (False for a valid instance) where the schemas have no
    # such case (unique items that are not strings), so here both always agree.
    instance = data.draw(near_valid(name) | VALUES)
    assert compile_check(SCHEMAS[name])(instance) == (
        Draft202012Validator(SCHEMAS[name]).is_valid(instance)), instance


@pytest.mark.parametrize("value", [True, 1.5, "1", None, 0, 2**53 + 1])
def test_integer_bounds_and_types_follow_jsonschema(value):
    schema = MUTATION["properties"]["id"]
    assert compile_check(schema)(value) == Draft202012Validator(schema).is_valid(value)


def test_nan_coordinates_follow_jsonschema():
    schema = MUTATIONS["problem.report"]["properties"]["lat"]
    assert compile_check(schema)(math.nan) == Draft202012Validator(schema).is_valid(math.nan)


def test_an_unknown_keyword_fails_at_compile_time():
    with pytest.raises(ValueError, match="format"):
        compile_check({"type": "string", "format": "email"})
