"""The JWT matrix: forged, broken and revoked tokens are refused (401, code 2); a real one works.

Cairn's JWTs are HS256, signed with `SECRET_KEY`, with the claims `sub` (the user id as text),
`iat`, `exp`, `aud` = "cairn-api", `typ` = "access" and `ver` (the user's session version). Each
forged token below is a valid token with exactly one thing changed, built with PyJWT (or by hand
where PyJWT refuses to build the attack). The valid forged token itself is the control: it must
be accepted, so each refusal is caused by the one change.

`cryptography` is not among Cairn's requirements, and PyJWT needs it for RS256, so the RSA key and
the RS256 signatures are made here in plain Python (PKCS#1 v1.5 with SHA-256, RFC 8017).
"""

import base64
import hashlib
import hmac
import json
import secrets
import time

import jwt
import pytest
from flask import g

from helpers import csrf_token, login

AUDIENCE = "cairn-api"
DROP = object()
ROUTES = ["GET /api/v1/backups", "POST /api/v1/sources"]


# ------------------------------------------------------- token building ----

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(value):
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def claims_for(user, **changes):
    """A valid token's claims for `user`, with `changes` applied (DROP removes a claim)."""
    now = int(time.time())
    claims = {"sub": str(user.id), "iat": now, "exp": now + 600, "aud": AUDIENCE, "typ": "access",
              "ver": user.session_version}
    for name, value in changes.items():
        if value is DROP:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def hs256(app, claims):
    return jwt.encode(claims, app.config["SECRET_KEY"], algorithm="HS256")


def signed_by_hand(header, claims, sign):
    signing_input = f"{b64url_json(header)}.{b64url_json(claims)}"
    return f"{signing_input}.{b64url(sign(signing_input.encode()))}"


def hmac_sha256_with(key):
    return lambda message: hmac.new(key, message, hashlib.sha256).digest()


# ------------------------------------------------- RSA, in plain Python ----

SMALL_PRIMES = [p for p in range(3, 2000) if all(p % d for d in range(2, int(p ** 0.5) + 1))]


