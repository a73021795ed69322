"""The reader's language and time zone.

Language: the signed-in user's `locale`, else the choice kept in the session (the language
switch, also on the sign-in page), else the best language of Accept-Language (zh, zh-CN and
zh-Hans are Simplified Chinese), else DEFAULT_LOCALE; `<html lang>` says which. Time zone: the
user's, else DEFAULT_TIMEZONE; pages show times in it and name it, the API stays in UTC.
"""

import datetime as dt
import re

import pytest

from helpers import csrf_token, login
from i18n_support import EN, ZH, forget_the_language_between_requests, has_cjk, html_lang, visible_texts

PASSWORD = "lin's long password"
CREATED = dt.datetime(2026, 3, 4, 22, 47, 13)  # UTC; 06:47:13 on March 5 in Asia/Shanghai


@pytest.fixture(autouse=True)
def fresh_language_per_request(app):
    forget_the_language_between_requests(app)


def page_lang(client, path="/login", headers=None):
    response = client.get(path, headers=headers or {})
    assert response.status_code == 200, (path, response.status_code)
    return html_lang(response.get_data(as_text=True))


def choose(client, locale, next_path="/login", token_page="/login"):
    """The language switch in the header, as a browser sends it: signed out (the token taken from
    the sign-in page), the sign-in page takes it; signed in, /language."""
    action = "/login" if token_page == "/login" else "/language"
    return client.post(action, data={"locale": locale, "next": next_path,
                                     "csrf_token": csrf_token(client, token_page)})


def make_user(name="lin", role="viewer", **preferences):
    from webapp.extensions import db
    from webapp.services.accounts import create_user
    from webapp.services.audit import SYSTEM

    user = create_user(SYSTEM, name, PASSWORD, role)
    for key, value in preferences.items():
        setattr(user, key, value)
    db.session.commit()
    return user


def stored(user):
    from webapp.extensions import db

    db.session.expire_all()
    return db.session.get(type(user), user.id)


def sign_out(client):
    response = client.post("/logout", data={"csrf_token": csrf_token(client, "/admin/")})
    assert response.status_code == 302


def session_locale(client):
    with client.session_transaction() as session:
        return session.get("locale")


# ------------------------------------------------------- Accept-Language ----

@pytest.mark.parametrize("header", ["zh", "zh-CN", "zh-cn", "zh-Hans", "zh-Hans-CN", "zh-hans-CN;q=0.9",
                                    "fr, zh-CN;q=0.5", "en;q=0.5, zh", "zh-TW, zh-CN;q=0.8"])
def test_chinese_browsers_get_chinese(client, header):
    assert page_lang(client, headers={"Accept-Language": header}) == "zh-CN"


@pytest.mark.parametrize("header", ["zh-TW", "zh-HK", "fr", "de-DE, fr;q=0.9", "en", "en-GB",
                                    "zh-CN;q=0.4, en;q=0.8", None])
def test_other_browsers_get_the_default_english(client, header):
    assert page_lang(client, headers={"Accept-Language": header} if header else {}) == "en"


def test_default_locale_zh_cn_answers_browsers_without_a_language_we_have(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "DEFAULT_LOCALE", "zh-CN")
    assert page_lang(client) == "zh-CN"
    assert page_lang(client, headers={"Accept-Language": "fr"}) == "zh-CN"
    assert page_lang(client, headers={"Accept-Language": "zh-TW"}) == "zh-CN"
    assert page_lang(client, headers={"Accept-Language": "en-US,en;q=0.9"}) == "en"


def test_default_locale_and_timezone_come_from_the_environment():
    from webapp.config import load_config

    config = load_config({"DEFAULT_LOCALE": "zh-CN", "DEFAULT_TIMEZONE": "Asia/Shanghai"})
    assert (config["DEFAULT_LOCALE"], config["DEFAULT_TIMEZONE"]) == ("zh-CN", "Asia/Shanghai")
    assert (load_config({})["DEFAULT_LOCALE"], load_config({})["DEFAULT_TIMEZONE"]) == ("en", "UTC")


# ----------------------------------------------------- the order of choice ----

def test_the_session_choice_beats_accept_language(client):
    response = choose(client, "zh-CN")
    assert response.status_code == 302 and response.headers["Location"].endswith("/login")
    assert session_locale(client) == "zh-CN"
    assert page_lang(client, headers=EN) == "zh-CN"
    assert choose(client, "en").status_code == 302
    assert page_lang(client, headers=ZH) == "en"


def test_the_users_locale_beats_the_session_and_accept_language(app, client):
    make_user(locale="en")
    choose(client, "zh-CN")
    assert page_lang(client, headers=ZH) == "zh-CN"
    assert login(client, "lin", PASSWORD).status_code == 302
    assert page_lang(client, "/admin/", headers=ZH) == "en"


def test_a_user_without_a_locale_keeps_the_choice_made_on_the_sign_in_page(app, client):
    make_user()
    choose(client, "zh-CN")
    assert login(client, "lin", PASSWORD).status_code == 302
    assert page_lang(client, "/admin/", headers=EN) == "zh-CN"


