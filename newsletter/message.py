"""Composing the MIME message for one digest. Pure: values in, the bytes of a message out.

The bytes are assembled from prebuilt parts instead of building and flattening an
`EmailMessage` per subscriber (which cost more than rendering the digest): the constant
headers are encoded once per sender, each body is encoded by C code (`binascii.b2a_qp`),
and only the headers that hold a subscriber's own values are encoded per message. The
result is an ordinary RFC 5322 / RFC 2045 multipart/alternative message with CRLF line
ends; the tests parse every message back with the `email` package.

Headers that hold text we do not control (a subject made from a title, a display name) go
through the `email` package's header machinery whenever they are not plain short ASCII: it
RFC 2047-encodes any Unicode and refuses a value with a line break, so no dump title or YAML
value can inject a header. Values are flattened to one line before they get there anyway.

List-Unsubscribe holds URLs, which must reach the receiver as written, never as RFC 2047
encoded words: it is written raw, folded only between its URIs.

Signing (DKIM, when a key is configured) is the last step, over the final bytes.
"""

from __future__ import annotations

import binascii
import email
import email.policy
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime
from email.header import Header
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from functools import lru_cache
from urllib.parse import quote

from newsletter.render import RenderedDigest, one_line
from newsletter.signing import DkimKey, sign_bytes

LIST_ID_LABEL = "Research digest"
KEYWORDS_SUBJECT = "Change my keywords"
SAFE_NAME_LENGTH = 40  # a display name this short is never folded
MAX_LINE = 78  # RFC 5322 2.1.1: header lines SHOULD be no longer
LONGEST_WORD = 900  # a plain subject with a longer word is encoded (lines MUST stay under 998)
SHORT_PIECE = 70  # fits in one encoded line with room for the soft break after it
SHARED_PIECE = 512  # shorter pieces (a position, a link) are encoded each time, not cached
QP_LINE = 76  # RFC 2045 §6.7: encoded lines are at most 76 characters
ENCODED_WORD_BYTES = 45  # 60 base64 characters: "=?utf-8?b?" + 60 + "?=" is 72, under 75
CRLF = b"\r\n"
_ADDRESS_SPECIALS = re.compile(r'[()<>\[\]:;@\\,."]')
# A display name that can be written as is: printable ASCII without RFC 5322 specials.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*")


class _MemoHeaderRegistry(HeaderRegistry):
    """The stdlib registry builds a new class for every header it parses; the classes depend
    only on the header name, so keep them."""

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


@dataclass(frozen=True, slots=True)
class Composed:
    """A message ready for a transport: its envelope and its exact bytes (CRLF line ends)."""

    sender: str
    recipient: str
    message_id: str
    data: bytes

    def parse(self) -> EmailMessage:
        """The message read back by the `email` package (for checks and tests)."""
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]


def digest_message_id(subscriber: str, day: date, domain: str) -> str:
    """Stable per (subscriber, day): a resend of the same digest carries the same id."""
    token = hashlib.sha256(f"{subscriber.casefold()}|{day.isoformat()}".encode()).hexdigest()[:24]
    return f"<digest.{day:%Y%m%d}.{token}@{domain}>"


def test_message_id(domain: str) -> str:
    """A fresh Message-ID for a copy that is not the digest itself (a test or a resend)."""
    return f"<copy.{secrets.token_hex(12)}@{domain}>"


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


def _header_bytes(name: str, text: str, value: Address | str) -> bytes:
    """One header field as the `email` package writes it (the slow, general path)."""
    holder = EmailMessage(policy=MESSAGE_POLICY)
    _set_text_header(holder, name, text, value)
    return holder.as_bytes().split(CRLF + CRLF, 1)[0] + CRLF


def _address_header(name: str, display: str, address: str) -> bytes:
    """`From:` / `To:` with an optional display name. Plain short names are written directly;
    anything else takes the general path."""
    display = one_line(display)
    if not display and address.isascii():
        return f"{name}: {address}".encode("ascii") + CRLF
    if len(display) <= SAFE_NAME_LENGTH and _PLAIN_NAME.fullmatch(display) and address.isascii() and "=?" not in display:
        return f"{name}: {display} <{address}>".encode("ascii") + CRLF
    user, _, domain = address.rpartition("@")
    return _header_bytes(name, display, Address(display, user, domain))


def _encoded_words(text: str) -> str:
    """`text` as RFC 2047 "B" encoded words of UTF-8, each at most 75 characters and holding
    whole characters, one per line: readers drop the folding between encoded words (§6.2) and
    decode each in full, so the text reads back exactly, spaces included."""
    raw = text.encode("utf-8")
    words: list[bytes] = []
    start = 0
    while start < len(raw):
        end = min(start + ENCODED_WORD_BYTES, len(raw))
        while end < len(raw) and raw[end] & 0xC0 == 0x80:  # never cut inside a character
            end -= 1
        words.append(raw[start:end])
        start = end
    return "\r\n ".join(f"=?utf-8?b?{binascii.b2a_base64(word, newline=False).decode('ascii')}?=" for word in words)


def _subject_header(subject: str) -> bytes:
    subject = one_line(subject)
    if subject.isascii() and "=?" not in subject and max(map(len, subject.split(" ")), default=0) <= LONGEST_WORD:
        return ("Subject: " + _fold_at_spaces("Subject", subject).replace("\n", "\r\n")).encode("ascii") + CRLF
    return f"Subject: {_encoded_words(subject)}\r\n".encode("ascii")


