"""The dashboard in a real browser against the real supervisor: after 12 real backups spread over 12
days (their times rewritten in the metadata DB), the uPlot size and duration charts have 12 points
of that source; a source whose last backup is older than its max age has a card marked stale; a
failed backup is a link in the banner that opens it; the live part shows a new failure without a
reload; nothing breaks the Content-Security-Policy, in light or dark surroundings."""

import datetime as dt
import re
import shutil
import sqlite3

import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips, or fails under CI=true
    expect = None

TIMEOUT_MS = 30_000
DAYS = 12
# Predicates are passed as functions: Playwright would eval() an expression, which the page's policy refuses.

RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.violatedDirective + " blocked " + (e.blockedURI || "inline"));
});
"""

# The chart's x values and, for the series labelled with the source's name, its non-null values.
SERIES_OF = """([kind, name]) => {
  const chart = window.cairnCharts[kind];
  const index = chart.series.findIndex(s => s.label === name);
  return {x: chart.data[0].length, values: index < 0 ? null : chart.data[index].filter(v => v != null)};
}"""
DAY_TOTALS = """() => {
  const chart = window.cairnCharts.days;
  const sum = values => values.reduce((a, b) => a + (b || 0), 0);
  return {days: chart.data[0].length, completed: sum(chart.data[1]), failed: sum(chart.data[2]),
          daysWithBackups: chart.data[1].filter(v => v > 0).length};
}"""


def small_folder(root):
    root.mkdir(parents=True)
    (root / "index.html").write_text("<h1>hello</h1>\n" * 50)
    (root / "notes").mkdir()
    (root / "notes" / "a.txt").write_text("a note\n" * 200)
    return root


def stored(moment):
    """A time as SQLAlchemy keeps it in SQLite (naive UTC)."""
    return f"{moment:%Y-%m-%d %H:%M:%S.%f}"


def move_backup(db_path, backup_id, created, seconds):
    """Rewrite when the backup was made and how long it took, in the server's metadata DB."""
    con = sqlite3.connect(db_path, timeout=30)
    with con:
        con.execute("UPDATE backups SET created_at = ?, started_at = ?, completed_at = ? WHERE id = ?",
                    (stored(created), stored(created), stored(created + dt.timedelta(seconds=seconds)), backup_id))
    con.close()


@pytest.fixture(scope="module")
def history(cairn, api, tmp_path_factory):
    """12 completed backups of chart-site over 12 days (durations 1..12 s), a stale source, a failed backup."""
    root = tmp_path_factory.mktemp("dashboard")
    chart_site = api.create_source("chart-site", "files", small_folder(root / "chart"))
    stale_site = api.create_source("stale-site", "files", small_folder(root / "stale"), max_age_hours=1)
    gone = small_folder(root / "gone")
    gone_site = api.create_source("gone-site", "files", gone)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    db_path = cairn.data_dir / "cairn.db"
    chart_ids = []
    for day in range(DAYS):
        backup_id = api.start_backup(type="custom", source_ids=[chart_site])
        assert api.wait_for_backup(backup_id)["status"] == "completed"
        chart_ids.append(backup_id)
    for day, backup_id in enumerate(chart_ids):  # the oldest first: 12 days ago (at 09:00) ... yesterday
        moved = (now - dt.timedelta(days=DAYS - day)).replace(hour=9, minute=0, second=0, microsecond=0)
        move_backup(db_path, backup_id, moved, seconds=day + 1)
    stale_id = api.start_backup(type="custom", source_ids=[stale_site])
    assert api.wait_for_backup(stale_id)["status"] == "completed"
    move_backup(db_path, stale_id, now - dt.timedelta(days=2), seconds=3)
    shutil.rmtree(gone)
    failed_id = api.start_backup(type="custom", source_ids=[gone_site])
    assert api.wait_for_backup(failed_id)["status"] == "failed"
    return {"chart_site": chart_site, "stale_site": stale_site, "gone_site": gone_site, "chart_ids": chart_ids,
            "failed_id": failed_id}


def sign_in(page, base, password):
    page.goto(f"{base}/login")
    page.fill("#username", "admin")
    page.fill("#password", password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r".*/admin/?$"))


