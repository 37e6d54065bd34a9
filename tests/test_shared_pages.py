"""Pull pages shared between phones: one build, bytes that decode as one gzip member."""

from __future__ import annotations

import gzip
import threading
import time
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync.shared_pages import SharedPage, SharedPages


def page(members: bytes = b'"records":{},"deleted":{}', built_at: int = 10,
         part: str | None = "problem", after=None) -> SharedPage:
    return SharedPage(members, built_at, part, after)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@given(members=st.binary(max_size=5000), tail=st.binary(max_size=500))
def test_the_gzip_body_is_the_body(members, tail):
    shared = page(members)
    assert gzip.decompress(shared.gzip_body(tail)) == shared.body(tail)


def test_the_gzip_body_is_one_member_a_streaming_decoder_reads_to_its_end():
    shared = page(b'"records":{"problem":{"rows":[' + b'["\xe8\xb7\xaf\xe7\x81\xaf"],' * 3000
                  + b'[1]]}},"deleted":{}')
    tail = b'"cursor":"c2.abc","has_more":true}'
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert decoder.decompress(shared.gzip_body(tail)) == shared.body(tail)
    assert decoder.eof and decoder.unused_data == b""


def test_a_kept_page_is_built_once():
    pages, built = SharedPages(), []

    def build():
        built.append(1)
        return page()

    first = pages.get(("k",), 10, build)
    assert pages.get(("k",), 12, build) is first
    assert len(built) == 1 and (pages.builds, pages.hits) == (1, 1)


def test_phones_asking_at_once_wait_for_one_build():
    pages, built, started = SharedPages(), [], threading.Event()

    def build():
        started.set()
        time.sleep(0.2)
        built.append(1)
        return page()

    results = []
    threads = [threading.Thread(target=lambda: results.append(pages.get(("k",), 10, build)))
               for _ in range(8)]
    threads[0].start()
    started.wait(5)
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(built) == 1 and len(results) == 8
    assert all(result is results[0] for result in results)


def test_a_failed_build_leaves_the_next_phone_to_build():
    pages = SharedPages()

    def broken():
        raise RuntimeError("disk")

    with pytest.raises(RuntimeError):
        pages.get(("k",), 10, broken)
    assert pages.get(("k",), 10, page).built_at == 10


def test_a_page_is_kept_for_max_age_seconds():
    clock = Clock()
    pages = SharedPages(max_age=30, clock=clock)
    first = pages.get(("k",), 10, page)
    clock.now += 29
    assert pages.get(("k",), 10, page) is first
    clock.now += 2
    assert pages.get(("k",), 10, page) is not first


def test_a_page_is_kept_while_the_log_is_at_most_max_behind_past_it():
    pages = SharedPages(max_behind=100)
    first = pages.get(("k",), 10, lambda: page(built_at=10))
    assert pages.get(("k",), 110, page) is first
    assert pages.get(("k",), 5, page) is first  # a reader that began before it was built
    assert pages.get(("k",), 111, page) is not first


def test_the_least_recently_used_pages_leave_first_beyond_max_bytes():
    size = page().size
    pages = SharedPages(max_bytes=3 * size)
    for key in "abc":
        pages.get((key,), 10, page)
    pages.get(("a",), 10, page)  # a is used again: b is now the oldest
    pages.get(("d",), 10, page)
    assert len(pages) == 3
    builds = pages.builds
    pages.get(("a",), 10, page)
    assert pages.builds == builds
    pages.get(("b",), 10, page)
    assert pages.builds == builds + 1


def test_a_page_larger_than_the_whole_budget_is_not_kept():
    pages = SharedPages(max_bytes=10)
    pages.get(("k",), 10, page)
    assert len(pages) == 0