def is_probable_prime(n, rounds=40):
    if n < 2:
        return False
    for p in SMALL_PRIMES:
        if n % p == 0:
            return n == p
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for _ in range(rounds):
        x = pow(2 + secrets.randbelow(n - 3), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def random_prime(bits, e):
    while True:
        candidate = secrets.randbits(bits) | (3 << (bits - 2)) | 1
        if (candidate - 1) % e and is_probable_prime(candidate):
            return candidate


class RsaKey:
    """A fresh 2048-bit RSA key: RS256 signatures and the public key as PEM."""

    E = 65537
    SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")

    def __init__(self, bits=2048):
        while True:
            p, q = random_prime(bits // 2, self.E), random_prime(bits // 2, self.E)
            n = p * q
            if p != q and n.bit_length() == bits:
                break
        self.n, self.d = n, pow(self.E, -1, (p - 1) * (q - 1))
        self.size = (n.bit_length() + 7) // 8

    def sign_rs256(self, message):
        digest_info = self.SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
        encoded = b"\x00\x01" + b"\xff" * (self.size - len(digest_info) - 3) + b"\x00" + digest_info
        signature = pow(int.from_bytes(encoded, "big"), self.d, self.n).to_bytes(self.size, "big")
        assert pow(int.from_bytes(signature, "big"), self.E, self.n) == int.from_bytes(encoded, "big")
        return signature

    def public_pem(self):
        def der(tag, body):
            size = len(body)
            length = bytes([size]) if size < 0x80 else \
                bytes([0x80 | ((size.bit_length() + 7) // 8)]) + size.to_bytes((size.bit_length() + 7) // 8, "big")
            return bytes([tag]) + length + body

        def integer(value):
            return der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))

        rsa_encryption = der(0x30, der(0x06, bytes.fromhex("2a864886f70d010101")) + der(0x05, b""))
        public_key = der(0x30, integer(self.n) + integer(self.E))
        spki = der(0x30, rsa_encryption + der(0x03, b"\x00" + public_key))
        body = base64.b64encode(spki).decode()
        lines = [body[i:i + 64] for i in range(0, len(body), 64)]
        return "-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines) + "\n-----END PUBLIC KEY-----\n"

    def jwk(self):
        def number(value):
            return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))

        return {"kty": "RSA", "n": number(self.n), "e": number(self.E)}


@pytest.fixture(scope="module")
def rsa_key():
    return RsaKey()


# ------------------------------------------------------------- the cases ----

def alg_none(app, user, rsa_key, keep_signature=False, spelling="none"):
    claims = claims_for(user)
    unsigned = f"{b64url_json({'alg': spelling, 'typ': 'JWT'})}.{b64url_json(claims)}."
    if keep_signature:
        unsigned += hs256(app, claims).rsplit(".", 1)[1]
    return unsigned


def tampered_sub(app, user, rsa_key, viewer):
    """Signed for the viewer, then `sub` changed to `user` with the viewer's signature kept."""
    header, _payload, signature = hs256(app, claims_for(viewer)).split(".")
    forged = claims_for(viewer, sub=str(user.id))
    return f"{header}.{b64url_json(forged)}.{signature}"


CASES = {
    "alg none, no signature": alg_none,
    "alg none, signature kept": lambda app, user, key, viewer: alg_none(app, user, key, keep_signature=True),
    "alg None spelled differently": lambda app, user, key, viewer: alg_none(app, user, key, spelling="None"),
    "HS256 with a wrong key": lambda app, user, key, viewer: jwt.encode(
        claims_for(user), "not the secret key, but just as long as one", algorithm="HS256"),
    "HS256 with an empty signature": lambda app, user, key, viewer: hs256(app, claims_for(user)).rsplit(".", 1)[0] + ".",
    "HS256 with the RSA public key PEM as secret": lambda app, user, key, viewer: signed_by_hand(
        {"alg": "HS256", "typ": "JWT"}, claims_for(user), hmac_sha256_with(key.public_pem().encode())),
    "RS256 with a fresh RSA key": lambda app, user, key, viewer: signed_by_hand(
        {"alg": "RS256", "typ": "JWT"}, claims_for(user), key.sign_rs256),
    "RS256 with its own key embedded (jwk)": lambda app, user, key, viewer: signed_by_hand(
        {"alg": "RS256", "typ": "JWT", "jwk": key.jwk()}, claims_for(user), key.sign_rs256),
    "HS512 with the right key (not the app's algorithm)": lambda app, user, key, viewer: jwt.encode(
        claims_for(user), app.config["SECRET_KEY"], algorithm="HS512"),
    "missing exp": lambda app, user, key, viewer: hs256(app, claims_for(user, exp=DROP)),
    "expired exp": lambda app, user, key, viewer: hs256(app, claims_for(
        user, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)),
    "missing iat": lambda app, user, key, viewer: hs256(app, claims_for(user, iat=DROP)),
    "iat in the future": lambda app, user, key, viewer: hs256(app, claims_for(user, iat=int(time.time()) + 3600)),
    "wrong audience": lambda app, user, key, viewer: hs256(app, claims_for(user, aud="another-api")),
    "missing audience": lambda app, user, key, viewer: hs256(app, claims_for(user, aud=DROP)),
    "wrong typ": lambda app, user, key, viewer: hs256(app, claims_for(user, typ="refresh")),
    "missing typ": lambda app, user, key, viewer: hs256(app, claims_for(user, typ=DROP)),
    "missing ver": lambda app, user, key, viewer: hs256(app, claims_for(user, ver=DROP)),
    "older ver": lambda app, user, key, viewer: hs256(app, claims_for(user, ver=user.session_version - 1)),
    "missing sub": lambda app, user, key, viewer: hs256(app, claims_for(user, sub=DROP)),
    "sub of no user": lambda app, user, key, viewer: hs256(app, claims_for(user, sub="999999")),
    "sub not a user id": lambda app, user, key, viewer: hs256(app, claims_for(user, sub="admin")),
    "tampered payload (sub changed after signing)": tampered_sub,
}


# -------------------------------------------------------------- requests ----

def call(app, client, route, token, tmp_path):
    """The route with `token` as Bearer; a create-source body for the write route."""
    g.pop("_login_user", None)
    method, path = route.split(" ")
    headers = {"Authorization": f"Bearer {token}"}
    if method == "GET":
        return client.get(path, headers=headers)
    folder = tmp_path / "jwt-source"
    folder.mkdir(exist_ok=True)
    return client.post(path, headers=headers, json={"name": "jwt-source", "kind": "files", "path": str(folder)})


def source_count():
    from webapp.extensions import db
    from webapp.models import Source

    db.session.expire_all()
    return db.session.query(Source).count()


def assert_refused(app, client, route, token, tmp_path):
    before = source_count()
    response = call(app, client, route, token, tmp_path)
    body = response.get_json(silent=True)
    assert response.status_code == 401, (response.status_code, response.get_data(as_text=True)[:300])
    assert isinstance(body, dict) and body.get("code") == 2 and body.get("data") is None, body
    assert source_count() == before


def assert_accepted(app, client, route, token, tmp_path):
    response = call(app, client, route, token, tmp_path)
    assert response.status_code == (200 if route.startswith("GET") else 201), response.get_data(as_text=True)[:300]
    assert response.get_json()["code"] == 0


def real_token(client, username, password):
    response = client.post("/api/v1/auth/token", json={"username": username, "password": password})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["data"]["token"]


# ----------------------------------------------------------------- tests ----

@pytest.mark.parametrize("route", ROUTES)
def test_a_token_from_auth_token_is_accepted(app, client, admin, route, tmp_path):
    assert_accepted(app, client, route, real_token(client, "admin", "correct horse battery"), tmp_path)


def test_the_issued_token_is_what_the_forgeries_copy(app, client, admin):
    """The forged tokens below are faithful copies of a real one, so a change to the format shows
    here rather than as a pass of the refusal tests."""
    token = real_token(client, "admin", "correct horse battery")
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, app.config["SECRET_KEY"], algorithms=["HS256"], audience=AUDIENCE)
    assert claims["sub"] == str(admin.id) and claims["typ"] == "access" and claims["aud"] == AUDIENCE
    assert isinstance(claims["ver"], int) and claims["ver"] == admin.session_version
    assert claims["exp"] > claims["iat"] and {"iat", "exp"} <= set(claims)