def list_unsubscribe_value(*uris: str) -> str:
    """`<uri>, <uri>` (RFC 2369), folded between URIs only; refuses what would break it."""
    for uri in uris:
        if any(char in uri for char in "<>, \t\r\n\0") or not uri.isascii():
            raise ValueError(f"not usable in List-Unsubscribe: {uri!r}")
    return ",\n ".join(f"<{uri}>" for uri in uris)


@lru_cache(maxsize=16)
def _sender_headers(from_address: str, from_name: str) -> bytes:
    """The headers that are the same in every message from one sender, encoded once."""
    from_domain = from_address.rpartition("@")[2]
    return _address_header("From", from_name, from_address) + (
        f"List-Id: {LIST_ID_LABEL} <digest.{from_domain}>\r\n"
    ).encode("ascii")


_TRAILER = b"Auto-Submitted: auto-generated\r\nPrecedence: bulk\r\nMIME-Version: 1.0\r\n"


def _qp(piece: str) -> bytes:
    """Quoted-printable of one piece of a body (C code), with "\n" line ends. A short piece of
    plain printable ASCII (a card's position, a link) is its own encoding."""
    if len(piece) < SHORT_PIECE and piece.isascii() and piece.isprintable() and "=" not in piece and not piece.endswith(" "):
        return piece.encode("ascii")
    return binascii.b2a_qp(piece.encode("utf-8"), quotetabs=False, istext=True, header=False)


_qp_shared = lru_cache(maxsize=8192)(_qp)  # for pieces many digests share (cards)


def _qp_join(encoded: list[bytes]) -> bytes:
    """Separately encoded pieces joined by soft line breaks, so they decode to the pieces
    joined; a line that the "=" would push past 76 characters is broken once more first."""
    out: list[bytes] = []
    for number, piece in enumerate(encoded):
        if number < len(encoded) - 1 and piece:
            last_line = piece[piece.rfind(b"\n") + 1 :]
            if len(last_line) >= QP_LINE:
                # Cut before the last token (a character, or an =XX escape) of that line.
                cut = len(piece) - (3 if last_line[-3:-2] == b"=" else 1)
                piece = piece[:cut] + b"=\n" + piece[cut:]
            piece += b"=\n"
        out.append(piece)
    return b"".join(out)


def _body_part(text: str, subtype: str, parts: tuple[str, ...] = ()) -> bytes:
    """One text part: 7bit when it is short-lined ASCII, else quoted-printable (C code, the
    pieces of `parts` encoded once each and reused)."""
    raw = text.encode("utf-8")
    if not raw.endswith(b"\n"):
        raw += b"\n"
        parts = (*parts[:-1], parts[-1] + "\n") if parts else ()
    if raw.isascii() and max(map(len, raw.split(b"\n"))) <= MAX_LINE and b"\r" not in raw:
        encoding, body = "7bit", raw.replace(b"\n", CRLF)
    else:
        encoding = "quoted-printable"
        if parts:  # long pieces are the template's static text and shared cards: encoded once
            encoded = _qp_join([
                (_qp_shared(piece) if len(piece) >= SHARED_PIECE else _qp(piece)) for piece in parts if piece
            ])
        else:
            encoded = _qp(text if text.endswith("\n") else text + "\n")
        body = encoded.replace(b"\n", CRLF)
    head = f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n'
    return head.encode("ascii") + body


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
) -> Composed:
    """A multipart/alternative message: plain text first, HTML preferred (RFC 2046 §5.1.4).

    `unsubscribe_url` is the subscriber's own https link (RFC 8058 one-click); `dkim` signs.
    """
    mailto = unsubscribe_mailto(from_address, to_address)
    if unsubscribe_url:
        # RFC 8058 one-click: the https URL first, and the POST marker beside it.
        unsubscribe = list_unsubscribe_value(unsubscribe_url, mailto).replace("\n", "\r\n")
        unsubscribe_lines = f"List-Unsubscribe: {unsubscribe}\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    else:
        unsubscribe_lines = f"List-Unsubscribe: {list_unsubscribe_value(mailto)}\r\n"
    if any(char in message_id for char in "\r\n\0"):
        raise ValueError(f"not usable as a Message-ID: {message_id!r}")
    # Neither "=_" (never in quoted-printable output) nor the random part can occur in a body.
    boundary = f"=_digest_{secrets.token_hex(12)}"
    head = b"".join(
        (
            _sender_headers(from_address, from_name),
            _address_header("To", to_name or "", to_address),
            _subject_header(digest.subject),
            f"Date: {format_datetime(sent_at)}\r\nMessage-ID: {message_id}\r\n{unsubscribe_lines}".encode("ascii"),
            _TRAILER,
            f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'.encode("ascii"),
        )
    )
    # The line break before a delimiter belongs to the delimiter (RFC 2046 §5.1.1), so each
    # part, which ends with its own line break, is followed by one more.
    delimiter = f"--{boundary}\r\n".encode("ascii")
    data = b"".join(
        (
            head,
            delimiter,
            _body_part(digest.text, "plain"),
            CRLF,
            delimiter,
            _body_part(digest.html, "html", digest.html_parts),
            CRLF,
            f"--{boundary}--\r\n".encode("ascii"),
        )
    )
    if dkim is not None:
        data = sign_bytes(data, dkim)
    return Composed(sender=from_address, recipient=to_address, message_id=message_id, data=data)
