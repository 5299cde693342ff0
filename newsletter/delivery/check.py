"""`newsletter check --smtp`: walk through an SMTP session step by step, sending nothing.

Connect (and TLS for implicit TLS), EHLO, STARTTLS, EHLO again, AUTH, QUIT: each step is
reported with what the server said, so an operator sees exactly where a setup breaks before
the morning run does. The steps use the same settings and TLS context as delivery.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass

import aiosmtplib

from newsletter.delivery.smtp import certificate_failure, smtp_client, translate_smtp_error
from newsletter.settings import Settings


@dataclass(frozen=True)
class Step:
    name: str
    ok: bool
    detail: str
    seconds: float


def _tls_summary(client: aiosmtplib.SMTP) -> str:
    transport = client.transport
    tls = transport.get_extra_info("ssl_object") if transport is not None else None
    if tls is None:
        return "no TLS"
    cert = tls.getpeercert() or {}
    subject = dict(pair[0] for pair in cert.get("subject", ()) if pair)
    issuer = dict(pair[0] for pair in cert.get("issuer", ()) if pair)
    cipher = tls.cipher()
    return (
        f"{tls.version()} {cipher[0] if cipher else ''}; certificate for "
        f"{subject.get('commonName', '?')} issued by {issuer.get('commonName') or issuer.get('organizationName', '?')}, "
        "verified"
    )


def _explain(exc: BaseException, settings: Settings) -> str:
    unverified = certificate_failure(exc)
    if unverified is not None:
        return (
            f"certificate not verified ({unverified.verify_message}); if the server uses a "
            "private CA, set NEWSLETTER_SMTP_CA_FILE to its certificate"
        )
    if isinstance(exc, aiosmtplib.SMTPException):
        return str(translate_smtp_error(exc, "-")).removeprefix("-: ")
    return f"{type(exc).__name__}: {exc}"


async def check_smtp(settings: Settings) -> list[Step]:
    """Run the steps in order; stop at the first that fails. Never sends a message."""
    steps: list[Step] = []
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    client = smtp_client(settings, stepwise=True)  # STARTTLS and AUTH are steps of their own

    async def step(name: str, action: object) -> bool:
        started = time.perf_counter()
        try:
            detail = await action  # type: ignore[misc]
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError, asyncio.TimeoutError) as exc:
            steps.append(Step(name, False, _explain(exc, settings), time.perf_counter() - started))
            return False
        steps.append(Step(name, True, str(detail), time.perf_counter() - started))
        return True

    async def connect() -> str:
        response = await client.connect()
        where = f"{settings.smtp_host}:{settings.smtp_port}"
        tls = f"; {_tls_summary(client)}" if settings.smtp_security == "tls" else ""
        return f"{where} answered {response.code} {response.message.splitlines()[0]}{tls}"

    async def ehlo() -> str:
        await client.ehlo()
        return "extensions: " + (", ".join(sorted(client.esmtp_extensions)) or "none")

    async def starttls() -> str:
        if not client.supports_extension("starttls"):
            raise aiosmtplib.SMTPException(
                "the server does not offer STARTTLS; set NEWSLETTER_SMTP_SECURITY=tls for "
                "port 465, or =none only for a server on this machine"
            )
        await client.starttls()
        return _tls_summary(client)

    async def login() -> str:
        methods = ", ".join(client.supported_auth_methods) or "none offered"
        await client.login(settings.smtp_username or "", password or "")
        return f"logged in as {settings.smtp_username} (server offers: {methods})"

    try:
        if not await step("connect", connect()):
            return steps
        if not await step("EHLO", ehlo()):
            return steps
        if settings.smtp_security == "starttls":
            if not await step("STARTTLS", starttls()) or not await step("EHLO", ehlo()):
                return steps
        if settings.smtp_username:
            if not await step("AUTH", login()):
                return steps
        else:
            steps.append(Step("AUTH", True, "skipped: no NEWSLETTER_SMTP_USERNAME set", 0.0))
        await step("QUIT", _quit(client))
    finally:
        if client.is_connected:
            client.close()
    return steps


async def _quit(client: aiosmtplib.SMTP) -> str:
    response = await client.quit()
    return f"{response.code} {response.message}; no message was sent"
