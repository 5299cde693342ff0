"""The links a digest carries, and the tokens that make them unforgeable. Pure.

With NEWSLETTER_PUBLIC_URL set, `newsletter serve` answers every link in a digest:

    /u/<token>            unsubscribe (GET: a page with one button; POST: RFC 8058 one-click)
    /u/<token>/undo       resubscribe (POST, from the page shown after unsubscribing)
    /d/<token>            the digest of one day in the browser
    /f/more/<token>       "more like this" for one paper (GET: a page; POST: the vote)
    /f/less/<token>       "less like this"

A token is `<payload>.<mac>`, both base64url without padding: the payload is the JSON array
`[address, subject]` (the subject is the digest day for `view`, the paper id for `more` and
`less`, empty for `unsubscribe`), the mac is HMAC-SHA256 with NEWSLETTER_SECRET_KEY over the
JSON array `[purpose, address, subject]`, cut to 128 bits. The purpose is not in the token:
the route supplies it, so a token made for one purpose fails on every other route
(a view link cannot unsubscribe, a "more" link cannot vote "less"). Comparison is constant-time
(`hmac.compare_digest`). The address travels as written in the subscribers file (the ledger
is keyed by it); the store case-folds it for choices.

Without a public URL, the operator's own endpoint (NEWSLETTER_UNSUBSCRIBE_URL, see
`newsletter.unsubscribe`) gets the unsubscribe links, and a digest has no view or feedback links.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from functools import lru_cache
from urllib.parse import quote

from newsletter.unsubscribe import unsubscribe_url

MAC_BYTES = 16  # 128 bits: unguessable, and keeps a link short enough for List-Unsubscribe
MAX_TOKEN_LENGTH = 1024  # a longer token is refused before any decoding
MAX_ADDRESS_LENGTH = 320
MAX_SUBJECT_LENGTH = 200


class Purpose(StrEnum):
    """What a token lets its holder do; each has its own route."""

    UNSUBSCRIBE = "unsubscribe"
    VIEW = "view"
    MORE = "more"
    LESS = "less"


FEEDBACK_PURPOSES = (Purpose.MORE, Purpose.LESS)


@dataclass(frozen=True)
class LinkSettings:
    """Where links point and the key that signs them (built from Settings at the edge).

    `public_url`: where `newsletter serve` is reachable (no trailing slash), or None.
    `external_unsubscribe_url`: the operator's own endpoint, used when there is no public URL.
    """

    public_url: str | None = None
    key: str = field(default="", repr=False)
    external_unsubscribe_url: str | None = None

    @property
    def serving(self) -> bool:
        return self.public_url is not None and bool(self.key)


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says: for whom, and about which day or paper."""

    purpose: Purpose
    address: str
    subject: str


@dataclass(frozen=True)
class DigestLinks:
    """Every link of one digest. `unsubscribe_url` is the https (or loopback http) URL for
    List-Unsubscribe and the footer, None when the operator runs no endpoint; `view` is ""
    without a public URL; `more` / `less` map paper ids to their feedback links (empty then)."""

    unsubscribe_url: str | None = None
    view: str = ""
    more: Mapping[str, str] = field(default_factory=dict)
    less: Mapping[str, str] = field(default_factory=dict)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


# One string as JSON (the encoder's own fast path for a str): the token's JSON arrays are
# written from these, as `json.dumps` writes them, without a new encoder per call.
_json_string = json.JSONEncoder(ensure_ascii=False).encode


@lru_cache(maxsize=4)
def _keyed(key: str) -> hmac.HMAC:
    """HMAC-SHA256 with `key` and nothing hashed yet: each mac starts from a copy of it."""
    return hmac.new(key.encode("utf-8"), digestmod=hashlib.sha256)


def _mac(key: str, purpose: Purpose, address_json: str, subject_json: str) -> bytes:
    """The mac over the JSON array [purpose, address, subject] (`json.dumps`' separators)."""
    mac = _keyed(key).copy()
    mac.update(f"[{_json_string(purpose.value)}, {address_json}, {subject_json}]".encode("utf-8"))
    return mac.digest()[:MAC_BYTES]


