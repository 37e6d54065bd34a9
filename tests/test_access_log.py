"""The access log of ``fieldledger serve`` keeps residents' search words out
(server/access_log.py)."""

from __future__ import annotations

import logging
import logging.config

import pytest

from server import access_log, cli


@pytest.mark.parametrize(("path", "logged"), [
    ("/problems?q=%E5%BC%A0%E4%B8%89&page=2", "/problems?q=-&page=2"),
    ("/problems?status=closed&q=%E5%B9%B8%E7%A6%8F%E8%B7%AF3%E5%8F%B7&area=370102",
     "/problems?status=closed&q=-&area=370102"),
    ("/problems?q=a+b&q=c", "/problems?q=-&q=-"),
    ("/problems?%71=%E5%BC%A0", "/problems?%71=-"),  # an encoded name is still q
    ("/login?next=/problems%3Fq%3D%E5%BC%A0%E4%B8%89", "/login?next=-"),
    ("/problems/abc?draft=k3y", "/problems/abc?draft=-"),
    ("/problems?q", "/problems?q"),
    ("/problems?qq=1&page=3", "/problems?qq=1&page=3"),
    ("/api/sync/pull?client_id=x&cursor=5", "/api/sync/pull?client_id=x&cursor=5"),
    ("/problems", "/problems"),
])
def test_redact_query(path, logged):
    assert access_log.redact_query(path) == logged


class Captured(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_the_serve_command_logs_requests_without_search_words(monkeypatch, db_path,
                                                             photos_folder, world,
                                                             own_environment):
    """The configuration ``serve`` hands uvicorn, applied as uvicorn applies it, then a
    record logged exactly as uvicorn's HTTP protocol logs a request."""
    seen = {}

    def fake_run(app, **options):
        seen.update(options)

    import uvicorn

    monkeypatch.setattr(uvicorn, "run", fake_run)
    assert cli.main(["--db", str(db_path), "--photos", str(photos_folder),
                     "serve", "--port", "8999"]) == 0
    logging.config.dictConfig(seen["log_config"])
    logger = logging.getLogger("uvicorn.access")
    captured = Captured()
    logger.addHandler(captured)
    try:
        logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:50000", "GET",
                    "/problems?q=%E5%BC%A0%E4%B8%89+%E5%B9%B8%E7%A6%8F%E8%B7%AF&page=2", "1.1",
                    200)
    finally:
        logger.removeHandler(captured)
        for name in ("uvicorn", "uvicorn.access", "uvicorn.error"):
            logging.getLogger(name).filters.clear()
    assert captured.lines == ['127.0.0.1:50000 - "GET /problems?q=-&page=2 HTTP/1.1" 200']


@pytest.mark.slow
def test_a_real_server_writes_no_search_words(db_path, photos_folder, world, tmp_path):
    import urllib.request

    from tests.live import running_server

    log = tmp_path / "server.log"
    with running_server(db_path, log=log, photos=photos_folder) as url:
        urllib.request.urlopen(f"{url}/api/healthz?q=%E5%BC%A0%E4%B8%89", timeout=5).read()
        # Anonymous: sent on to the sign-in page, whose ``next`` carries the search.
        urllib.request.urlopen(f"{url}/problems?q=%E5%B9%B8%E7%A6%8F%E8%B7%AF&page=2",
                               timeout=5).read()
    log = log.read_text(errors="replace")
    assert '"GET /api/healthz?q=- HTTP/1.1" 200' in log
    assert "/problems?q=-&page=2" in log
    assert "%E5" not in log and "张三" not in log
