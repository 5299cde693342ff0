"""Personal unsubscribe links: an https URL with an unguessable token per subscriber. Pure.

The operator's endpoint (NEWSLETTER_UNSUBSCRIBE_URL) receives, on GET (a person clicking
the footer link) and on POST (a mail provider's one-click request, RFC 8058, whose body is
`List-Unsubscribe=One-Click`), the query parameters

    address  the subscriber's address in lower case
    token    hex(HMAC-SHA256(key = NEWSLETTER_UNSUBSCRIBE_SECRET as UTF-8,
                             msg = "unsubscribe:" + address, as UTF-8))

and honours the request only when the token it computes the same way matches (compare in
constant time, e.g. `hmac.compare_digest`). Nobody without the secret can make a valid link
for someone else's address; the "unsubscribe:" prefix keeps these tokens apart from any
other use of the secret.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

TOKEN_PURPOSE = "unsubscribe:"


def unsubscribe_token(secret: str, address: str) -> str:
    """The token for `address` (lower-cased here, as the URL carries it)."""
    message = (TOKEN_PURPOSE + address.lower()).encode("utf-8")
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def unsubscribe_url(base_url: str, secret: str, address: str) -> str:
    """`base_url` with `address` and `token` added to whatever query it already has."""
    parts = urlsplit(base_url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [("address", address.lower()), ("token", unsubscribe_token(secret, address))]
    return urlunsplit(parts._replace(query=urlencode(query)))