def _token(key: str, purpose: Purpose, address_json: str, subject: str) -> str:
    subject_json = _json_string(subject)
    payload = f"[{address_json},{subject_json}]".encode("utf-8")
    return f"{_b64(payload)}.{_b64(_mac(key, purpose, address_json, subject_json))}"


def make_token(key: str, purpose: Purpose, address: str, subject: str = "") -> str:
    """A token for (`purpose`, `address`, `subject`); see the module docstring."""
    if not key:
        raise ValueError("a link token needs a key (NEWSLETTER_SECRET_KEY)")
    return _token(key, purpose, _json_string(address), subject)


def read_token(key: str, purpose: Purpose, token: str) -> TokenClaims | None:
    """The claims of `token` if it was made with `key` for `purpose`; None for anything else
    (malformed, tampered, signed with another key, or made for another purpose)."""
    if not key or not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
        return None
    payload_text, mac_text = token.split(".")
    try:
        payload = json.loads(_unb64(payload_text).decode("utf-8"))
        mac = _unb64(mac_text)
    except (binascii.Error, ValueError):  # bad base64, bad UTF-8, bad JSON
        return None
    if not (
        isinstance(payload, list) and len(payload) == 2 and all(isinstance(part, str) for part in payload)
    ):
        return None
    address, subject = payload
    if not address or len(address) > MAX_ADDRESS_LENGTH or len(subject) > MAX_SUBJECT_LENGTH:
        return None
    if not hmac.compare_digest(mac, _mac(key, purpose, _json_string(address), _json_string(subject))):
        return None
    return TokenClaims(purpose, address, subject)


def _url(links: LinkSettings, *parts: str) -> str:
    return "/".join([links.public_url or "", *(quote(part, safe="") for part in parts)])


def unsubscribe_link(links: LinkSettings, address: str) -> str | None:
    """The subscriber's one-click unsubscribe URL: `serve`'s when there is a public URL, else
    the operator's endpoint (README "Unsubscribe links"), else None (mailto only)."""
    if links.serving:
        return _url(links, "u", make_token(links.key, Purpose.UNSUBSCRIBE, address))
    if links.external_unsubscribe_url and links.key:
        return unsubscribe_url(links.external_unsubscribe_url, links.key, address)
    return None


def view_link(links: LinkSettings, address: str, day: date) -> str:
    """The digest of `day` in the browser; "" without a public URL."""
    if not links.serving:
        return ""
    return _url(links, "d", make_token(links.key, Purpose.VIEW, address, day.isoformat()))


def feedback_link(links: LinkSettings, purpose: Purpose, address: str, paper_id: str) -> str:
    """"More like this" (`Purpose.MORE`) or "less like this" for one paper; "" without a public URL."""
    if purpose not in FEEDBACK_PURPOSES:
        raise ValueError(f"{purpose} is not a feedback purpose")
    if not links.serving:
        return ""
    return _url(links, "f", purpose.value, make_token(links.key, purpose, address, paper_id))


def digest_links(links: LinkSettings, address: str, day: date, paper_ids: Iterable[str]) -> DigestLinks:
    """Every link one digest carries, for `address` on `day` with these papers."""
    if not links.serving:
        return DigestLinks(unsubscribe_url=unsubscribe_link(links, address))
    # The same links as unsubscribe_link, view_link and feedback_link make, with the address
    # written as JSON once for all of them (a token's characters need no quoting in a URL).
    base, key, address_json = links.public_url, links.key, _json_string(address)
    ids = list(dict.fromkeys(paper_ids))
    return DigestLinks(
        unsubscribe_url=f"{base}/u/{_token(key, Purpose.UNSUBSCRIBE, address_json, '')}",
        view=f"{base}/d/{_token(key, Purpose.VIEW, address_json, day.isoformat())}",
        more={paper_id: f"{base}/f/more/{_token(key, Purpose.MORE, address_json, paper_id)}" for paper_id in ids},
        less={paper_id: f"{base}/f/less/{_token(key, Purpose.LESS, address_json, paper_id)}" for paper_id in ids},
    )
