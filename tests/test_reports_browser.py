"""The statistics dashboard at 1366×768 and a report printed on A4, in Chromium."""

from __future__ import annotations

import re

import pytest

from server.db import open_database
from server.demo import DEMO_PASSWORD, seed_demo
from server.ledger import clock, reports
from tests.live import axe_violations, running_server, sign_in_office

pytestmark = pytest.mark.browser

SCREEN = {"width": 1366, "height": 768}
A4_POINTS = (595, 842)  # 210 × 297 mm


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    path = tmp_path_factory.mktemp("reports") / "fieldledger.db"
    db = open_database(path)
    seed_demo(db, problems=3000)
    db.close()
    with running_server(path) as url:
        yield url


def signed_in(browser, url: str, username: str):
    context = browser.new_context(viewport=SCREEN, locale="zh-CN", timezone_id="Asia/Shanghai",
                                  bypass_csp=True)
    context.set_default_timeout(20_000)
    page = context.new_page()
    sign_in_office(page, url, username, DEMO_PASSWORD)
    return context, page


def test_the_dashboard_shows_cards_trend_and_ranking_above_the_fold(live, browser):
    context, page = signed_in(browser, live, "leader")
    page.goto(f"{live}/stats")
    page.screenshot(path="/tmp/reports-dashboard-1366.png")
    boxes = {
        "cards": page.locator(".dash-cards").bounding_box(),
        "trend": page.locator(".dash-trend svg.chart").bounding_box(),
        "ranking": page.locator("#dash-ranking-table").bounding_box(),
    }
    for name, box in boxes.items():
        assert box["y"] >= 0 and box["y"] + box["height"] <= SCREEN["height"], (name, box)
        assert box["x"] >= 0 and box["x"] + box["width"] <= SCREEN["width"], (name, box)
    assert page.locator(".dash-card").count() >= 7
    # Every text of the trend inside the drawing (nothing cut), measured by the browser.
    outside = page.evaluate("""() => {
        const svg = document.querySelector('.dash-trend svg.chart');
        const [x0, y0, w, h] = svg.getAttribute('viewBox').split(' ').map(Number);
        return [...svg.querySelectorAll('text')].map((t) => [t.textContent, t.getBBox()])
            .filter(([, b]) => b.x < x0 || b.y < y0 || b.x + b.width > x0 + w
                                || b.y + b.height > y0 + h)
            .map(([text]) => text);
    }""")
    assert outside == []
    # 口径 opens in place.
    page.locator("#card-completion summary").click()
    assert "办结率 = 已办结 ÷ 本期立案" in page.locator("#card-completion").inner_text()
    page.screenshot(path="/tmp/reports-dashboard-define.png")
    assert axe_violations(page) == []
    context.close()


def test_a_report_prints_on_a4(live, browser, tmp_path):
    context, page = signed_in(browser, live, "office")
    page.goto(f"{live}/reports")
    page.screenshot(path="/tmp/reports-list.png", full_page=True)
    month = reports.recent("month", clock.local_today())[0]
    form = page.locator("form.issue-form").filter(has=page.locator("input[value=month]"))
    form.locator("select[name=period]").select_option(month.start.isoformat())
    form.get_by_role("button").click()
    page.wait_for_url(re.compile(r"/reports/\d+$"))
    page.screenshot(path="/tmp/reports-report.png", full_page=True)
    assert axe_violations(page) == []
    pdf = page.pdf(prefer_css_page_size=True)
    (tmp_path / "report.pdf").write_bytes(pdf)
    boxes = {tuple(round(float(v)) for v in box.split()[2:4])
             for box in re.findall(rb"/MediaBox\s*\[\s*([\d.\s]+)\]", pdf)
             for box in [box.decode()]}
    assert boxes == {A4_POINTS}, boxes
    context.close()
