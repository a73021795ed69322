"""Every response carries the security headers: pages, redirects, the JSON API, its errors,
static files and error pages; HSTS only where the session cookie is secure."""

import pytest

from helpers import login

CREDENTIALS = {"username": "admin", "password": "correct horse battery"}

POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'; "
          "base-uri 'self'; form-action 'self'; frame-ancestors 'none'")
EXPECTED = {
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
HSTS = "max-age=31536000; includeSubDomains"


def responses(client):
    """One response of each kind, by name, from requests without a session."""
    return {
        "login page": client.get("/login"),
        "login redirect": client.get("/admin/backups/"),
        "API JSON": client.post("/api/v1/auth/token", json=CREDENTIALS),
        "API error": client.get("/api/v1/backups"),
        "health check": client.get("/healthz"),
        "static file": client.get("/static/app.css"),
        "404 page": client.get("/no/such/page"),
        "CSRF error page": client.post("/login", data=CREDENTIALS),
    }


def check_kinds(kinds):
    """The responses are the kinds their names say, so the header checks cover each kind."""
    assert kinds["login page"].status_code == 200 and kinds["login page"].mimetype == "text/html"
    assert kinds["login redirect"].status_code == 302 and "/login" in kinds["login redirect"].location
    assert kinds["API JSON"].status_code == 200 and kinds["API JSON"].is_json
    assert kinds["API error"].status_code == 401 and kinds["API error"].is_json
    assert kinds["health check"].is_json  # 200 or 503, as the worker is up or not
    assert kinds["static file"].status_code == 200 and kinds["static file"].mimetype == "text/css"
    assert kinds["404 page"].status_code == 404 and "Error 404" in kinds["404 page"].get_data(as_text=True)
    csrf_error = kinds["CSRF error page"]
    assert csrf_error.status_code == 400 and "The form expired" in csrf_error.get_data(as_text=True)


def assert_security_headers(response):
    for name, value in EXPECTED.items():
        assert response.headers.get(name) == value, f"{name} on {response.request.path}"


def test_every_kind_of_response_has_the_headers(client, admin):
    kinds = responses(client)
    check_kinds(kinds)
    for response in kinds.values():
        assert_security_headers(response)
        assert "Strict-Transport-Security" not in response.headers, "HSTS without secure cookies"


def test_signed_in_pages_fragments_and_api_have_the_headers(admin_client, api):
    for response in (admin_client.get("/admin/"), admin_client.get("/admin/settings/"),
                     admin_client.get("/admin/backups/", headers={"HX-Request": "true", "HX-Target": "backup-table"}),
                     admin_client.get("/admin/backups/424242"),
                     api.get("/backups"), api.get("/backups/424242")):
        assert_security_headers(response)
    assert api.get("/backups").is_json and api.get("/backups/424242").status_code == 404


def test_a_login_post_redirect_has_the_headers(client, admin):
    response = login(client)
    assert response.status_code == 302
    assert_security_headers(response)


@pytest.fixture
def secure_app(app, admin):
    """The test app's configuration with SESSION_COOKIE_SECURE on, as behind HTTPS."""
    from webapp import create_app
    from webapp.extensions import db

    secure = create_app(dict(app.config, SESSION_COOKIE_SECURE=True))
    yield secure
    with secure.app_context():
        db.engine.dispose()


def test_hsts_only_with_secure_cookies(secure_app):
    kinds = responses(secure_app.test_client())
    check_kinds(kinds)
    for response in kinds.values():
        assert_security_headers(response)
        assert response.headers.get("Strict-Transport-Security") == HSTS


def test_a_server_error_page_has_the_headers(app, client):
    app.config["PROPAGATE_EXCEPTIONS"] = False  # answer with the 500 page, as in production

    def broken():
        raise RuntimeError("a bug")

    app.add_url_rule("/broken", "broken", broken)
    response = client.get("/broken")
    assert response.status_code == 500 and "Error 500" in response.get_data(as_text=True)
    assert_security_headers(response)


def test_a_header_a_view_sets_is_kept(app, client):
    own_policy = "default-src 'none'"
    app.add_url_rule("/own-policy", "own_policy",
                     lambda: ("raw", {"Content-Security-Policy": own_policy, "X-Frame-Options": "SAMEORIGIN"}))
    response = client.get("/own-policy")
    assert response.headers["Content-Security-Policy"] == own_policy
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers.getlist("Content-Security-Policy") == [own_policy]
