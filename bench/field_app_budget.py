"""The field app's weight and speed budget.

1. Bytes: gzip size of everything the shell loads to show the capture screens
   (the HTML, the CSS, every ES module of the graph, the strings module).
   Budget: 100 KB compressed.
2. Time to usable (the 记问题 form visible and enabled), in Chromium on an
   emulated phone through the DevTools protocol:
   - first load over "3G" (400 kbit/s, 400 ms round trip), no cache, no service worker;
   - opening offline (from the service worker) with the CPU slowed 4x.

Run: .venv/bin/python bench/field_app_budget.py [--no-browser]
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUDGET = 100 * 1024
CHROMIUM = os.environ.get("FIELDLEDGER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True,
         "locale": "zh-CN", "timezone_id": "Asia/Shanghai"}
IMPORT = re.compile(r"""(?:\bfrom\s*|\bimport\s*\(?\s*)['"]([^'"]+\.js)['"]""")


def capture_resources(get) -> dict[str, bytes]:
    """URL -> body of the shell and everything it loads to run (module graph included)."""
    html = get("/app/")
    found = {"/app/": html}
    text = html.decode()
    queue = re.findall(r'<link rel="stylesheet" href="([^"]+)"', text)
    queue += re.findall(r'<script type="module" src="([^"]+)"', text)
    queue += re.findall(r'<link rel="modulepreload" href="([^"]+)"', text)
    while queue:
        url = queue.pop()
        if url in found:
            continue
        body = get(url)
        found[url] = body
        if url.endswith(".js"):
            base = url.rsplit("/", 1)[0]
            for target in IMPORT.findall(body.decode()):
                queue.append(target if target.startswith("/") else f"{base}/{target[2:]}")
    return found


def gzip_sizes(resources: dict[str, bytes]) -> dict[str, tuple[int, int]]:
    return {url: (len(body), len(gzip.compress(body, 6))) for url, body in resources.items()}


def print_budget(get) -> int:
    sizes = gzip_sizes(capture_resources(get))
    print(f"{'resource':40} {'raw':>9} {'gzip':>9}")
    for url, (raw, packed) in sorted(sizes.items()):
        print(f"{url:40} {raw:9,} {packed:9,}")
    raw_total = sum(raw for raw, _ in sizes.values())
    total = sum(packed for _, packed in sizes.values())
    print(f"{'total (' + str(len(sizes)) + ' files)':40} {raw_total:9,} {total:9,}")
    worker = (ROOT / "static/app/photo-worker.js").read_bytes()
    print(f"(photo-worker.js, loaded on the first photo: {len(gzip.compress(worker, 6)):,} gzip)")
    verdict = "within" if total <= BUDGET else "OVER"
    print(f"capture screens: {total / 1024:.1f} KB gzip — {verdict} the {BUDGET // 1024} KB budget")
    return total


# Browser timings ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(folder: Path):
    from server.db import open_database
    from tests.conftest import build_world

    path = folder / "bench.db"
    db = open_database(path)
    build_world(db)
    db.close()
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "--db", str(path), "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/healthz", timeout=1)
            return process, url
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.1)


USABLE = "textarea[name=description]:not([disabled])"


def time_to_usable(page, url: str) -> float:
    """Milliseconds from navigation start until the problem form can be typed in."""
    page.goto("about:blank")  # a real navigation, not a same-document hash change
    page.goto(url, wait_until="commit")
    page.wait_for_selector(USABLE, state="visible", timeout=120000)
    page.wait_for_selector("form button[type=submit]:not([disabled])", timeout=120000)
    return page.evaluate("performance.now()")


def wait_for_worker(page, timeout: float = 120) -> None:
    # Not page.wait_for_function: its polling needs 'unsafe-eval', refused by the CSP.
    deadline = time.monotonic() + timeout
    while not page.evaluate("() => navigator.serviceWorker.controller !== null"):
        if time.monotonic() > deadline:
            raise TimeoutError("no service worker")
        time.sleep(0.1)


def browser_timings(url: str, runs: int) -> None:
    from playwright.sync_api import sync_playwright

    from tests.conftest import PASSWORD

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        first, offline = [], []
        for _ in range(runs):
            context = browser.new_context(**PHONE)
            page = context.new_page()
            cdp = context.new_cdp_session(page)
            # Sign in without loading the app (so nothing of it is cached yet).
            page.goto(f"{url}/api/healthz")
            page.evaluate(
                """async ([password]) => {
                    const sync = await import('/static/app/sync.js');
                    await sync.login('field1', password, 'bench');
                }""",
                [PASSWORD],
            )
            cdp.send("Network.enable")
            cdp.send("Network.clearBrowserCache")
            cdp.send("Network.emulateNetworkConditions", {
                "offline": False, "latency": 400,
                "downloadThroughput": 400 * 1000 / 8, "uploadThroughput": 400 * 1000 / 8,
            })
            first.append(time_to_usable(page, f"{url}/app/#/problem"))
            wait_for_worker(page)
            cdp.send("Network.emulateNetworkConditions", {
                "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1,
            })
            context.set_offline(True)
            cdp.send("Emulation.setCPUThrottlingRate", {"rate": 4})
            offline.append(time_to_usable(page, f"{url}/app/#/problem"))
            context.close()
        browser.close()

    def show(label, values):
        values = sorted(values)
        print(f"{label}: median {values[len(values) // 2]:.0f} ms"
              f" (min {values[0]:.0f}, max {values[-1]:.0f}, {len(values)} runs)")

    show("first load, 3G (400 kbit/s, 400 ms RTT), to usable 记问题 form", first)
    show("offline open, CPU 4x slower, to usable 记问题 form", offline)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-browser", action="store_true", help="only the byte budget")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        process, url = start_server(Path(folder))
        try:
            total = print_budget(lambda path: urllib.request.urlopen(url + path).read())
            if not args.no_browser:
                browser_timings(url, args.runs)
        finally:
            process.terminate()
            process.wait(timeout=10)
    sys.exit(0 if total <= BUDGET else 1)


if __name__ == "__main__":
    main()
