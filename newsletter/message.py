"""Composing the MIME message for one digest. Pure: values in, an EmailMessage out.

Headers are built with the `email` package's modern policy, which folds and RFC 2047-encodes
any Unicode and refuses a header value containing a line break, so no dump title or YAML value
can inject a header. Values are flattened to one line before they get there anyway.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.headerregistry import BaseHeader, HeaderRegistry
from email.policy import SMTP
from email.utils import format_datetime

from newsletter.render import RenderedDigest, one_line

LIST_ID_LABEL = "Research digest"


class _MemoHeaderRegistry(HeaderRegistry):
    """The stdlib registry builds a new class for every header it parses (about 80 µs each,
    dozens per message); the classes depend only on the header name, so keep them."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls


POLICY = SMTP.clone(header_factory=_MemoHeaderRegistry())


def digest_message_id(subscriber: str, day: date, domain: str) -> str:
    """Stable per (subscriber, day): a resend of the same digest carries the same id."""
    token = hashlib.sha256(f"{subscriber.casefold()}|{day.isoformat()}".encode()).hexdigest()[:24]
    return f"<digest.{day:%Y%m%d}.{token}@{domain}>"


def unsubscribe_mailto(from_address: str, subscriber: str) -> str:
    """A mailto unsubscribe link; the request's own From names the subscriber.

    Kept short on purpose: a long value gets folded onto a continuation line, which some
    receivers handle badly in List-Unsubscribe.
    """
    del subscriber  # identified by the sender of the unsubscribe mail, not by the link
    return f"mailto:{from_address}?subject=unsubscribe"


def compose_message(
    *,
    digest: RenderedDigest,
    to_address: str,
    to_name: str | None,
    from_address: str,
    from_name: str,
    message_id: str,
    sent_at: datetime,
    unsubscribe_url: str | None = None,
) -> EmailMessage:
    """A multipart/alternative message: plain text first, HTML preferred (RFC 2046 §5.1.4)."""
    message = EmailMessage(policy=POLICY)
    from_user, _, from_domain = from_address.rpartition("@")
    to_user, _, to_domain = to_address.rpartition("@")
    message["From"] = Address(one_line(from_name), from_user, from_domain)
    message["To"] = Address(one_line(to_name or ""), to_user, to_domain)
    message["Subject"] = one_line(digest.subject)
    message["Date"] = format_datetime(sent_at)
    message["Message-ID"] = message_id
    message["List-Id"] = f"{LIST_ID_LABEL} <digest.{from_domain}>"
    mailto = unsubscribe_mailto(from_address, to_address)
    if unsubscribe_url:
        # RFC 8058 one-click: the https URL first, and the POST marker beside it.
        message["List-Unsubscribe"] = f"<{unsubscribe_url}>, <{mailto}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    else:
        message["List-Unsubscribe"] = f"<{mailto}>"
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
    message["Precedence"] = "bulk"
    message.set_content(digest.text, subtype="plain", charset="utf-8")
    message.add_alternative(digest.html, subtype="html", charset="utf-8")
    return message
