"""Composing the MIME message for one digest. Pure: values in, the bytes of a message out.

The bytes are assembled from prebuilt parts instead of building and flattening an
`EmailMessage` per subscriber (which cost more than rendering the digest): the constant
headers are encoded once per sender, and only the headers that hold a subscriber's own
values are encoded per message. Each body is quoted-printable, encoded by C code
(`binascii.b2a_qp`) piece by piece as the renderer joined it: a piece that many digests
share (`render.Shared`: the template's static text, a card) is encoded once per process and
the encoding kept on the piece, line ends and all; the subscriber's own values between two
such pieces are encoded together, and soft line breaks join the pieces. The result is an
ordinary RFC 5322 / RFC 2045 multipart/alternative message with CRLF line ends; the tests
parse every message back with the `email` package.

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
from newsletter.templating import Shared

LIST_ID_LABEL = "Research digest"
KEYWORDS_SUBJECT = "Change my keywords"
SAFE_NAME_LENGTH = 40  # a display name this short is never folded
MAX_LINE = 78  # RFC 5322 2.1.1: header lines SHOULD be no longer
LONGEST_WORD = 900  # a plain subject with a longer word is encoded (lines MUST stay under 998)
QP_LINE = 76  # RFC 2045 §6.7: encoded lines are at most 76 characters
SHORT_RUN = 16  # values this short between shared pieces ("\n", ", ") recur: their encodings are kept
ENCODED_WORD_BYTES = 45  # 60 base64 characters: "=?utf-8?b?" + 60 + "?=" is 72, under 75
CRLF = b"\r\n"
_ADDRESS_SPECIALS = re.compile(r'[()<>\[\]:;@\\,."]')
# A display name that can be written as is: printable ASCII without RFC 5322 specials.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*")
_NOT_IN_URI = re.compile("[<>, \t\r\n\0]")  # would break List-Unsubscribe's <uri>, <uri>


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
    iso, compact = _day_texts(day)
    token = hashlib.sha256(f"{subscriber.casefold()}|{iso}".encode()).hexdigest()[:24]
    return f"<digest.{compact}.{token}@{domain}>"


@lru_cache(maxsize=64)
def _day_texts(day: date) -> tuple[str, str]:
    """A day as the Message-ID writes it, once per day: strftime alone took 3.6 us of the
    6.7 us an id costs, 10,000 times a run."""
    return day.isoformat(), f"{day:%Y%m%d}"


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
        if _NOT_IN_URI.search(uri) or not uri.isascii():
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


def _encoded(text: str) -> bytes:
    """`text` (a piece of a body) quoted-printable, CRLF line ends, and a soft line break at
    its end, so that pieces encoded apart decode to the pieces joined (RFC 2045 §6.7: lines
    of at most 76 characters, the "=" of a soft break included). One line of printable ASCII
    without "=" (a position, a link) is its own encoding, cut into lines of 75 characters;
    anything else goes through C code (`binascii.b2a_qp`)."""
    if text.isascii() and text.isprintable() and "=" not in text:
        if len(text) < QP_LINE:
            return (text + "=\r\n").encode("ascii")
        width = QP_LINE - 1
        return ("=\r\n".join([text[at : at + width] for at in range(0, len(text), width)]) + "=\r\n").encode("ascii")
    encoded = binascii.b2a_qp(text.encode("utf-8"), quotetabs=False, istext=True, header=False)
    if b"=20\n" in encoded or b"=09\n" in encoded:
        encoded = _refolded(encoded)
    last_line = encoded[encoded.rfind(b"\n") + 1 :]
    if len(last_line) >= QP_LINE:
        # The "=" would push the last line past 76 characters: break it once more first,
        # before its last token (a character, or an =XX escape).
        cut = len(encoded) - (3 if last_line[-3:-2] == b"=" else 1)
        encoded = encoded[:cut] + b"=\n" + encoded[cut:]
    return (encoded + b"=\n").replace(b"\n", CRLF)


def _refolded(encoded: bytes) -> bytes:
    """Encoded lines cut to 76 characters with soft line breaks, never inside an =XX escape.
    `b2a_qp` lets a line run to 78 when it encodes the white space before a line break."""
    lines: list[bytes] = []
    for line in encoded.split(b"\n"):
        while len(line) > QP_LINE:
            cut = QP_LINE - 1  # room for the "=" of the soft break
            cut -= 1 if line[cut - 1 : cut] == b"=" else 2 if line[cut - 2 : cut - 1] == b"=" else 0
            lines.append(line[:cut] + b"=")
            line = line[cut:]
        lines.append(line)
    return b"\n".join(lines)


_encoded_short = lru_cache(maxsize=1024)(_encoded)
_SOFT_BREAK = len(b"=" + CRLF)


def _encode_pieces(pieces: tuple[str, ...] | list[str], out: list[bytes]) -> None:
    """The quoted-printable body of the pieces joined (which ends with a line break), appended
    to `out` as encoded pieces: a `Shared` piece as encoded on first sight and kept on it, the
    other pieces between two shared ones encoded together."""
    run: list[str] = []
    shared, append = Shared, out.append  # (locals: this loop runs for every piece of every digest)
    for piece in pieces:
        if type(piece) is shared:
            if run:
                text = "".join(run)
                append(_encoded_short(text) if len(text) <= SHORT_RUN else _encoded(text))
                run = []
            encoded = piece.encoded
            if encoded is None:
                if not piece:
                    continue
                encoded = piece.encoded = _encoded(piece)
            append(encoded)
        elif piece:
            run.append(piece)
    if run:
        append(_encoded("".join(run)))
    # The body's last line break ends its last piece: nothing follows it to join.
    out[-1] = out[-1][:-_SOFT_BREAK]


def _body_part(text: str, subtype: str, pieces: tuple[str, ...], out: list[bytes]) -> None:
    """One text part, appended to `out`: 7bit when it is short-lined ASCII, else
    quoted-printable from `pieces` (whose join is `text`; empty: `text` is one piece)."""
    if not text.endswith("\n"):
        text += "\n"
        pieces = (*pieces, "\n") if pieces else ()
    if text.isascii() and max(map(len, text.split("\n"))) <= MAX_LINE and "\r" not in text:
        out.append(f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n'.encode("ascii"))
        out.append(text.encode("ascii").replace(b"\n", CRLF))
        return
    out.append(f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'.encode("ascii"))
    _encode_pieces(pieces or (text,), out)


@lru_cache(maxsize=16)
def _date_header(sent_at: datetime) -> str:
    """`Date:` and its value (a run stamps its messages with one time)."""
    return f"Date: {format_datetime(sent_at)}\r\n"


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
    # The line break before a delimiter belongs to the delimiter (RFC 2046 §5.1.1), so each
    # part, which ends with its own line break, is followed by one more.
    delimiter = f"--{boundary}\r\n".encode("ascii")
    out = [
        _sender_headers(from_address, from_name),
        _address_header("To", to_name or "", to_address),
        _subject_header(digest.subject),
        f"{_date_header(sent_at)}Message-ID: {message_id}\r\n{unsubscribe_lines}".encode("ascii"),
        _TRAILER,
        f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'.encode("ascii"),
        delimiter,
    ]
    _body_part(digest.text, "plain", digest.text_parts, out)
    out += (CRLF, delimiter)
    _body_part(digest.html, "html", digest.html_parts, out)
    out += (CRLF, f"--{boundary}--\r\n".encode("ascii"))
    data = b"".join(out)
    if dkim is not None:
        data = sign_bytes(data, dkim)
    return Composed(sender=from_address, recipient=to_address, message_id=message_id, data=data)
