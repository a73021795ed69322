"""Security headers on every response: pages, fragments, the JSON API, static files, errors."""

from flask import current_app

# Scripts and styles load only from this origin (static/): no inline <script>, on*= handlers, style= attributes
# or eval, so an injected string in a page cannot run or restyle anything.
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
}

STRICT_TRANSPORT_SECURITY = "max-age=31536000; includeSubDomains"


def init_app(app):
    app.after_request(add_security_headers)


def add_security_headers(response):
    """Add each header a view has not set itself."""
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    # Secure cookies mean the deployment is served over HTTPS; only then may browsers be told to
    # refuse plain HTTP for a year.
    if current_app.config.get("SESSION_COOKIE_SECURE"):
        response.headers.setdefault("Strict-Transport-Security", STRICT_TRANSPORT_SECURITY)
    return response
