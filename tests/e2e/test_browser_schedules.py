"""An administrator creates a daily schedule in a real browser, sees its next five runs and
disables it."""

import re

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips, or fails under CI=true
    expect = None


def test_create_a_daily_schedule_see_its_runs_and_disable_it(browser, cairn, e2e, page):
    base = cairn.base_url
    page.goto(f"{base}/login")
    page.fill("#username", "admin")
    page.fill("#password", e2e.ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r".*/admin/?$"))

    page.get_by_role("link", name="Schedules", exact=True).click()
    page.wait_for_url(f"{base}/admin/schedules")
    form = page.locator("#schedule-form")
    form.locator("input[name=name]").fill("browser-nightly")
    form.locator("select[name=preset]").select_option("daily")
    form.locator("input[name=time]").fill("03:00")
    form.locator("input[name=timezone]").fill("Asia/Shanghai")
    form.locator("input[name=keep_last]").fill("7")
    form.get_by_role("button", name="Add schedule").click()

    page.wait_for_url(f"{base}/admin/schedules")
    expect(page.locator(".flash-success")).to_contain_text("Schedule browser-nightly added.")
    row = page.locator("tr", has_text="browser-nightly")
    expect(row.locator(".schedule-description")).to_have_text("every day at 03:00, Asia/Shanghai")
    times = row.locator(".next-runs time")  # shown in the reader's zone, each with its UTC instant
    runs = [times.nth(i).get_attribute("datetime") for i in range(times.count())]
    assert len(runs) == 5 and all(run.endswith("T19:00:00Z") for run in runs), runs
    expect(times.first).to_contain_text("UTC")  # the admin has no zone of their own: the server's

    row.get_by_role("button", name="Disable").click()
    page.wait_for_url(f"{base}/admin/schedules")
    row = page.locator("tr", has_text="browser-nightly")
    expect(row.get_by_role("button", name="Enable")).to_be_visible()
    expect(row.locator(".next-runs")).to_have_text("—")
