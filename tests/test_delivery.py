"""Delivery against real aiosmtpd servers on loopback: what arrives, and how failures read.

Each test starts its own server (tests/smtpd.py), sends through `make_transport(settings)`
exactly as the pipeline does, and reads what the server recorded. Faults are injected by the
server (451, 550, a dropped connection), never by patching aiosmtplib.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path

import aiosmtplib
import pytest
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from newsletter import delivery
from newsletter.delivery import OutboxTransport, SmtpTransport, make_transport, translate_smtp_error
from newsletter.delivery.smtp import wire_payload
from newsletter.errors import DeliveryError
from newsletter.message import compose_message, digest_message_id
from newsletter.render import RenderedDigest
from newsletter.settings import Settings, load_settings
from smtp_servers import (
    SmtpServer,
    TlsMaterial,
    free_port,
    CLIENT_FROM,
    smtp_server,
    smtp_settings,
    starttls_server,
    starttls_settings,
)

FROM_ADDRESS = CLIENT_FROM
DOMAIN = "news.example"
DAY = date(2026, 4, 15)
SENT_AT = datetime(2026, 4, 15, 7, 0, tzinfo=UTC)
UNSUBSCRIBE_URL = "https://news.example/unsubscribe/t0k3n"
TITLE = "LeanDojo: Theorem Proving with Retrieval-Augmented Language Models"


def digest(to: str = "ada@example.org", *, subject: str = f"1 paper on theorem proving: {TITLE}") -> EmailMessage:
    rendered = RenderedDigest(
        subject=subject,
        preheader="One new paper on theorem proving",
        html=f"<html><body><h1>Your digest</h1><p><a href='https://arxiv.org/abs/2306.15626'>{TITLE}</a></p></body></html>",
        text=f"Your digest\n\n1. {TITLE}\n   https://arxiv.org/abs/2306.15626\n",
    )
    return compose_message(
        digest=rendered,
        to_address=to,
        to_name="Ada Lovelace",
        from_address=FROM_ADDRESS,
        from_name="Research digest",
        message_id=digest_message_id(to, DAY, DOMAIN),
        sent_at=SENT_AT,
        unsubscribe_url=UNSUBSCRIBE_URL,
    )


def deliver(settings: Settings, *messages: EmailMessage) -> None:
    """Send through the transport the settings choose, on one connection, then close it."""

    async def run() -> None:
        transport = make_transport(settings)
        try:
            for message in messages:
                await transport.send(message)
        finally:
            await transport.close()

    asyncio.run(run())


def deliver_each(settings: Settings, *messages: EmailMessage) -> list[DeliveryError | None]:
    """Like `deliver`, but one failure does not stop the next message (as in the pipeline)."""
    errors: list[DeliveryError | None] = []

    async def run() -> None:
        transport = make_transport(settings)
        try:
            for message in messages:
                try:
                    await transport.send(message)
                    errors.append(None)
                except DeliveryError as exc:
                    errors.append(exc)
        finally:
            await transport.close()

    asyncio.run(run())
    return errors


# plain delivery ----------------------------------------------------------------------------
def test_plain_delivery_arrives_with_every_header_and_both_parts(smtp: SmtpServer) -> None:
    settings = smtp_settings(smtp)
    assert isinstance(make_transport(settings), SmtpTransport)
    sent = digest()

    deliver(settings, sent)

    [received] = smtp.handler.received
    assert received.mail_from == FROM_ADDRESS
    assert received.rcpt_tos == ("ada@example.org",)
    assert not received.tls and not received.authenticated
    message = received.message
    assert message["From"].addresses[0].addr_spec == FROM_ADDRESS
    assert message["From"].addresses[0].display_name == "Research digest"
    assert message["To"].addresses[0].addr_spec == "ada@example.org"
    assert message["Subject"] == f"1 paper on theorem proving: {TITLE}"
    assert parsedate_to_datetime(message["Date"]) == SENT_AT
    assert message["Message-ID"] == digest_message_id("ada@example.org", DAY, DOMAIN)
    assert message["List-Unsubscribe"].startswith(f"<{UNSUBSCRIBE_URL}>, <mailto:{FROM_ADDRESS}?")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    for name in ("From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe"):
        assert len(message.get_all(name)) == 1, name
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and TITLE in text.get_content()
    assert html is not None and TITLE in html.get_content()
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]


def test_unicode_subject_and_name_survive_the_trip(smtp: SmtpServer) -> None:
    subject = "2 papers on Lean: Gödel’s ∀-proofs — über Beweise"

    deliver(smtp_settings(smtp), digest("zoe@example.org", subject=subject))

    [received] = smtp.handler.received
    assert received.raw.isascii()  # RFC 2047 encoded words, not raw UTF-8 in the header
    assert received.message["Subject"] == subject


def test_one_connection_carries_several_digests(smtp: SmtpServer) -> None:
    recipients = [f"reader{n}@example.org" for n in range(3)]

    deliver(smtp_settings(smtp), *(digest(to) for to in recipients))

    assert [r.rcpt_tos for r in smtp.handler.received] == [(to,) for to in recipients]
    assert smtp.handler.connections == 1


# TLS and AUTH ---------------------------------------------------------------------------
def test_starttls_with_login_delivers(tls_material: TlsMaterial) -> None:
    with starttls_server(tls_material) as server:
        settings = starttls_settings(server, tls_material)
        deliver(settings, digest())

    [received] = server.handler.received
    assert received.tls and received.authenticated
    assert received.rcpt_tos == ("ada@example.org",)


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_each_auth_mechanism_works_over_starttls(tls_material: TlsMaterial, mechanism: str) -> None:
    other = {"PLAIN": "LOGIN", "LOGIN": "PLAIN"}[mechanism]
    with starttls_server(tls_material, auth_exclude_mechanism=[other]) as server:
        settings = starttls_settings(server, tls_material)
        deliver(settings, digest())

    [received] = server.handler.received
    assert received.tls and received.authenticated


def test_wrong_password_is_permanent_and_names_the_settings(tls_material: TlsMaterial) -> None:
    with starttls_server(tls_material) as server:
        settings = starttls_settings(server, tls_material, smtp_password="not the password")
        with pytest.raises(DeliveryError) as caught:
            deliver(settings, digest())

    error = caught.value
    assert error.permanent
    assert error.code == 535
    assert "NEWSLETTER_SMTP_USERNAME" in str(error) and "NEWSLETTER_SMTP_PASSWORD" in str(error)
    assert "not the password" not in str(error)
    assert server.handler.received == []
    assert server.handler.connections == 1  # permanent: no retry


def test_implicit_tls_delivers(tls_material: TlsMaterial) -> None:
    with smtp_server(ssl_context=tls_material.server_context) as server:
        settings = smtp_settings(server, smtp_security="tls", smtp_ca_file=tls_material.ca_file)
        deliver(settings, digest())

    [received] = server.handler.received
    assert received.tls
    assert received.message["Subject"].startswith("1 paper on theorem proving")


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_certificates_are_verified_by_default(tls_material: TlsMaterial, security: str) -> None:
    server_options = (
        {"ssl_context": tls_material.server_context}
        if security == "tls"
        else {"tls_context": tls_material.server_context, "require_starttls": True}
    )
    with smtp_server(**server_options) as server:
        settings = smtp_settings(server, smtp_security=security)  # no CA file: the system store
        assert settings.smtp_validate_certs and settings.smtp_ca_file is None
        with pytest.raises(DeliveryError) as caught:
            deliver(settings, digest())

    error = caught.value
    message = str(error)
    assert f"TLS certificate of 127.0.0.1:{server.port} could not be verified" in message
    assert "NEWSLETTER_SMTP_CA_FILE" in message
    assert error.permanent  # a configuration problem: retrying cannot fix it
    assert isinstance(error.__cause__, ssl.SSLError | aiosmtplib.SMTPConnectError)
    assert server.handler.received == []
    assert server.handler.connections == 1  # permanent: no retry


def test_starttls_asked_of_a_server_without_it_is_permanent(
    smtp: SmtpServer, tls_material: TlsMaterial
) -> None:
    settings = smtp_settings(smtp, smtp_security="starttls", smtp_ca_file=tls_material.ca_file)

    with pytest.raises(DeliveryError) as caught:
        deliver(settings, digest())

    assert "STARTTLS" in str(caught.value) and "NEWSLETTER_SMTP_SECURITY" in str(caught.value)
    assert caught.value.permanent
    assert smtp.handler.connections == 1


# faults: retry what may pass later, stop on what will not ---------------------------------
@pytest.mark.parametrize("stage", ["transient_rcpt", "transient_data"])
def test_451_is_retried_and_delivered_once(smtp: SmtpServer, fast_retries: None, stage: str) -> None:
    setattr(smtp.handler, stage, 1)

    deliver(smtp_settings(smtp), digest())

    assert len(smtp.handler.received) == 1
    assert smtp.handler.connections == 1  # a 4xx is a reply: the line is fine and kept


def test_451_that_never_clears_ends_as_a_transient_error(smtp: SmtpServer, fast_retries: None) -> None:
    smtp.handler.transient_data = 100

    with pytest.raises(DeliveryError) as caught:
        deliver(smtp_settings(smtp), digest())

    assert caught.value.code == 451
    assert not caught.value.permanent
    assert caught.value.recipient == "ada@example.org"
    assert smtp.handler.data_attempts == delivery.MAX_ATTEMPTS
    assert smtp.handler.received == []


def test_backoff_waits_between_attempts(smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delivery.smtp, "BACKOFF_BASE_SECONDS", 0.2)
    smtp.handler.transient_rcpt = 1
    started = asyncio.run(_timed(smtp_settings(smtp), digest()))

    assert 0.1 <= started < 2.0  # one retry after base * jitter in [0.5, 1.0)
    assert len(smtp.handler.received) == 1


async def _timed(settings: Settings, message: EmailMessage) -> float:
    loop = asyncio.get_running_loop()
    transport = make_transport(settings)
    start = loop.time()
    try:
        await transport.send(message)
    finally:
        await transport.close()
    return loop.time() - start


def test_550_is_permanent_with_its_code(smtp: SmtpServer, fast_retries: None) -> None:
    smtp.handler.refuse.add("gone@example.org")

    with pytest.raises(DeliveryError) as caught:
        deliver(smtp_settings(smtp), digest("gone@example.org"))

    error = caught.value
    assert error.code == 550
    assert error.permanent
    assert error.recipient == "gone@example.org"
    assert "gone@example.org" in str(error) and "550" in str(error)
    assert smtp.handler.rcpt_attempts == 1  # not retried
    assert smtp.handler.received == []


def test_a_refused_recipient_does_not_spoil_the_connection(smtp: SmtpServer) -> None:
    smtp.handler.refuse.add("gone@example.org")

    errors = deliver_each(
        smtp_settings(smtp), digest("gone@example.org"), digest("ada@example.org")
    )

    assert errors[0] is not None and errors[0].code == 550
    assert errors[1] is None
    assert [r.rcpt_tos for r in smtp.handler.received] == [("ada@example.org",)]


def test_connection_dropped_mid_data_is_retried_and_delivered_once(
    smtp: SmtpServer, fast_retries: None
) -> None:
    smtp.handler.drop_data = 1

    deliver(smtp_settings(smtp), digest(), digest("bob@example.org"))

    assert smtp.handler.data_attempts == 3
    assert [r.rcpt_tos for r in smtp.handler.received] == [("ada@example.org",), ("bob@example.org",)]


def test_connection_dropped_every_time_is_a_transient_error(smtp: SmtpServer, fast_retries: None) -> None:
    smtp.handler.drop_data = 100

    with pytest.raises(DeliveryError) as caught:
        deliver(smtp_settings(smtp), digest())

    assert not caught.value.permanent
    assert caught.value.code is None
    assert "connection lost" in str(caught.value)
    assert smtp.handler.data_attempts == delivery.MAX_ATTEMPTS
    assert smtp.handler.received == []


def test_nothing_listening_is_a_delivery_error(fast_retries: None) -> None:
    port = free_port()
    settings = load_settings(smtp_host="127.0.0.1", smtp_port=port, smtp_security="none")

    with pytest.raises(DeliveryError) as caught:
        deliver(settings, digest())

    assert f"127.0.0.1 on port {port}" in str(caught.value) and "refused" in str(caught.value)
    assert not caught.value.permanent
    assert isinstance(caught.value.__cause__, ConnectionError)


# the mapping from aiosmtplib errors --------------------------------------------------------
@pytest.mark.parametrize(
    ("exc", "code", "permanent"),
    [
        (aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(550, "no", "a@x")]), 550, True),
        (aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(452, "full", "a@x")]), 452, False),
        (aiosmtplib.SMTPAuthenticationError(535, "bad credentials"), 535, True),
        (aiosmtplib.SMTPDataError(554, "spam"), 554, True),
        (aiosmtplib.SMTPDataError(421, "closing"), 421, False),
        (aiosmtplib.SMTPSenderRefused(553, "sender", "d@x"), 553, True),
        (aiosmtplib.SMTPReadTimeoutError("timed out"), None, False),
        (aiosmtplib.SMTPConnectTimeoutError("timed out"), None, False),
        (aiosmtplib.SMTPServerDisconnected("gone"), None, False),
        (aiosmtplib.SMTPConnectError("refused"), None, False),
        (aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server"), None, True),
        (aiosmtplib.SMTPException("SMTP STARTTLS extension not supported by server."), None, True),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else None,
)
def test_every_aiosmtplib_error_becomes_a_delivery_error(
    exc: aiosmtplib.SMTPException, code: int | None, permanent: bool
) -> None:
    error = translate_smtp_error(exc, "a@x.example")

    assert isinstance(error, DeliveryError)
    assert (error.code, error.permanent, error.recipient) == (code, permanent, "a@x.example")
    assert str(error)


# the outbox -----------------------------------------------------------------------------
def test_outbox_writes_one_parseable_eml_atomically(tmp_path: Path) -> None:
    settings = load_settings(outbox_dir=tmp_path / "outbox")
    transport = make_transport(settings)
    assert isinstance(transport, OutboxTransport)
    sent = digest()

    asyncio.run(transport.send(sent))

    files = sorted((tmp_path / "outbox").iterdir())
    assert [f.suffix for f in files] == [".eml"]  # no .tmp left behind
    assert files[0] == transport.path_for(sent)
    stored = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert stored["Message-ID"] == sent.message_id
    assert stored["To"].addresses[0].addr_spec == "ada@example.org"
    assert stored.get_body(("html",)) is not None and stored.get_body(("plain",)) is not None


def test_outbox_resend_replaces_the_same_file(tmp_path: Path) -> None:
    transport = OutboxTransport(tmp_path / "outbox")

    asyncio.run(transport.send(digest()))
    asyncio.run(transport.send(digest()))

    assert len(list((tmp_path / "outbox").iterdir())) == 1


def test_outbox_that_cannot_be_written_is_a_delivery_error(tmp_path: Path) -> None:
    blocker = tmp_path / "outbox"
    blocker.write_text("a file where the folder should be")
    transport = OutboxTransport(blocker)

    with pytest.raises(DeliveryError) as caught:
        asyncio.run(transport.send(digest()))

    assert "NEWSLETTER_OUTBOX_DIR" in str(caught.value)
    assert caught.value.recipient == "ada@example.org"


# the DATA payload ------------------------------------------------------------------------------
@given(st.lists(st.sampled_from([b"", b".", b"..", b".x", b"a.b", b"\r", b"\n", b"\r\n", b"text", b"\r\r\n", b" ."]), max_size=40))
@hypothesis_settings(max_examples=400, deadline=None)
def test_the_payload_is_what_aiosmtplib_would_write(pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    payload, size = wire_payload(data)
    expected = normalize_message_line_endings(data)
    assert size == len(expected)
    assert payload == PERIOD_REGEX.sub(b"..", expected) + b".\r\n"


def test_lines_that_start_with_a_dot_arrive_unchanged(smtp: SmtpServer) -> None:
    rendered = RenderedDigest(
        subject="dots", preheader="dots",
        html="<p>x</p>\n.\n.hidden\n..two\n",
        text=".\n.leading dot\n..two dots\nend.\n.",
    )
    sent = compose_message(
        digest=rendered, to_address="ada@example.org", to_name=None, from_address=FROM_ADDRESS,
        from_name="Research digest", message_id=digest_message_id("ada@example.org", DAY, DOMAIN),
        sent_at=SENT_AT, unsubscribe_url=UNSUBSCRIBE_URL,
    )
    assert b"\r\n." in sent.data  # the case under test: the composed bytes have dot lines

    deliver(smtp_settings(smtp), sent)

    [received] = smtp.handler.received
    assert received.raw == sent.data
    text = received.message.get_body(("plain",))
    assert text is not None and text.get_content().replace("\r\n", "\n").startswith(".\n.leading dot\n..two dots\n")