def test_a_user_without_a_locale_or_a_choice_follows_the_browser(app, client):
    make_user()
    assert login(client, "lin", PASSWORD).status_code == 302
    assert page_lang(client, "/admin/", headers=ZH) == "zh-CN"
    assert page_lang(client, "/admin/", headers={"Accept-Language": "zh-hans-CN;q=0.9, fr;q=0.8"}) == "zh-CN"
    assert page_lang(client, "/admin/", headers=EN) == "en"
    assert page_lang(client, "/admin/") == "en"


def test_a_chinese_page_is_marked_as_chinese(app, client):
    html = client.get("/login", headers=ZH).get_data(as_text=True)
    assert re.search(r'<html[^>]*\blang="zh-CN"', html)
    assert visible_texts(html)[1] == "zh-CN"
    # The switch names each language in its own language, marked with its own lang.
    assert re.search(r'<button[^>]*value="en"[^>]*lang="en"[^>]*>\s*English\s*<', html)
    assert re.search(r'<button[^>]*value="zh-CN"[^>]*lang="zh-CN"[^>]*>\s*简体中文\s*<', html)


# ------------------------------------------------------- the switch ----

def test_the_switch_stores_the_choice_on_the_signed_in_user(app, admin, client):
    login(client)
    response = choose(client, "zh-CN", next_path="/admin/backups", token_page="/admin/")
    assert response.status_code == 302 and response.headers["Location"].endswith("/admin/backups")
    assert stored(admin).locale == "zh-CN"
    assert page_lang(client, "/admin/", headers=EN) == "zh-CN"

    sign_out(client)  # the session ends; the stored choice does not
    assert session_locale(client) is None
    assert page_lang(client, headers=EN) == "en"
    assert login(client).status_code == 302
    assert page_lang(client, "/admin/backups", headers=EN) == "zh-CN"

    choose(client, "en", next_path="/admin/", token_page="/admin/")
    assert stored(admin).locale == "en"
    assert page_lang(client, "/admin/", headers=ZH) == "en"


def test_a_bad_locale_is_refused_with_a_message_and_nothing_is_stored(app, admin, client):
    response = choose(client, "fr")
    assert response.status_code == 302
    page = client.get(response.headers["Location"], headers=EN).get_data(as_text=True)
    assert 'class="flash flash-error"' in page
    assert session_locale(client) is None and html_lang(page) == "en"

    login(client)
    response = choose(client, "zh-TW", next_path="/admin/", token_page="/admin/")
    assert response.status_code == 302
    page = client.get(response.headers["Location"], headers=EN).get_data(as_text=True)
    assert 'class="flash flash-error"' in page
    assert stored(admin).locale is None and session_locale(client) is None


def test_the_switch_needs_the_csrf_token(app, admin, client):
    refused = client.post("/login", data={"locale": "zh-CN", "next": "/login"})
    assert refused.status_code == 400 and session_locale(client) is None
    login(client)
    refused = client.post("/language", data={"locale": "zh-CN", "next": "/admin/"})
    assert refused.status_code == 400
    assert stored(admin).locale is None and page_lang(client, "/admin/", headers=EN) == "en"


def test_the_switch_goes_back_only_to_a_page_of_this_site(client):
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        response = choose(client, "zh-CN", next_path=target)
        assert response.status_code == 302 and response.headers["Location"] == "/admin/", target


# ----------------------------------------------------------- time zone ----

def backup_created_at(moment=CREATED, name="backup_manual_tz1"):
    from webapp.extensions import db
    from webapp.models import Backup

    backup = Backup(name=name, status="failed", created_at=moment, sources=[])
    db.session.add(backup)
    db.session.commit()
    return backup


def time_text(html, minutes_seconds=":47:13"):
    """The visible texts of a page that show the backup's creation time."""
    texts, _ = visible_texts(html)
    return [text for _, text in texts if minutes_seconds in text]


def test_a_user_in_shanghai_sees_the_time_shifted_and_the_zone_named(app, client):
    backup = backup_created_at()
    make_user(timezone="Asia/Shanghai", locale="en")
    login(client, "lin", PASSWORD)
    for path in (f"/admin/backups/{backup.id}", "/admin/backups"):
        shown = time_text(client.get(path).get_data(as_text=True))
        assert shown, f"{path} does not show the creation time"
        for text in shown:
            assert re.search(r"(?<![\d:])0?6:47:13", text) and "22:47:13" not in text, (path, text)
            assert "Asia/Shanghai" in text and re.search(r"\b5\b", text), (path, text)


def test_the_time_zone_and_the_language_format_the_time_together(app, client):
    backup = backup_created_at()
    make_user(timezone="Asia/Shanghai", locale="zh-CN")
    login(client, "lin", PASSWORD)
    [shown] = time_text(client.get(f"/admin/backups/{backup.id}").get_data(as_text=True))[:1]
    assert "3月5日" in shown and "06:47:13" in shown and "Asia/Shanghai" in shown, shown


