"""Record ids: UUIDv7, ordered by time, accepted by the mutation schemas."""

from __future__ import annotations

import re
import uuid

from sync.ids import derived_id, uuid7
from sync.schemas import UUID


def test_a_uuid7_has_version_7_and_the_rfc_variant():
    value = uuid.UUID(uuid7())
    assert (value.version, value.variant) == (7, uuid.RFC_4122)


def test_uuid7_starts_with_the_time_in_milliseconds():
    assert uuid7(now_ms=0x0123_4567_89AB).replace("-", "")[:12] == "0123456789ab"


def test_later_ids_sort_after_earlier_ones():
    ids = [uuid7(now_ms=ms) for ms in (1_700_000_000_000, 1_700_000_000_001, 1_800_000_000_000)]
    assert ids == sorted(ids) and len(set(ids)) == 3


def test_ids_are_distinct_within_a_millisecond():
    assert len({uuid7(now_ms=1) for _ in range(1000)}) == 1000


def test_the_schemas_accept_uuid7():
    assert all(re.match(UUID["pattern"], uuid7()) for _ in range(100))


def test_a_derived_id_is_stable_and_keeps_its_parents_time():
    parent = uuid7(now_ms=1_700_000_000_000)
    first, again = derived_id(parent, "reported"), derived_id(parent, "reported")
    assert first == again != derived_id(parent, "solved_on_spot")
    assert first[:13] == parent[:13]  # the 48-bit time prefix
    value = uuid.UUID(first)
    assert (value.version, value.variant) == (8, uuid.RFC_4122)
    assert re.match(UUID["pattern"], first)
