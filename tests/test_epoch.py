"""The highest version served (sync/epoch.py), raised by several processes at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sync import epoch

ROOT = Path(__file__).resolve().parent.parent
PROCESSES = 4
RAISES = 150

# Each process raises the mark through values interleaved with the others', so that a
# slower process writing after a faster one would lower it.
RAISER = """
import sys
from sync.epoch import raise_mark
root, first, processes, raises = sys.argv[1], *map(int, sys.argv[2:])
for n in range(raises):
    raise_mark(root, first + processes * n, "epoch-1")
"""


def test_processes_raising_the_mark_together_never_lower_it(tmp_path):
    raisers = [
        subprocess.Popen([sys.executable, "-c", RAISER, str(tmp_path), str(first),
                          str(PROCESSES), str(RAISES)], cwd=ROOT, stderr=subprocess.PIPE)
        for first in range(PROCESSES)
    ]
    seen = [epoch.read_mark(tmp_path)[0]]
    while any(raiser.poll() is None for raiser in raisers):
        seen.append(epoch.read_mark(tmp_path)[0])
    failures = [raiser.stderr.read().decode() for raiser in raisers if raiser.wait(timeout=60)]
    assert failures == []
    assert seen == sorted(seen)
    assert epoch.read_mark(tmp_path) == (PROCESSES - 1 + PROCESSES * (RAISES - 1), "epoch-1")


def test_a_raise_below_what_this_process_left_does_not_touch_the_file(tmp_path, monkeypatch):
    epoch.raise_mark(tmp_path, 10, "epoch-1")

    def unexpected(root):
        raise AssertionError("the mark's file was locked")

    monkeypatch.setattr(epoch, "_marking", unexpected)
    epoch.raise_mark(tmp_path, 10, "epoch-1")
    epoch.raise_mark(tmp_path, 4, "epoch-1")
    with pytest.raises(AssertionError):
        epoch.raise_mark(tmp_path, 11, "epoch-1")
    with pytest.raises(AssertionError):
        epoch.raise_mark(tmp_path, 3, "epoch-2")
    assert epoch.read_mark(tmp_path) == (10, "epoch-1")


def test_a_higher_mark_another_process_wrote_is_kept(tmp_path):
    epoch.raise_mark(tmp_path, 10, "epoch-1")
    (tmp_path / epoch.MARK_FILE).write_text("50 epoch-1")  # another process, meanwhile
    epoch.raise_mark(tmp_path, 20, "epoch-1")
    assert epoch.read_mark(tmp_path) == (50, "epoch-1")
    epoch.raise_mark(tmp_path, 30, "epoch-1")  # below what the file held: left alone
    assert epoch.read_mark(tmp_path) == (50, "epoch-1")


def test_a_new_epoch_starts_the_mark_again(tmp_path):
    epoch.raise_mark(tmp_path, 10, "epoch-1")
    epoch.raise_mark(tmp_path, 3, "epoch-2")
    assert epoch.read_mark(tmp_path) == (3, "epoch-2")