def test_charts_cards_and_banner(cairn, api, e2e, history, page):
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.add_init_script(RECORD_VIOLATIONS)
    sign_in(page, cairn.base_url, e2e.ADMIN_PASSWORD)
    page.wait_for_function("() => window.cairnCharts && window.cairnCharts.size && window.cairnCharts.days")

    size = page.evaluate(SERIES_OF, ["size", "chart-site"])
    assert len(size["values"]) == DAYS, f"the size chart has {len(size['values'])} points of chart-site, not {DAYS}"
    assert all(value > 0 for value in size["values"])
    assert size["x"] == DAYS + 1, "one more x: stale-site's backup two days ago"
    duration = page.evaluate(SERIES_OF, ["duration", "chart-site"])
    assert duration["values"] == [float(s) for s in range(1, DAYS + 1)], "durations, oldest first, in seconds"
    days = page.evaluate(DAY_TOTALS)
    assert days["days"] == 30 and days["completed"] == DAYS + 1 and days["failed"] == 1
    assert days["daysWithBackups"] == DAYS, "the backups are spread over the days"
    charts = page.locator("#dashboard-charts")
    expect(charts.locator(".u-legend").first).to_contain_text("chart-site")
    expect(charts.locator(".u-axis").first).to_be_visible()
    expect(charts.locator(".chart-empty:visible")).to_have_count(0)

    stale_card = page.locator(f"#source-{history['stale_site']}")
    expect(stale_card).to_have_attribute("data-state", "stale")
    expect(stale_card).to_have_class(re.compile(r"\bhealth-stale\b"))
    expect(stale_card.locator(".health-badge")).to_have_text("stale")
    expect(page.locator(f"#source-{history['chart_site']}")).to_have_attribute("data-state", "unwatched")

    banner = page.locator("#attention")
    expect(banner.locator(f'.attention-stale a[href="#source-{history["stale_site"]}"]')).to_contain_text("stale-site")
    link = banner.locator(f'.attention-failed a[href="/admin/backups/{history["failed_id"]}"]')
    expect(link).to_contain_text("gone-site")
    assert page.evaluate("window.__cspViolations") == [] and errors == []

    link.click()
    page.wait_for_url(re.compile(rf".*/admin/backups/{history['failed_id']}$"))
    expect(page.locator(f"#backup-status-{history['failed_id']} .badge[data-status]")).to_have_attribute(
        "data-status", "failed")


def test_the_live_part_shows_a_new_failure_and_redraws_the_charts(cairn, api, e2e, history, page):
    sign_in(page, cairn.base_url, e2e.ADMIN_PASSWORD)
    page.wait_for_function("() => window.cairnCharts && window.cairnCharts.days")
    page.evaluate("() => { window.__samePage = true; window.cairnCharts.days.__old = true; }")
    failed_before = page.evaluate(DAY_TOTALS)["failed"]

    again = api.start_backup(type="custom", source_ids=[history["gone_site"]])
    assert api.wait_for_backup(again)["status"] == "failed"
    expect(page.locator(f'#attention .attention-failed a[href="/admin/backups/{again}"]')).to_be_visible(
        timeout=TIMEOUT_MS)
    page.wait_for_function("() => !window.cairnCharts.days.__old", timeout=TIMEOUT_MS)
    assert page.evaluate(DAY_TOTALS)["failed"] == failed_before + 1
    assert page.evaluate("window.__samePage") is True, "the page was not reloaded"


def test_dark_surroundings_redraw_the_charts_in_dark_colours(cairn, e2e, history, page):
    sign_in(page, cairn.base_url, e2e.ADMIN_PASSWORD)
    page.wait_for_function("() => window.cairnCharts && window.cairnCharts.size")
    light = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.evaluate("() => { window.cairnCharts.size.__old = true; }")
    page.emulate_media(color_scheme="dark")
    page.wait_for_function("() => !window.cairnCharts.size.__old")
    dark = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert light != dark
    # The lines take the dark palette's colour (read from the CSS variables), not the light one's.
    stroke = page.evaluate("""() => { const s = window.cairnCharts.size.series[1].stroke;
                                       return typeof s === 'function' ? s(window.cairnCharts.size, 1) : s; }""")
    assert stroke == page.evaluate("getComputedStyle(document.documentElement).getPropertyValue('--chart-1').trim()")
    assert stroke.lower() == "#6ea8fe"
