"""Transports: how a composed message leaves. The only module that imports aiosmtplib.

    Transport (protocol)   async send(message); async close()
    ├── OutboxTransport    the embedded default: one .eml file per message in a folder
    └── SmtpTransport      aiosmtplib over one reused connection (STARTTLS / TLS / none, AUTH)

Every aiosmtplib error is translated here into `DeliveryError` with the recipient, the SMTP
code and whether it is permanent (5xx) or worth retrying (4xx, timeouts, dropped or refused
connections). Transient failures are retried with exponential backoff and jitter.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import ssl
import tempfile
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

import aiosmtplib

from newsletter.errors import DeliveryError
from newsletter.settings import Settings

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 4
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._@-]+")


class Transport(Protocol):
    name: str

    async def send(self, message: EmailMessage) -> None: ...

    async def close(self) -> None: ...


def _recipient(message: EmailMessage) -> str:
    return str(message["To"].addresses[0].addr_spec) if message["To"] else "?"


class OutboxTransport:
    """Writes each message to `<outbox>/<message file>.eml`, atomically (temp file + rename)."""

    name = "outbox"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path_for(self, message: EmailMessage) -> Path:
        message_id = str(message["Message-ID"]).strip("<>").partition("@")[0]
        stem = _UNSAFE_FILENAME.sub("_", f"{_recipient(message)}_{message_id}")
        return self.directory / f"{stem}.eml"

    async def send(self, message: EmailMessage) -> None:
        target = self.path_for(message)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            handle, temp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
            with os.fdopen(handle, "wb") as stream:
                stream.write(message.as_bytes())
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temp, target)
        except OSError as exc:
            raise DeliveryError(
                f"cannot write {target}: {exc.strerror}; check NEWSLETTER_OUTBOX_DIR",
                recipient=_recipient(message),
            ) from exc

    async def close(self) -> None:
        return None


def _tls_context(settings: Settings) -> ssl.SSLContext:
    """Verification on by default; a private CA is trusted only when named explicitly."""
    context = ssl.create_default_context(
        cafile=str(settings.smtp_ca_file) if settings.smtp_ca_file else None
    )
    if not settings.smtp_validate_certs:
        log.warning("TLS certificate verification is OFF (NEWSLETTER_SMTP_VALIDATE_CERTS=false)")
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class SmtpTransport:
    """One SMTP connection, opened on first use, reused, reopened after a drop."""

    name = "smtp"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: aiosmtplib.SMTP | None = None

    def _new_client(self) -> aiosmtplib.SMTP:
        s = self.settings
        password = s.smtp_password.get_secret_value() if s.smtp_password else None
        return aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=password,
            use_tls=s.smtp_security == "tls",
            start_tls=True if s.smtp_security == "starttls" else False,
            tls_context=_tls_context(s) if s.smtp_security != "none" else None,
            timeout=s.smtp_timeout,
        )

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._client is None or not self._client.is_connected:
            self._client = self._new_client()
            await self._client.connect()
        return self._client

    async def send(self, message: EmailMessage) -> None:
        recipient = _recipient(message)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                client = await self._connected()
                await client.sendmail(message["From"].addresses[0].addr_spec, [recipient], message.as_bytes())
                return
            except (aiosmtplib.SMTPException, OSError) as exc:
                cause = exc
                error = self._translate(exc, recipient)
            if error.permanent or attempt == MAX_ATTEMPTS:
                raise error from cause
            await self._drop()
            delay = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
            delay *= random.uniform(0.5, 1.0)  # jitter: do not retry in lockstep
            log.warning("%s; retry %d/%d in %.1fs", error, attempt, MAX_ATTEMPTS - 1, delay)
            await asyncio.sleep(delay)

    def _translate(self, exc: aiosmtplib.SMTPException | OSError, recipient: str) -> DeliveryError:
        where = f"{self.settings.smtp_host}:{self.settings.smtp_port}"
        unverified = _certificate_failure(exc)
        if unverified is not None:
            # A configuration problem, not a network hiccup: retrying cannot fix it.
            return DeliveryError(
                f"the TLS certificate of {where} could not be verified "
                f"({unverified.verify_message}); if the server uses a private CA, set "
                "NEWSLETTER_SMTP_CA_FILE to that CA's certificate",
                recipient=recipient,
                permanent=True,
            )
        if isinstance(exc, aiosmtplib.SMTPException):
            return translate_smtp_error(exc, recipient)
        # refused or unreachable before SMTP even started
        return DeliveryError(f"cannot connect to {where}: {exc}", recipient=recipient)

    async def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None and client.is_connected:
            client.close()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and client.is_connected:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()


def _certificate_failure(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate error behind `exc`: raw after STARTTLS, wrapped by aiosmtplib for TLS."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__
    return None


def translate_smtp_error(exc: aiosmtplib.SMTPException, recipient: str) -> DeliveryError:
    """Map an aiosmtplib error to a DeliveryError; 5xx replies are permanent."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        refused = exc.recipients[0]
        return DeliveryError(
            f"{recipient}: server refused the recipient: {refused.code} {refused.message}",
            recipient=recipient,
            code=refused.code,
            permanent=refused.code // 100 == 5,
        )
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return DeliveryError(
            f"SMTP login failed ({exc.code} {exc.message}); check NEWSLETTER_SMTP_USERNAME "
            "and NEWSLETTER_SMTP_PASSWORD",
            recipient=recipient,
            code=exc.code,
            permanent=True,
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return DeliveryError(
            f"{recipient}: server answered {exc.code} {exc.message}",
            recipient=recipient,
            code=exc.code,
            permanent=exc.code // 100 == 5,
        )
    if isinstance(exc, aiosmtplib.SMTPTimeoutError):
        return DeliveryError(f"{recipient}: SMTP timed out ({exc})", recipient=recipient)
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPConnectError):
        return DeliveryError(f"{recipient}: connection lost or refused ({exc})", recipient=recipient)
    if isinstance(exc, aiosmtplib.SMTPNotSupported):  # e.g. SMTPUTF8 for a non-ASCII address
        return DeliveryError(f"{recipient}: {exc}", recipient=recipient, permanent=True)
    # What is left is the client refusing to go on (e.g. STARTTLS or AUTH not offered): the
    # same settings meet the same refusal on every retry.
    return DeliveryError(
        f"{recipient}: SMTP error: {exc}; check NEWSLETTER_SMTP_SECURITY and NEWSLETTER_SMTP_PORT",
        recipient=recipient,
        permanent=True,
    )


def make_transport(settings: Settings) -> Transport:
    """SMTP when NEWSLETTER_SMTP_HOST is set, otherwise the outbox folder."""
    if settings.uses_smtp:
        return SmtpTransport(settings)
    return OutboxTransport(settings.outbox_dir)
