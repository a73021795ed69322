"""Email over STARTTLS and over TLS from the first byte, to a real aiosmtpd on 127.0.0.1 whose
certificate is signed by a test authority: trusted (through SSL_CERT_FILE, which Python's default
context reads), the mail arrives and the login travels encrypted; not trusted, the delivery fails
with the reason and nothing is sent."""

import datetime as dt
import ipaddress
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from rq import SimpleWorker

from notify_receivers import SmtpReceiver

USER, PASSWORD = "cairn", "Smtp-Passw0rd-Never-Shown"


def name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def certificate(subject, issuer, public_key, signing_key, ca=False):
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
               .public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


@pytest.fixture(scope="module")
def authority(tmp_path_factory):
    """A test certificate authority's file, and a server context holding a certificate it signed
    for 127.0.0.1."""
    folder = tmp_path_factory.mktemp("tls")
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("Cairn test CA", "Cairn test CA", ca_key.public_key(), ca_key, ca=True)
    server = certificate("127.0.0.1", "Cairn test CA", server_key.public_key(), ca_key)
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (folder / "server.key").write_bytes(server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "server.pem", folder / "server.key")
    return folder / "ca.pem", context


def send_test_email(app, api, server, security):
    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=server.port, SMTP_SECURITY=security, SMTP_USERNAME=USER,
                      SMTP_PASSWORD=PASSWORD, SMTP_FROM="cairn@example.test")
    created = api.post("/notifications", json={"name": "admins", "kind": "email", "to": ["ops@example.test"]})
    channel_id = created.get_json()["data"]["id"]
    assert api.post(f"/notifications/{channel_id}/test").status_code == 202

    from webapp.extensions import db, get_notification_queue, get_redis

    SimpleWorker([get_notification_queue()], connection=get_redis()).work(burst=True, logging_level="WARNING")
    db.session.expire_all()
    delivery, = api.get(f"/notifications/{channel_id}/deliveries").get_json()["data"]["items"]
    return delivery


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_a_trusted_server_gets_the_mail_and_the_login_encrypted(app, api, authority, monkeypatch, security):
    ca_file, context = authority
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    server = SmtpReceiver(USER, PASSWORD, security=security, tls=context)
    try:
        delivery = send_test_email(app, api, server, security)
        assert (delivery["status"], delivery["error"]) == ("delivered", None)
        mail, = server.mails
        assert mail.subject == "[Cairn] test: admins" and mail.login == USER
        assert [ok for _, ok in server.recorder.logins] == [True]
    finally:
        server.close()


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_an_untrusted_certificate_stops_the_mail_with_the_reason(app, api, authority, security):
    _, context = authority  # SSL_CERT_FILE not set: the system's authorities know nothing of it
    server = SmtpReceiver(USER, PASSWORD, security=security, tls=context)
    try:
        delivery = send_test_email(app, api, server, security)
        assert delivery["status"] == "failed" and delivery["attempts"] == 1
        assert "could not reach the mail server" in delivery["error"], delivery["error"]
        assert server.mails == [] and server.recorder.logins == []
        assert PASSWORD not in delivery["error"]
    finally:
        server.close()


def test_a_server_that_wants_starttls_says_so_when_cairn_sends_plain(app, api, authority):
    _, context = authority
    server = SmtpReceiver(USER, PASSWORD, security="starttls", tls=context)
    try:
        delivery = send_test_email(app, api, server, "none")
        assert delivery["status"] == "failed" and "starttls" in delivery["error"], delivery["error"]
        assert server.mails == []
    finally:
        server.close()
