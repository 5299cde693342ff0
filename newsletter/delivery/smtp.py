"""The SMTP transport: aiosmtplib over a pool of reused connections (STARTTLS / TLS / none,
AUTH), paced by a shared rate limit. With `check.py`, the only module that imports aiosmtplib.

Every aiosmtplib error is translated here into `DeliveryError` with the recipient, the SMTP
code and whether it is permanent (5xx) or worth retrying (4xx, timeouts, dropped or refused
connections). Transient failures are retried with exponential backoff and jitter.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import ssl
from dataclasses import dataclass

import aiosmtplib

from newsletter.errors import DeliveryError
from newsletter.message import Composed
from newsletter.delivery.pacing import Pacer
from newsletter.settings import Settings

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 4
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
_THROTTLE_WORDS = re.compile(r"rate|too many|throttl|slow down", re.IGNORECASE)
_LINE_ENDS = re.compile(rb"\r\n|\n|\r")


def wire_payload(data: bytes) -> tuple[bytes, int]:
    """What DATA carries for `data`, and its size for the SIZE extension (RFC 1870, before
    dot-stuffing): CRLF line ends, lines starting with a dot doubled (RFC 5321 §4.5.2), the
    closing CRLF.CRLF. aiosmtplib's `data()` does the same with three regular expression passes
    over the message (0.7 ms for a 45 KB digest, most of the sending process's time); a
    composed message already has CRLF line ends and rarely a line that starts with a dot, so
    here it is a few C-speed scans and one copy."""
    lines = data.count(b"\n")
    if lines != data.count(b"\r") or lines != data.count(b"\r\n"):
        data = _LINE_ENDS.sub(b"\r\n", data)  # not from our composer: bare CR or LF
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    size = len(data)
    stuffed = data.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed + b".\r\n", size


def tls_context(settings: Settings) -> ssl.SSLContext:
    """Verification on by default; a private CA is trusted only when named explicitly."""
    context = ssl.create_default_context(
        cafile=str(settings.smtp_ca_file) if settings.smtp_ca_file else None
    )
    if not settings.smtp_validate_certs:
        log.warning("TLS certificate verification is OFF (NEWSLETTER_SMTP_VALIDATE_CERTS=false)")
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def smtp_client(settings: Settings, *, stepwise: bool = False) -> aiosmtplib.SMTP:
    """An unconnected client for the configured server.

    By default `connect()` does everything: TLS (implicit or STARTTLS) and AUTH. `stepwise`
    leaves STARTTLS and AUTH to the caller, for `check --smtp` to report them one by one.
    """
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    return aiosmtplib.SMTP(
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        username=None if stepwise else settings.smtp_username,
        password=None if stepwise else password,
        use_tls=settings.smtp_security == "tls",
        start_tls=settings.smtp_security == "starttls" and not stepwise,
        tls_context=tls_context(settings) if settings.smtp_security != "none" else None,
        timeout=settings.smtp_timeout,
    )


@dataclass
class _Connection:
    client: aiosmtplib.SMTP
    sent: int = 0


def _envelope_options(client: aiosmtplib.SMTP, sender: str, recipient: str, size: int) -> list[str]:
    """MAIL FROM options, as aiosmtplib's sendmail would choose them."""
    options = [f"SIZE={size}"] if client.supports_extension("size") else []
    if not (sender + recipient).isascii():
        if not client.supports_extension("smtputf8"):
            raise aiosmtplib.SMTPNotSupported(
                "the address is not ASCII and this server does not support SMTPUTF8"
            )
        options.append("SMTPUTF8")
    if client.supports_extension("8bitmime"):
        options.append("BODY=8BITMIME")
    return options


class SmtpTransport:
    """A pool of up to NEWSLETTER_SMTP_CONNECTIONS connections, each reused for many messages.

    `send` may be awaited by several tasks at once: each takes an idle connection (or opens
    one, up to the pool size), sends, and hands it back. A connection that errs at the socket
    level is dropped and replaced by a fresh one on the next send; one that has carried
    NEWSLETTER_SMTP_MESSAGES_PER_CONNECTION messages is closed with QUIT and replaced, since
    some providers silently drop connections past a cap. Every attempt first waits for the
    shared `Pacer`, which enforces NEWSLETTER_RATE_LIMIT and slows down on throttling replies.

    The message goes out as `message.data`, exactly the bytes a DKIM signature covers.
    """

    name = "smtp"

    def __init__(self, settings: Settings, pacer: Pacer | None = None) -> None:
        self.settings = settings
        self.concurrency = settings.smtp_connections
        self.pacer = pacer or Pacer(settings.rate_limit)
        self.opened = 0  # connections opened over the transport's life (for tests and stats)
        self.delivered = 0  # messages the server accepted
        self.recycled = 0
        self._idle: list[_Connection] = []
        self._slots: asyncio.Semaphore | None = None

    async def _acquire(self) -> _Connection:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        await self._slots.acquire()
        try:
            while self._idle:
                connection = self._idle.pop()
                if connection.client.is_connected:
                    return connection
            client = smtp_client(self.settings)
            await client.connect()
            self.opened += 1
            return _Connection(client)
        except BaseException:
            self._slots.release()
            raise

    async def _release(self, connection: _Connection, *, healthy: bool) -> None:
        assert self._slots is not None
        try:
            if not healthy or not connection.client.is_connected:
                connection.client.close()
            elif connection.sent >= self.settings.smtp_messages_per_connection:
                self.recycled += 1
                await _quit(connection.client)
            else:
                self._idle.append(connection)
        finally:
            self._slots.release()

    async def _attempt(self, sender: str, recipient: str, payload: bytes, size: int) -> None:
        connection = await self._acquire()
        healthy = False
        try:
            options = _envelope_options(connection.client, sender, recipient, size)
            await _transaction(connection.client, sender, recipient, payload, options)
            connection.sent += 1
            healthy = True
        except aiosmtplib.SMTPRecipientsRefused:
            healthy = True  # a reply about this recipient; aiosmtplib has reset the session
            raise
        except aiosmtplib.SMTPResponseException as exc:
            # A reply, so the line still works, unless the server said it is closing (421).
            healthy = exc.code != 421
            raise
        finally:
            await self._release(connection, healthy=healthy)

    async def send(self, message: Composed) -> int:
        """Deliver `message` to its one recipient; returns the attempts it took.

        Raises DeliveryError once the failure is permanent or MAX_ATTEMPTS are spent. When the
        server cannot be reached at all before anything went through on this transport (down,
        a wrong host or port, a listener that does not speak SMTP), the first failure is
        final: every other message would meet it, and each retry would cost a timeout.
        """
        recipient = message.recipient
        sender = message.sender
        payload, size = wire_payload(message.data)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            await self.pacer.wait()
            try:
                await self._attempt(sender, recipient, payload, size)
                self.pacer.succeeded()
                self.delivered += 1
                return attempt
            except (aiosmtplib.SMTPException, OSError) as exc:
                cause = exc
                error = self._translate(exc, recipient)
            error.attempts = attempt
            if _unreachable(cause) and (attempt == MAX_ATTEMPTS or self.delivered == 0):
                # Nobody answers: every other message would meet the same silence.
                error = self._server_down(cause, recipient, attempt)
                raise error from cause
            if error.permanent or attempt == MAX_ATTEMPTS:
                raise error from cause
            if error.throttled:
                self.pacer.slow_down()
            delay = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
            delay *= random.uniform(0.5, 1.0)  # jitter: do not retry in lockstep
            log.warning("%s; retry %d/%d in %.1fs", error, attempt, MAX_ATTEMPTS - 1, delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _server_down(self, cause: BaseException, recipient: str, attempts: int) -> DeliveryError:
        where = f"{self.settings.smtp_host}:{self.settings.smtp_port}"
        what = "refused the connection" if _refused(cause) else "cannot be reached"
        error = DeliveryError(
            f"the SMTP server {where} {what} ({cause or type(cause).__name__}); check "
            "NEWSLETTER_SMTP_HOST and NEWSLETTER_SMTP_PORT, and that the server is up",
            recipient=recipient,
            setup=True,
        )
        error.server_level = True
        error.attempts = attempts
        return error

    def _translate(self, exc: aiosmtplib.SMTPException | OSError, recipient: str) -> DeliveryError:
        where = f"{self.settings.smtp_host}:{self.settings.smtp_port}"
        unverified = certificate_failure(exc)
        if unverified is not None:
            # A configuration problem, not a network hiccup: retrying cannot fix it.
            return DeliveryError(
                f"the TLS certificate of {where} could not be verified "
                f"({unverified.verify_message}); if the server uses a private CA, set "
                "NEWSLETTER_SMTP_CA_FILE to that CA's certificate",
                recipient=recipient,
                permanent=True,
                setup=True,
            )
        if isinstance(exc, aiosmtplib.SMTPException):
            return translate_smtp_error(exc, recipient)
        # refused or unreachable before SMTP even started
        return DeliveryError(
            f"cannot connect to the SMTP server {where} ({exc}); check NEWSLETTER_SMTP_HOST and "
            "NEWSLETTER_SMTP_PORT, and that the server is up",
            recipient=recipient,
        )

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await _quit(connection.client)


async def _transaction(
    client: aiosmtplib.SMTP, sender: str, recipient: str, payload: bytes, options: list[str]
) -> None:
    """One mail transaction, as aiosmtplib's `sendmail` runs it (MAIL, RCPT, DATA; RSET after a
    refusal so the connection can carry the next message), with the DATA payload prepared by
    `wire_payload` and written as it is. aiosmtplib still checks every command argument for
    control characters, so no address can inject a command."""
    encoding = "utf-8" if "SMTPUTF8" in options else "ascii"
    try:
        await client.mail(sender, options=options, encoding=encoding)
        try:
            await client.rcpt(recipient, encoding=encoding)
        except aiosmtplib.SMTPRecipientRefused as refused:
            raise aiosmtplib.SMTPRecipientsRefused([refused]) from None
        reply = await client.execute_command(b"DATA")
        if reply.code != 354:
            raise aiosmtplib.SMTPDataError(reply.code, reply.message)
        protocol = client.protocol
        if protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        protocol.write(payload)
        reply = await protocol.read_response(timeout=client.timeout)
        if reply.code != 250:
            raise aiosmtplib.SMTPDataError(reply.code, reply.message)
    except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
        try:
            await client.rset()
        except (ConnectionError, aiosmtplib.SMTPResponseException):
            pass  # disconnected or refused on the reset: the original error is what matters
        raise


async def _quit(client: aiosmtplib.SMTP) -> None:
    if not client.is_connected:
        return
    try:
        await client.quit()
    except (aiosmtplib.SMTPException, OSError):
        client.close()


def _unreachable(exc: BaseException) -> bool:
    """No SMTP conversation at all: refused, unreachable, or the connect timed out."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):  # it answered (e.g. 421 busy)
        return False
    if certificate_failure(exc) is not None:  # it answered, with a certificate we refuse
        return False
    if isinstance(exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPConnectTimeoutError):
        return True
    return isinstance(exc, OSError) and not isinstance(exc, aiosmtplib.SMTPException)


def _refused(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError) or "refused" in str(seen).lower() or "Connect call failed" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def certificate_failure(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate error behind `exc`: raw after STARTTLS, wrapped by aiosmtplib for TLS."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__
    return None


def _throttling(code: int | None, text: str) -> bool:
    """A reply asking the sender to slow down: 421/454, or a 4xx that says so."""
    if code is None or code // 100 != 4:
        return False
    return code in (421, 454) or _THROTTLE_WORDS.search(text) is not None


def translate_smtp_error(exc: aiosmtplib.SMTPException, recipient: str) -> DeliveryError:
    """Map an aiosmtplib error to a DeliveryError; 5xx replies are permanent."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        refused = exc.recipients[0]
        return DeliveryError(
            f"{recipient}: server refused the recipient: {refused.code} {refused.message}",
            recipient=recipient,
            code=refused.code,
            permanent=refused.code // 100 == 5,
            throttled=_throttling(refused.code, refused.message),
        )
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return DeliveryError(
            f"SMTP login failed ({exc.code} {exc.message}); check NEWSLETTER_SMTP_USERNAME "
            "and NEWSLETTER_SMTP_PASSWORD",
            recipient=recipient,
            code=exc.code,
            permanent=True,
            setup=True,
        )
    if isinstance(exc, aiosmtplib.SMTPSenderRefused) and exc.code // 100 == 5:
        return DeliveryError(
            f"the server refused the sender {exc.sender}: {exc.code} {exc.message}; check "
            "NEWSLETTER_FROM_ADDRESS and that the SMTP account may send as it",
            recipient=recipient,
            code=exc.code,
            permanent=True,
            setup=True,
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return DeliveryError(
            f"{recipient}: server answered {exc.code} {exc.message}",
            recipient=recipient,
            code=exc.code,
            permanent=exc.code // 100 == 5,
            throttled=_throttling(exc.code, exc.message),
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
        setup=True,
    )