@pytest.mark.parametrize("route", ROUTES)
def test_the_valid_forgery_is_accepted(app, client, admin, route, tmp_path):
    """The control: signed like the app signs, nothing changed."""
    assert_accepted(app, client, route, hs256(app, claims_for(admin)), tmp_path)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("case", list(CASES))
def test_a_forged_or_broken_token_is_refused(app, client, admin, viewer, rsa_key, case, route, tmp_path):
    token = CASES[case](app, admin, rsa_key, viewer)
    assert_refused(app, client, route, token, tmp_path)


@pytest.fixture
def second_admin(app):
    """An admin the tests may disable or delete (the last active admin cannot be)."""
    from webapp.services.accounts import create_user
    from webapp.services.audit import SYSTEM

    return create_user(SYSTEM, "second", "second admin password", "admin")


@pytest.mark.parametrize("route", ROUTES)
def test_a_token_of_a_disabled_user_is_refused(app, client, admin, second_admin, route, tmp_path):
    from webapp.extensions import db

    token = real_token(client, "second", "second admin password")
    assert_accepted(app, client, "GET /api/v1/backups", token, tmp_path)
    # Only `disabled` changes: the session version stays, so the refusal is for being disabled.
    second_admin.disabled = True
    db.session.commit()
    assert_refused(app, client, route, token, tmp_path)


@pytest.mark.parametrize("route", ROUTES)
def test_a_token_of_a_deleted_user_is_refused(app, client, admin, second_admin, route, tmp_path):
    from webapp.services import accounts
    from webapp.services.audit import SYSTEM

    token = real_token(client, "second", "second admin password")
    assert_accepted(app, client, "GET /api/v1/backups", token, tmp_path)
    accounts.delete_user(SYSTEM, second_admin)
    assert_refused(app, client, route, token, tmp_path)
    # A new user does not inherit the deleted one's id, so the old token stays dead.
    newcomer = accounts.create_user(SYSTEM, "newcomer", "newcomer password", "admin")
    assert str(newcomer.id) != jwt.decode(token, options={"verify_signature": False})["sub"]
    assert_refused(app, client, route, token, tmp_path)


@pytest.mark.parametrize("route", ROUTES)
def test_a_token_issued_before_a_logout_is_refused(app, client, admin, route, tmp_path):
    token = real_token(client, "admin", "correct horse battery")
    assert_accepted(app, client, "GET /api/v1/backups", token, tmp_path)
    g.pop("_login_user", None)
    assert login(client).status_code == 302
    assert client.post("/logout", data={"csrf_token": csrf_token(client, "/admin/")}).status_code == 302
    g.pop("_login_user", None)
    assert_refused(app, client, route, token, tmp_path)


@pytest.mark.parametrize("route", ROUTES)
def test_a_token_issued_before_a_password_change_is_refused(app, client, admin, route, tmp_path):
    from webapp.services import accounts
    from webapp.services.audit import Actor

    token = real_token(client, "admin", "correct horse battery")
    assert_accepted(app, client, "GET /api/v1/backups", token, tmp_path)
    accounts.change_own_password(Actor(admin), "correct horse battery", "a brand new password")
    assert_refused(app, client, route, token, tmp_path)
    assert_accepted(app, client, route, real_token(client, "admin", "a brand new password"), tmp_path)
