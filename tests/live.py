"""A real FieldLedger server process on loopback, and Debian's Chromium, for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

CHROMIUM = os.environ.get("FIELDLEDGER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(db_path: Path | str, env: dict | None = None,
                   startup_seconds: float = 20, options: Sequence[str] = (),
                   log: Path | None = None, photos: Path | None = None) -> Iterator[str]:
    """Serve ``db_path`` (a file or a postgresql:// URL) with ``fieldledger [--photos
    photos] serve [options]`` on a free port; yields its URL.

    The server's output (a line per request) goes to ``log``, by default a file next to
    the database (a URL needs ``log``): a pipe nobody reads would fill up and stall the
    server.
    """
    port = free_port()
    log = log or Path(f"{db_path}.server.log")
    photos_option = ["--photos", str(photos)] if photos else []
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "--db", str(db_path), *photos_option, "serve",
             "--port", str(port), *options],
            stdout=output, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + startup_seconds
    try:
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/healthz", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    process.kill()
                    process.wait()
                    raise RuntimeError(log.read_text(errors="replace")) from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


# In the browser -------------------------------------------------------------------

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
NO_ANIMATION_RUNNING = "() => document.getAnimations().every((a) => a.playState !== 'running')"


def sign_in_office(page, url: str, username: str, password: str) -> None:
    """Sign in through the office login form and wait for the home page."""
    page.goto(f"{url}/login")
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(password)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(f"{url}/")


def axe_violations(page, timeout: float = 20) -> list[str]:
    """axe-core's serious and critical violations on the page as it stands.

    The page's context must bypass the CSP (axe is injected as an inline
    script). A transition (a toast fading) shows blended colours for a moment:
    axe judges the settled screen. Polled from Python, since
    page.wait_for_function would need 'unsafe-eval'.
    """
    deadline = time.monotonic() + timeout
    while not page.evaluate(NO_ANIMATION_RUNNING):
        assert time.monotonic() < deadline, "animations never settled"
        time.sleep(0.1)
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "axe.run(document, {runOnly:"
        " ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']})"
    )
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