def test_without_a_zone_of_their_own_users_see_default_timezone(app, client, monkeypatch):
    backup = backup_created_at()
    make_user(locale="en")
    login(client, "lin", PASSWORD)
    [shown] = time_text(client.get(f"/admin/backups/{backup.id}").get_data(as_text=True))[:1]
    assert "22:47:13" in shown or "10:47:13" in shown, shown  # 24-hour or 12-hour clock
    assert "UTC" in shown and re.search(r"\b4\b", shown), shown

    monkeypatch.setitem(app.config, "DEFAULT_TIMEZONE", "Asia/Tokyo")
    [shown] = time_text(client.get(f"/admin/backups/{backup.id}").get_data(as_text=True))[:1]
    assert re.search(r"(?<![\d:])0?7:47:13", shown) and "Asia/Tokyo" in shown, shown


def test_the_api_keeps_utc_whatever_the_users_zone(app, client):
    backup = backup_created_at()
    make_user(timezone="Asia/Shanghai", locale="zh-CN")
    token = client.post("/api/v1/auth/token", json={"username": "lin", "password": PASSWORD}
                        ).get_json()["data"]["token"]
    for headers in (ZH, EN):
        response = client.get(f"/api/v1/backups/{backup.id}", headers=dict(headers, Authorization=f"Bearer {token}"))
        assert response.status_code == 200
        assert response.get_json()["data"]["created_at"] == "2026-03-04T22:47:13Z"
        listed = client.get("/api/v1/backups", headers=dict(headers, Authorization=f"Bearer {token}")).get_json()
        assert [b["created_at"] for b in listed["data"]["items"]] == ["2026-03-04T22:47:13Z"]


# --------------------------------------------------- PATCH /api/v1/users ----

def test_an_admin_sets_a_users_language_and_time_zone_through_the_api(app, api, client):
    user = make_user()
    response = api.patch(f"/users/{user.id}", json={"locale": "zh-CN", "timezone": "Asia/Shanghai"})
    assert response.status_code == 200, response.get_json()
    data = response.get_json()["data"]
    assert (data["locale"], data["timezone"]) == ("zh-CN", "Asia/Shanghai")
    assert (stored(user).locale, stored(user).timezone) == ("zh-CN", "Asia/Shanghai")

    backup = backup_created_at()
    browser = app.test_client()
    login(browser, "lin", PASSWORD)
    page = browser.get(f"/admin/backups/{backup.id}", headers=EN).get_data(as_text=True)
    assert html_lang(page) == "zh-CN" and "Asia/Shanghai" in " ".join(time_text(page))


def test_null_gives_the_choice_back_to_the_browser_and_the_default(app, api):
    """The User schema says a null locale follows Accept-Language and a null time zone is
    DEFAULT_TIMEZONE: an admin can set them back to null."""
    user = make_user(locale="zh-CN", timezone="Asia/Shanghai")
    backup = backup_created_at()
    browser = app.test_client()
    login(browser, "lin", PASSWORD)
    response = api.patch(f"/users/{user.id}", json={"locale": None, "timezone": None})
    assert response.status_code == 200, response.get_json()
    assert (stored(user).locale, stored(user).timezone) == (None, None)
    page = browser.get(f"/admin/backups/{backup.id}", headers=EN).get_data(as_text=True)
    assert html_lang(page) == "en" and "UTC" in " ".join(time_text(page))


def test_an_admin_sets_their_own_language_through_the_api(app, api, admin):
    response = api.patch(f"/users/{admin.id}", json={"locale": "zh-CN"})
    assert response.status_code == 200 and stored(admin).locale == "zh-CN"
    assert response.get_json()["data"]["locale"] == "zh-CN"


@pytest.mark.parametrize("change", [{"timezone": "Mars/Olympus"}, {"timezone": "asia/shanghai"},
                                    {"timezone": "CST"}, {"locale": "fr"}, {"locale": "zh-TW"}])
def test_a_bad_zone_or_language_is_refused_with_the_same_code_in_both_languages(app, api, change):
    user = make_user(locale="en", timezone="Europe/Berlin")
    answers = {}
    for headers in (EN, ZH):
        response = api.patch(f"/users/{user.id}", json=change, headers=headers)
        body = response.get_json()
        assert response.status_code == 400 and body["code"] == 1 and body["data"] is None, body
        answers[headers["Accept-Language"]] = body
    assert set(answers["en"]) == set(answers["zh-CN"]) == {"code", "message", "data"}
    assert (stored(user).locale, stored(user).timezone) == ("en", "Europe/Berlin")
    assert not has_cjk(answers["en"]["message"])


def test_a_bad_zone_is_explained_in_the_callers_language(app, api):
    """Waits for the catalog: the Chinese message is translated."""
    user = make_user()
    english = api.patch(f"/users/{user.id}", json={"timezone": "Mars/Olympus"}, headers=EN).get_json()
    chinese = api.patch(f"/users/{user.id}", json={"timezone": "Mars/Olympus"}, headers=ZH).get_json()
    assert "Mars/Olympus" in english["message"] and "Mars/Olympus" in chinese["message"]
    assert has_cjk(chinese["message"]) and chinese["message"] != english["message"], chinese
    assert english["code"] == chinese["code"] == 1
