"""Every user chooses their own language and time zone in Settings, under Your preferences."""

import re

from helpers import csrf_token, login

PREFERENCES = "/admin/settings/preferences"


def save(client, **fields):
    return client.post(PREFERENCES, data={"csrf_token": csrf_token(client, "/admin/settings"), **fields})


def page_language(html):
    return re.search(r'<html lang="([^"]+)"', html).group(1)


def test_a_user_chooses_language_and_time_zone(app, admin_client, admin):
    from webapp.extensions import db

    page = admin_client.get("/admin/settings").get_data(as_text=True)
    assert 'id="preferences-form"' in page and "Dates and times are shown in UTC." in page

    saved = save(admin_client, locale="zh-CN", timezone="Asia/Shanghai")
    assert saved.status_code == 302 and saved.headers["Location"].endswith("/admin/settings")
    db.session.refresh(admin)
    assert (admin.locale, admin.timezone) == ("zh-CN", "Asia/Shanghai")
    page = admin_client.get("/admin/settings").get_data(as_text=True)
    assert page_language(page) == "zh-CN" and '<option value="Asia/Shanghai" selected>' in page

    save(admin_client, locale="en")  # a field left out is left as it is
    db.session.refresh(admin)
    assert (admin.locale, admin.timezone) == ("en", "Asia/Shanghai")
    page = admin_client.get("/admin/settings").get_data(as_text=True)
    assert page_language(page) == "en" and "Your preferences are saved." in page
    assert "Dates and times are shown in Asia/Shanghai." in page

    save(admin_client, timezone="")  # the server's default again
    db.session.refresh(admin)
    assert (admin.locale, admin.timezone) == ("en", None)
    assert "Dates and times are shown in UTC." in admin_client.get("/admin/settings").get_data(as_text=True)


def test_following_the_browser_again(admin_client, admin):
    from webapp.extensions import db

    save(admin_client, locale="en")
    save(admin_client, locale="")
    db.session.refresh(admin)
    assert admin.locale is None
    page = admin_client.get("/admin/settings", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert page_language(page.get_data(as_text=True)) == "zh-CN"


def test_a_zone_that_does_not_exist_is_refused(admin_client, admin):
    from webapp.extensions import db

    refused = save(admin_client, locale="zh-CN", timezone="Mars/Olympus_Mons")
    assert refused.status_code == 400
    assert "Mars/Olympus_Mons is not a time zone" in refused.get_data(as_text=True)
    db.session.refresh(admin)
    assert (admin.locale, admin.timezone) == (None, None)  # nothing of the refused choice is kept
    assert save(admin_client, locale="fr").status_code == 400


def test_a_viewer_sets_their_own_preferences(app, client, admin, viewer):
    from webapp.extensions import db

    login(client, "viewer", "viewer password")
    assert save(client, locale="zh-CN", timezone="Europe/Berlin").status_code == 302
    db.session.refresh(viewer)
    db.session.refresh(admin)
    assert (viewer.locale, viewer.timezone) == ("zh-CN", "Europe/Berlin")
    assert (admin.locale, admin.timezone) == (None, None)


def test_preferences_need_a_signed_in_user(client, admin):
    response = client.post(PREFERENCES, data={"csrf_token": csrf_token(client), "locale": "zh-CN"})
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_the_sign_in_page_switches_language_and_wtforms_speaks_it(client, admin):
    switched = client.post("/login", data={"csrf_token": csrf_token(client), "locale": "zh-CN",
                                           "next": "/login"})
    assert switched.status_code == 302 and switched.headers["Location"].endswith("/login")
    page = client.get("/login").get_data(as_text=True)
    assert page_language(page) == "zh-CN"
    too_long = client.post("/login", data={"csrf_token": csrf_token(client), "username": "x" * 65,
                                           "password": "whatever"})
    assert "64" in too_long.get_data(as_text=True) and "字段长度" in too_long.get_data(as_text=True)
