"""server/ledger/similar.py: the one rule for "may be the same problem", and the field
app's port of it (static/app/similar.js) giving the same answers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.ledger import similar
from server.ledger.similar import bigrams, match, text_similarity

HERE = {"lat": 36.651, "lng": 117.12}
PAIRS = [  # (mine, theirs, same problem?)
    ({"description": "幸福小区3号楼楼顶漏水", **HERE, "category_id": 1},
     {"description": "3号楼楼顶漏水严重", "lat": 36.6511, "lng": 117.1201, "category_id": 1}, True),
    # Near, same category, other words: the same place, the same kind of trouble.
    ({"description": "路灯不亮", **HERE, "category_id": 2},
     {"description": "夜里一片漆黑", "lat": 36.652, "lng": 117.12, "category_id": 2}, True),
    # Near, other category, no words in common: not the same.
    ({"description": "路灯不亮", **HERE, "category_id": 2},
     {"description": "垃圾清运不及时", "lat": 36.652, "lng": 117.12, "category_id": 3}, False),
    # Near, no category yet, a few words in common.
    ({"description": "东门路灯坏了", **HERE, "category_id": None},
     {"description": "小区东门路口灯不亮", "lat": 36.6515, "lng": 117.12, "category_id": 3}, True),
    # Far apart, words alike: still a candidate (the office may merge across places).
    ({"description": "河道有生活污水排入，水面发黑", **HERE},
     {"description": "河道生活污水排入水面发黑发臭", "lat": 36.7, "lng": 117.3}, True),
    # Far apart, same category, other words: no.
    ({"description": "路灯不亮", **HERE, "category_id": 2},
     {"description": "灯杆倾斜", "lat": 36.7, "lng": 117.3, "category_id": 2}, False),
    # No positions: words alone decide.
    ({"description": "农贸市场占道经营"}, {"description": "农贸市场门口占道经营严重"}, True),
    ({"description": "Road 12 pothole"}, {"description": "pothole on road 12"}, True),
]


def test_bigrams_of_chinese_runs_and_other_words():
    assert bigrams("3号楼漏水") == {"3号", "号楼", "楼漏", "漏水"}
    assert bigrams("漏") == {"漏"}
    assert bigrams("Road_12!") == {"ro", "oa", "ad", "12"}


@pytest.mark.parametrize(("mine", "theirs", "same"), PAIRS)
def test_the_rule(mine, theirs, same):
    assert (match(mine, theirs) is not None) is same


def test_a_few_words_in_common_count_only_nearby():
    mine, theirs, _same = PAIRS[3]
    assert 0.1 <= text_similarity(mine["description"], theirs["description"]) < 0.3
    assert match(mine, {**theirs, "lat": 36.7}) is None


def test_near_matches_carry_their_distance_and_far_ones_none():
    near = match(*PAIRS[0][:2])
    assert near.distance is not None and near.distance < 30 and near.similarity > 0.3
    assert match(*PAIRS[4][:2]).distance is None


def test_the_phone_uses_the_same_numbers():
    script = (Path(__file__).parent.parent / "static/app/similar.js").read_text()
    for name in ("NEARBY_METRES", "TEXT_THRESHOLD", "NEARBY_TEXT_THRESHOLD"):
        value = re.search(rf"export const {name} = ([\d.]+);", script)[1]
        assert float(value) == getattr(similar, name), name


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30), st.text(max_size=30))
def test_similarity_is_symmetric_and_bounded(a, b):
    score = text_similarity(a, b)
    assert 0 <= score <= 1 and score == text_similarity(b, a)
    if bigrams(a):
        assert text_similarity(a, a) == 1


def js_cases() -> list[tuple[dict, dict]]:
    """The pairs above, both ways round, for the browser test of the port."""
    return [(mine, theirs) for mine, theirs, _same in PAIRS] + [
        (theirs, mine) for mine, theirs, _same in PAIRS]
