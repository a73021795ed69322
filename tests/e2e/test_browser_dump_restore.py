"""An administrator in a real browser uploads a gzipped `sqlite3 .dump` on a SQLite source's page,
types RESTORE and watches the restore complete; then a PostgreSQL dump sent to that source is
refused on the page, with what it is, and nothing changes."""

import gzip
import re
import sqlite3
import subprocess

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips, or fails under CI=true
    expect = None

TIMEOUT_MS = 60_000


def make_shop(path):
    """Unicode, newlines, quotes, NULLs and BLOBs; no NUL inside text, which sqlite3 .dump
    itself cuts short."""
    con = sqlite3.connect(path)
    with con:
        con.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, note TEXT, total REAL, receipt BLOB)")
        con.execute("CREATE INDEX orders_customer ON orders (customer)")
        con.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?)", [
            (i, f"客户 {i} O'Brien", "line\n" * (i % 4) or None, i * 1.5, bytes(range(i % 256)) if i % 3 else None)
            for i in range(1, 801)])
    con.close()
    return path


def test_upload_a_sql_gz_on_the_source_page_and_watch_it_restore(browser, cairn, api, e2e, page, tmp_path):
    db_path = make_shop(tmp_path / "shop.db")
    rows_before = e2e.sqlite_contents(db_path)
    dump = tmp_path / "shop.sql.gz"
    dump.write_bytes(gzip.compress(subprocess.run(["sqlite3", str(db_path), ".dump"], capture_output=True,
                                                  check=True).stdout))
    con = sqlite3.connect(db_path)
    tables = [name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    con.execute(f'DELETE FROM "{tables[0]}"')
    con.commit()
    con.close()
    assert e2e.sqlite_contents(db_path) != rows_before
    source = api.post("/sources", {"name": "shop", "kind": "sqlite", "path": str(db_path)}).data

    page.goto(f"{cairn.base_url}/login")
    page.fill("#username", "admin")
    page.fill("#password", e2e.ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r".*/admin/?$"))
    page.goto(f"{cairn.base_url}/admin/sources/{source['id']}/edit")

    form = page.locator("#restore-dump-form")
    expect(page.locator("#restore-dump")).to_contain_text("Restore a dump made elsewhere")
    form.locator("input[type=file]").set_input_files(str(dump))
    form.locator("input[name=confirm]").fill("RESTORE")
    form.get_by_role("button", name="Restore the dump").click()

    page.wait_for_url(re.compile(r".*/admin/operations/\d+$"))
    expect(page.locator("#dump-restored")).to_contain_text("shop.sql.gz")
    expect(page.locator(".status-panel .badge[data-status]")).to_have_attribute(
        "data-status", "completed", timeout=TIMEOUT_MS)
    expect(page.locator("#next-steps")).to_contain_text("Restored: shop")
    assert e2e.sqlite_contents(db_path) == rows_before
    assert not [p for p in db_path.parent.iterdir() if ".cairn-" in p.name]

    foreign = tmp_path / "other.sql"
    foreign.write_text("--\n-- PostgreSQL database dump\n--\nSET client_encoding = 'UTF8';\nCREATE TABLE t (x int);\n")
    page.goto(f"{cairn.base_url}/admin/sources/{source['id']}/edit")
    form.locator("input[type=file]").set_input_files(str(foreign))
    form.locator("input[name=confirm]").fill("RESTORE")
    form.get_by_role("button", name="Restore the dump").click()
    expect(page.locator(".flash-error")).to_contain_text("a PostgreSQL plain SQL dump, and shop is a SQLite source")
    assert e2e.sqlite_contents(db_path) == rows_before
