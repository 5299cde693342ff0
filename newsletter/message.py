"""Composing the MIME message for one digest. Pure: values in, an EmailMessage out.

Headers are built with the `email` package's modern policy, which folds and RFC 2047-encodes
any Unicode and refuses a header value containing a line break, so no dump title or YAML value
can inject a header. Values are flattened to one line before they get there anyway.

List-Unsubscribe is the exception: it holds URLs, which must reach the receiver as written,
never as RFC 2047 encoded words (which the policy makes of a long one). It is stored as a raw
value folded only between its URIs, and the policy is told to leave raw values alone.
Signing (DKIM, when a key is configured) is the last step, over the final bytes.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date, datetime
from email.header import Header
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from urllib.parse import quote

from newsletter.render import RenderedDigest, one_line
from newsletter.signing import DkimKey, sign_message

LIST_ID_LABEL = "Research digest"
KEYWORDS_SUBJECT = "Change my keywords"
SAFE_NAME_LENGTH = 40  # a display name this short is never folded
MAX_LINE = 78  # RFC 5322 2.1.1: header lines SHOULD be no longer
LONGEST_WORD = 900  # a plain subject with a longer word is encoded (lines MUST stay under 998)
_ADDRESS_SPECIALS = re.compile(r'[()<>\[\]:;@\\,."]')


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


# Raw (source) values are written as given; header objects are still folded at 78 columns.
MESSAGE_POLICY = SMTP.clone(refold_source="none", header_factory=_MemoHeaderRegistry())


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


def keywords_mailto(from_address: str) -> str:
    """Where a subscriber asks for other keywords: a reply to the sender, subject filled in."""
    return f"mailto:{from_address}?subject={quote(KEYWORDS_SUBJECT)}"


def _fold_at_spaces(name: str, text: str) -> str:
    """Plain ASCII `text` (one line) folded at its spaces into lines of at most MAX_LINE
    characters where its words allow. The email package's folder can instead move the whole
    value to a line of its own, which reads back with a leading space."""
    lines: list[str] = []
    line = ""
    room = MAX_LINE - len(name) - 2  # "Subject: "
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > room:
            lines.append(line)
            line, room = word, MAX_LINE - 1  # a continuation line starts with its space
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return "\n ".join(lines)


def _set_text_header(message: EmailMessage, name: str, text: str, value: Address | str) -> None:
    """Set a header whose `text` (a subject, a display name) is not ours to trust.

    Cases the email package gets wrong are sent as RFC 2047 encoded words made by
    `email.header.Header` instead, so they read back as written: text that merely looks like
    an encoded word ("=?utf-8?q?..?="), which it passes through and every reader decodes
    (RFC 2047 §5); a display name with RFC 5322 specials long enough to be folded, which it
    folds unquoted, so that the To line reads as another address; and a non-ASCII subject,
    where it can put a space between two encoded words, which readers then drop (§6.2). A plain
    subject is folded at its own spaces (`_fold_at_spaces`) unless a word is too long for that.
    """
    risky_name = isinstance(value, Address) and (
        _ADDRESS_SPECIALS.search(text) is not None and len(text) > SAFE_NAME_LENGTH
    )
    risky_subject = not isinstance(value, Address) and (
        not text.isascii() or max(map(len, text.split(" "))) > LONGEST_WORD
    )
    if "=?" not in text and not risky_name and not risky_subject:
        if isinstance(value, Address):
            message[name] = value
        else:
            message.set_raw(name, _fold_at_spaces(name, value))
        return
    encoded = Header(text, "utf-8", header_name=name).encode(linesep="\n")
    if isinstance(value, Address):
        encoded = f"{encoded} <{value.addr_spec}>"
    message.set_raw(name, encoded)


def list_unsubscribe_value(*uris: str) -> str:
    """`<uri>, <uri>` (RFC 2369), folded between URIs only; refuses what would break it."""
    for uri in uris:
        if any(char in uri for char in "<>, \t\r\n\0") or not uri.isascii():
            raise ValueError(f"not usable in List-Unsubscribe: {uri!r}")
    return ",\n ".join(f"<{uri}>" for uri in uris)


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
    dkim: DkimKey | None = None,
) -> EmailMessage:
    """A multipart/alternative message: plain text first, HTML preferred (RFC 2046 §5.1.4).

    `unsubscribe_url` is the subscriber's own https link (RFC 8058 one-click); `dkim` signs.
    """
    message = EmailMessage(policy=MESSAGE_POLICY)
    from_user, _, from_domain = from_address.rpartition("@")
    to_user, _, to_domain = to_address.rpartition("@")
    _set_text_header(message, "From", one_line(from_name), Address(one_line(from_name), from_user, from_domain))
    _set_text_header(message, "To", one_line(to_name or ""), Address(one_line(to_name or ""), to_user, to_domain))
    _set_text_header(message, "Subject", one_line(digest.subject), one_line(digest.subject))
    message["Date"] = format_datetime(sent_at)
    message["Message-ID"] = message_id
    message["List-Id"] = f"{LIST_ID_LABEL} <digest.{from_domain}>"
    mailto = unsubscribe_mailto(from_address, to_address)
    if unsubscribe_url:
        # RFC 8058 one-click: the https URL first, and the POST marker beside it.
        message.set_raw("List-Unsubscribe", list_unsubscribe_value(unsubscribe_url, mailto))
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    else:
        message.set_raw("List-Unsubscribe", list_unsubscribe_value(mailto))
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
    message["Precedence"] = "bulk"
    message.set_content(digest.text, subtype="plain", charset="utf-8")
    message.add_alternative(digest.html, subtype="html", charset="utf-8")
    if dkim is not None:
        sign_message(message, dkim)
    return message
