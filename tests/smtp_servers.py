"""Real SMTP servers for the tests: aiosmtpd on loopback with a recording handler.

The handler keeps every accepted message (envelope and raw bytes) and can inject the faults
a real relay produces: `451` for the first N RCPT or DATA attempts (greylisting, a full
queue), `550` for chosen recipients (no such mailbox), or a connection dropped after the
DATA payload arrived but before the reply. Nothing here mocks aiosmtplib: the client under
test speaks SMTP over a socket to a server in another thread.

TLS material is a throwaway CA made by `trustme` at test time; the client trusts it only
through NEWSLETTER_SMTP_CA_FILE, never by turning verification off.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from newsletter.settings import Settings, load_settings

LOOPBACK = "127.0.0.1"
USERNAME = "digest-bot"
PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class Received:
    """One message the server accepted (answered 250 to its DATA)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    authenticated: bool
    tls: bool
    arrived_at: float = 0.0  # time.monotonic() when the server accepted it

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.raw, policy=email.policy.default)  # type: ignore[return-value]


@dataclass
class RecordingHandler:
    """An aiosmtpd handler that records what arrives and fails on request.

    Knobs (change them between sends; the server thread reads them per command):
    - `transient_rcpt`: answer 451 to this many RCPT commands, then accept.
    - `transient_data`: answer 451 to this many DATA payloads, then accept.
    - `drop_data`: close the connection after this many DATA payloads arrive, unanswered.
    - `refuse`: addresses answered 550 at RCPT, every time.
    - `throttle_data`: answer this many DATA payloads with `throttle_reply` (a provider's
      "slow down": 421 or 454 with a rate message), then accept.
    - `delay`: seconds to wait before answering each DATA (a slow relay).
    """

    transient_rcpt: int = 0
    transient_data: int = 0
    drop_data: int = 0
    refuse: set[str] = field(default_factory=set)
    throttle_data: int = 0
    throttle_reply: str = "421 4.7.0 rate limit exceeded, slow down"
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    rcpt_attempts: int = 0
    data_attempts: int = 0
    connections: int = 0  # counted by the controller, one per accepted TCP connection
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        with self._lock:
            self.rcpt_attempts += 1
            if address.casefold() in {a.casefold() for a in self.refuse}:
                return f"550 5.1.1 <{address}>: mailbox unavailable"
            if self.transient_rcpt > 0:
                self.transient_rcpt -= 1
                return "451 4.7.1 greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        with self._lock:
            self.data_attempts += 1
            if self.drop_data > 0:
                self.drop_data -= 1
                # The payload arrived but no reply ever will: the client sees a dropped line.
                server.transport.abort()
                return "421 4.4.2 connection dropped (not delivered)"
            if self.transient_data > 0:
                self.transient_data -= 1
                return "451 4.3.0 queue full, try again later"
            if self.throttle_data > 0:
                self.throttle_data -= 1
                return self.throttle_reply
            self.received.append(
                Received(
                    mail_from=envelope.mail_from,
                    rcpt_tos=tuple(envelope.rcpt_tos),
                    raw=bytes(envelope.original_content or envelope.content),
                    authenticated=bool(session.authenticated),
                    # session.ssl is set by STARTTLS only; implicit TLS shows on the transport
                    tls=session.ssl is not None
                    or server.transport.get_extra_info("ssl_object") is not None,
                    arrived_at=time.monotonic(),
                )
            )
        return "250 2.0.0 OK: queued"

    def messages(self) -> list[EmailMessage]:
        return [item.message for item in self.received]

    def to(self, address: str) -> list[Received]:
        wanted = address.casefold()
        return [r for r in self.received if wanted in (a.casefold() for a in r.rcpt_tos)]


class Authenticator:
    """Accepts exactly one username/password. A refusal must be `handled=False` (else hangs)."""

    def __init__(self, username: str = USERNAME, password: str = PASSWORD) -> None:
        self.username = username.encode()
        self.password = password.encode()

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == self.username
            and auth_data.password == self.password
        )
        return AuthResult(success=ok, handled=False)


def free_port() -> int:
    """A loopback port nobody listens on right now (port=0 breaks the readiness probe)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    handler: RecordingHandler


class _CountingController(Controller):
    """A Controller that tells the handler about every connection it accepts."""

    def factory(self) -> Any:
        self.handler.connections += 1
        return super().factory()


@contextmanager
def smtp_server(handler: RecordingHandler | None = None, **smtp_options: Any) -> Iterator[SmtpServer]:
    """Run an aiosmtpd server on a free loopback port for the duration of the block.

    `smtp_options` go to the Controller: `ssl_context=` (implicit TLS), `tls_context=`,
    `require_starttls=`, `authenticator=`, `auth_require_tls=`, `auth_required=` ...
    """
    handler = handler or RecordingHandler()
    controller = _CountingController(handler, hostname=LOOPBACK, port=free_port(), **smtp_options)
    controller.start()
    handler.connections = 0  # forget the controller's own readiness probe
    try:
        yield SmtpServer(LOOPBACK, controller.port, handler)
    finally:
        controller.stop()


@dataclass(frozen=True)
class TlsMaterial:
    """A throwaway CA, its PEM on disk for the client, and a server context it signed."""

    ca: trustme.CA
    ca_file: Path
    server_context: ssl.SSLContext


def make_tls_material(directory: Path) -> TlsMaterial:
    ca = trustme.CA()
    server_cert = ca.issue_cert(LOOPBACK, "localhost")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(server_context)
    ca_file = directory / "test-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return TlsMaterial(ca, ca_file, server_context)


# Client side: the settings a test gives the code under test to reach these servers ---------
CLIENT_FROM = "digest@news.example"


def smtp_settings(server: SmtpServer, **overrides: object) -> Settings:
    """Settings that reach `server` in plain SMTP (override `smtp_security` etc. for TLS)."""
    values: dict[str, object] = {
        "smtp_host": server.host,
        "smtp_port": server.port,
        "smtp_security": "none",
        "smtp_timeout": 5.0,
        "from_address": CLIENT_FROM,
    }
    values.update(overrides)
    return load_settings(**values)


def starttls_server(tls: TlsMaterial, **options: Any) -> Any:  # a context manager of SmtpServer
    """A server that requires STARTTLS, then AUTH (LOGIN/PLAIN); `options` go to aiosmtpd."""
    return smtp_server(
        tls_context=tls.server_context, require_starttls=True, authenticator=Authenticator(),
        auth_require_tls=True, auth_required=True, **options,
    )


def starttls_settings(server: SmtpServer, tls: TlsMaterial, **overrides: object) -> Settings:
    """Settings that log in to a `starttls_server`, trusting its CA through the CA file."""
    values: dict[str, object] = {
        "smtp_security": "starttls", "smtp_username": USERNAME, "smtp_password": PASSWORD,
        "smtp_ca_file": tls.ca_file,
    }
    values.update(overrides)
    return smtp_settings(server, **values)

