"""sync/simulate.py: simulated phones against a real server, and the report they make."""

from __future__ import annotations

import pytest

from sync.simulate import format_report, percentile, simulate
from tests.conftest import PASSWORD
from tests.live import running_server


def test_percentile_is_the_nearest_rank():
    assert percentile([], 0.5) is None
    assert percentile([3, 1, 2], 0.5) == 2
    assert percentile(list(range(1, 101)), 0.99) == 99


@pytest.mark.slow
def test_simulated_phones_sign_in_pull_and_push_their_records(db_path, world, photos_folder,
                                                              tmp_path):
    with running_server(db_path, photos=photos_folder,
                        log=tmp_path / "server.log") as url:
        report = simulate(url, [("field1", PASSWORD), ("field2", PASSWORD)], devices=4,
                          mutations_per_device=3, concurrency=4, photos=True)
    assert report["errors"] == 0, report["error_samples"]
    assert report["devices_ok"] == 4 and report["rejected"] == 0
    assert report["mutations_acknowledged"] + report["unsent"] == 12
    assert report["login"]["count"] >= 4 and report["initial_pull"]["count"] >= 4
    assert report["push"]["count"] >= 4
    assert 0 < report["setup_seconds"] <= report["seconds"]
    text = format_report(report)
    assert "4 devices (4 without errors)" in text and "errors: 0" in text
