"""DKIM signing and personal unsubscribe links, end to end: settings -> pipeline -> the real
SmtpTransport -> an aiosmtpd server; the signature is verified on the bytes that arrived.

Keys are made at test time with `cryptography` (there through trustme); none is committed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from smtp_servers import SmtpServer

from newsletter.ingest import ingest_dumps
from newsletter import pipeline
import runs as sending
from newsletter.delivery import make_transport
from newsletter.errors import ConfigError
from newsletter.settings import Settings, load_settings
from newsletter.store import Store
from newsletter.subscribers import load_subscribers
from newsletter.unsubscribe import unsubscribe_token, unsubscribe_url

EXAMPLE_DUMPS = Path(__file__).resolve().parents[1] / "examples" / "dumps"
FROM_ADDRESS = "digest@news.example"
SELECTOR = "nl2026"
SECRET = "test-unsubscribe-secret-0123456789"
BASE_URL = "https://news.example/unsubscribe?list=papers"
NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
SUBSCRIBERS = """\
subscribers:
  - email: Ada@Example.org
    name: Ada Lovelace
    keywords: [theorem proving, Lean]
"""


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def key_file(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> Path:
    path = tmp_path / "dkim.pem"
    path.write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return path


def dns_for(key: rsa.RSAPrivateKey, name: str):  # -> a dkimpy dnsfunc
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    asked: list[bytes] = []

    def dnsfunc(query: bytes, timeout: int = 5) -> bytes | None:
        asked.append(query)
        return record if query == f"{name}.".encode() else None

    dnsfunc.asked = asked  # type: ignore[attr-defined]
    return dnsfunc


def send_one(settings: Settings, tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/n.db")
    try:
        ingest_dumps(store, EXAMPLE_DUMPS)
        path = tmp_path / "subscribers.yaml"
        path.write_text(SUBSCRIBERS, encoding="utf-8")
        subscribers = load_subscribers(path, max_papers=5, send_at="07:00", timezone="UTC").subscribers
        [outcome] = sending.send_digests(store, list(subscribers), settings, make_transport(settings), now=NOW).outcomes
        assert outcome.status == "sent", outcome
    finally:
        store.close()


def smtp_settings(smtp: SmtpServer, **extra: object) -> Settings:
    return load_settings(
        smtp_host=smtp.host, smtp_port=smtp.port, smtp_security="none", smtp_timeout=5.0,
        from_address=FROM_ADDRESS, **extra,
    )


# DKIM ----------------------------------------------------------------------------------------
def test_the_bytes_that_arrive_carry_a_valid_signature(
    smtp: SmtpServer, tmp_path: Path, key_file: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    settings = smtp_settings(
        smtp, dkim_key_file=key_file, dkim_selector=SELECTOR,
        unsubscribe_url=BASE_URL, unsubscribe_secret=SECRET,
    )

    send_one(settings, tmp_path)

    [received] = smtp.handler.received
    dnsfunc = dns_for(rsa_key, f"{SELECTOR}._domainkey.news.example")
    assert dkim.verify(received.raw, dnsfunc=dnsfunc)
    assert dnsfunc.asked == [f"{SELECTOR}._domainkey.news.example.".encode()]
    assert received.raw.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=news.example;")
    message = received.message
    signed = {name.strip() for name in str(message["DKIM-Signature"]).split("h=")[1].split(";")[0].split(":")}
    assert {
        "from", "to", "subject", "date", "message-id", "list-id", "list-unsubscribe",
        "list-unsubscribe-post", "mime-version", "content-type",
    } <= signed
    assert f"s={SELECTOR};" in str(message["DKIM-Signature"])
    # Any change on the way breaks it: the check above is not vacuous.
    tampered = received.raw.replace(b"Subject: ", b"Subject: Re: ", 1)
    assert not dkim.verify(tampered, dnsfunc=dnsfunc)
    assert not dkim.verify(received.raw, dnsfunc=dns_for(rsa.generate_private_key(65537, 2048), f"{SELECTOR}._domainkey.news.example"))


def test_the_test_copy_is_signed_as_sent_and_carries_the_subscribers_links(
    smtp: SmtpServer, tmp_path: Path, key_file: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    settings = smtp_settings(
        smtp, dkim_key_file=key_file, dkim_selector=SELECTOR,
        unsubscribe_url=BASE_URL, unsubscribe_secret=SECRET,
    )
    store = Store(f"sqlite:///{tmp_path}/n.db")
    try:
        ingest_dumps(store, EXAMPLE_DUMPS)
        path = tmp_path / "subscribers.yaml"
        path.write_text(SUBSCRIBERS, encoding="utf-8")
        [reader] = load_subscribers(path, max_papers=5, send_at="07:00", timezone="UTC").subscribers
        sending.send_test(store, reader, "operator@example.net", settings, make_transport(settings), now=NOW)
        assert store.ledger() == []
    finally:
        store.close()

    [received] = smtp.handler.received
    assert received.rcpt_tos == ("operator@example.net",)
    message = received.message
    assert str(message["To"]) == "operator@example.net" and str(message["Subject"]).startswith("[test] ")
    # Signed over what was actually sent (To, Subject and Message-ID of the copy).
    assert dkim.verify(received.raw, dnsfunc=dns_for(rsa_key, f"{SELECTOR}._domainkey.news.example"))
    # The subscriber's own unsubscribe link, so the operator can try it.
    assert f"address={reader.email.lower()}" in str(message["List-Unsubscribe"]).replace("%40", "@")


def test_a_pkcs8_key_and_another_domain_sign_too(smtp: SmtpServer, tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    pkcs8 = tmp_path / "pkcs8.pem"  # what `openssl genpkey` writes
    pkcs8.write_bytes(rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))
    settings = smtp_settings(smtp, dkim_key_file=pkcs8, dkim_selector="s1", dkim_domain="example.com")

    send_one(settings, tmp_path)

    [received] = smtp.handler.received
    assert dkim.verify(received.raw, dnsfunc=dns_for(rsa_key, "s1._domainkey.example.com"))


def test_without_a_key_nothing_is_signed(smtp: SmtpServer, tmp_path: Path) -> None:
    send_one(smtp_settings(smtp), tmp_path)

    [received] = smtp.handler.received
    assert received.message["DKIM-Signature"] is None
    assert b"DKIM" not in received.raw


def test_key_problems_are_config_errors_at_load_time(tmp_path: Path, key_file: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    def error(**values: object) -> str:
        with pytest.raises(ConfigError) as caught:
            load_settings(**values)
        return str(caught.value)

    missing = tmp_path / "nope.pem"
    assert error(dkim_key_file=missing, dkim_selector="s1") == (
        f"invalid settings: NEWSLETTER_DKIM_KEY_FILE: cannot read {missing}: No such file or directory"
    )
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    assert error(dkim_key_file=garbage, dkim_selector="s1") == (
        f"invalid settings: NEWSLETTER_DKIM_KEY_FILE: {garbage} is not a PEM RSA private key "
        "('BEGIN RSA PRIVATE KEY' or 'BEGIN PRIVATE KEY'); make one with: openssl genrsa -out dkim.pem 2048"
    )
    assert "NEWSLETTER_DKIM_SELECTOR is not" in error(dkim_key_file=key_file)
    assert "NEWSLETTER_DKIM_KEY_FILE is not" in error(dkim_selector="s1")
    assert error(dkim_key_file=key_file, dkim_selector="bad selector").startswith(
        "invalid settings: NEWSLETTER_DKIM_SELECTOR: 'bad selector' is not a DNS name"
    )
    folder = tmp_path / "folder.pem"
    folder.mkdir()  # a folder where the key should be: unreadable as a file
    assert "NEWSLETTER_DKIM_KEY_FILE: cannot read" in error(dkim_key_file=folder, dkim_selector="s1")


def test_the_private_key_never_shows(key_file: Path) -> None:
    settings = load_settings(dkim_key_file=key_file, dkim_selector="s1")
    key = settings.dkim_key
    assert key is not None and key.domain == "newsletter.localhost" and key.selector == "s1"
    body = key_file.read_text().splitlines()[1]
    assert body not in repr(settings) and body not in repr(key) and body not in str(settings)


# unsubscribe ---------------------------------------------------------------------------------
def test_the_token_is_the_documented_hmac() -> None:
    expected = hmac.new(SECRET.encode(), b"unsubscribe:ada@example.org", hashlib.sha256).hexdigest()
    assert unsubscribe_token(SECRET, "Ada@Example.org") == expected
    assert unsubscribe_token(SECRET, "bob@example.org") != expected
    assert unsubscribe_token(SECRET + "x", "ada@example.org") != expected
    url = unsubscribe_url(BASE_URL, SECRET, "Ada@Example.org")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "news.example", "/unsubscribe")
    assert parse_qs(parts.query) == {"list": ["papers"], "address": ["ada@example.org"], "token": [expected]}


def test_one_click_unsubscribe_reaches_the_reader(smtp: SmtpServer, tmp_path: Path) -> None:
    send_one(smtp_settings(smtp, unsubscribe_url=BASE_URL, unsubscribe_secret=SECRET), tmp_path)

    [received] = smtp.handler.received
    message = received.message
    personal = unsubscribe_url(BASE_URL, SECRET, "ada@example.org")
    assert message["List-Unsubscribe"] == f"<{personal}>, <mailto:{FROM_ADDRESS}?subject=unsubscribe>"
    assert f"List-Unsubscribe: <{personal}>,\r\n <mailto:".encode() in received.raw  # as written
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert f'href="{personal.replace("&", "&amp;")}"' in html
    assert personal in text
    assert "theorem proving, Lean" in text and "Other keywords? Reply to this email" in text
    assert "mailto:digest@news.example?subject=Change%20my%20keywords" in html


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"unsubscribe_url": BASE_URL}, "NEWSLETTER_UNSUBSCRIBE_URL is set but NEWSLETTER_SECRET_KEY is not"),
        ({"unsubscribe_url": "http://news.example/u", "unsubscribe_secret": SECRET}, "must be an https:// URL"),
        ({"unsubscribe_url": "https://news.example/u x", "unsubscribe_secret": SECRET}, "must be an https:// URL"),
        ({"unsubscribe_url": BASE_URL, "unsubscribe_secret": "short"}, "must be at least 16 characters"),
    ],
)
def test_unsubscribe_settings_are_checked(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(**values)
    assert message in str(caught.value)
    assert SECRET not in str(caught.value) and "short" not in str(caught.value).split(":", 1)[1].replace("shorter", "")
