"""Delivery: how a composed message leaves, under one roof.

    Transport (protocol)   async send(composed) -> attempts; async close()
    ├── OutboxTransport    the embedded default: one .eml file per message in a folder
    └── SmtpTransport      (smtp.py) aiosmtplib over a pool of reused connections, paced by
                           a shared rate limit (pacing.py)
    check.py               `newsletter check --smtp`: a session step by step, sending nothing

Every aiosmtplib error is translated in `smtp.py` into `DeliveryError` with the recipient, the
SMTP code and whether it is permanent (5xx) or worth retrying (4xx, timeouts, dropped or
refused connections).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

from newsletter.delivery import smtp
from newsletter.delivery.smtp import (
    BACKOFF_BASE_SECONDS,
    BACKOFF_MAX_SECONDS,
    MAX_ATTEMPTS,
    SmtpTransport,
    certificate_failure,
    smtp_client,
    tls_context,
    translate_smtp_error,
)
from newsletter.errors import DeliveryError
from newsletter.message import Composed
from newsletter.settings import Settings

__all__ = [
    "BACKOFF_BASE_SECONDS", "BACKOFF_MAX_SECONDS", "MAX_ATTEMPTS", "OutboxTransport", "SmtpTransport",
    "Transport", "certificate_failure", "make_transport", "smtp", "smtp_client", "tls_context",
    "translate_smtp_error",
]

_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._@-]+")


class Transport(Protocol):
    name: str
    concurrency: int  # how many `send` calls may usefully run at once

    async def send(self, message: Composed) -> int:
        """Deliver the message; return the number of attempts it took."""
        ...

    async def close(self) -> None: ...


class OutboxTransport:
    """Writes each message to `<outbox>/<message file>.eml`, atomically (temp file + rename)."""

    name = "outbox"
    concurrency = 1

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path_for(self, message: Composed) -> Path:
        message_id = message.message_id.strip("<>").partition("@")[0]
        stem = _UNSAFE_FILENAME.sub("_", f"{message.recipient}_{message_id}")
        return self.directory / f"{stem}.eml"

    async def send(self, message: Composed) -> int:
        target = self.path_for(message)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            handle, temp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
            with os.fdopen(handle, "wb") as stream:
                stream.write(message.data)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temp, target)
            return 1
        except OSError as exc:
            raise DeliveryError(
                f"cannot write {target}: {exc.strerror}; check NEWSLETTER_OUTBOX_DIR",
                recipient=message.recipient,
            ) from exc

    async def close(self) -> None:
        return None


def make_transport(settings: Settings) -> Transport:
    """SMTP when NEWSLETTER_SMTP_HOST is set, otherwise the outbox folder."""
    if settings.uses_smtp:
        return SmtpTransport(settings)
    return OutboxTransport(settings.outbox_dir)
