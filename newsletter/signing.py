"""DKIM signing (RFC 6376) of a composed message, with dkimpy. Pure apart from the clock.

The signature is computed over the composed message's bytes, the very bytes both transports
send (SMTP `sendmail` and the outbox file), and the DKIM-Signature field is put in front of
the other headers exactly as dkimpy folded it: the signed message is the signature field
followed by the unchanged bytes that were signed.

Canonicalisation is relaxed/relaxed: relays may refold headers or touch trailing whitespace.
The headers that say who sent what, and the list headers a provider acts on (RFC 2369,
RFC 8058), are signed and also signed once more as absent ("oversigned"), so nobody on the
way can add a second From, Subject or List-Unsubscribe without breaking the signature.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import dkim  # type: ignore[import-untyped]
from dkim.crypto import UnparsableKeyError, parse_pem_private_key  # type: ignore[import-untyped]

SIGNATURE_HEADER = "DKIM-Signature"
CANONICALIZATION = (b"relaxed", b"relaxed")
MIN_KEY_BITS = 1024  # receivers refuse shorter keys (RFC 8301 §3.2); 2048 is the advice
# Signed once as present and once more as absent (RFC 6376 §8.15: prevents additions).
OVERSIGNED_HEADERS = (
    "From", "To", "Subject", "Date", "Message-ID",
    "List-Id", "List-Unsubscribe", "List-Unsubscribe-Post",
)
SIGNED_HEADERS = OVERSIGNED_HEADERS + (
    "Auto-Submitted", "Precedence", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
)
_DNS_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$")


@dataclass(frozen=True)
class DkimKey:
    """What signing needs: the DNS name of the key (`<selector>._domainkey.<domain>`) and
    the private key as PEM bytes (never shown in a repr or a log)."""

    selector: str
    domain: str
    private_key: bytes = field(repr=False)

    @property
    def dns_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"


def check_dns_name(name: str) -> str:
    """`name` if it is a sequence of DNS labels (a selector or a domain); else ValueError."""
    if not _DNS_NAME.match(name):
        raise ValueError(f"{name!r} is not a DNS name (letters, digits and '-', dot-separated)")
    return name


def read_private_key(path: Path) -> bytes:
    """Read and check a PEM RSA private key; ValueError with an operator-readable reason."""
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    try:
        parsed = parse_pem_private_key(pem)
    except (UnparsableKeyError, ValueError, IndexError, TypeError):
        raise ValueError(
            f"{path} is not a PEM RSA private key ('BEGIN RSA PRIVATE KEY' or 'BEGIN PRIVATE "
            "KEY'); make one with: openssl genrsa -out dkim.pem 2048"
        ) from None
    bits = int(parsed["modulus"]).bit_length()
    if bits < MIN_KEY_BITS:
        raise ValueError(f"{path} is a {bits}-bit key; DKIM needs at least {MIN_KEY_BITS} (use 2048)")
    return pem


def sign_bytes(data: bytes, key: DkimKey) -> bytes:
    """`data` (a whole message, CRLF line ends) with a DKIM-Signature field in front
    (RFC 6376 §5.6: the signature is the first field)."""
    field_line = dkim.sign(
        data,
        key.selector.encode("ascii"),
        key.domain.encode("ascii"),
        key.private_key,
        canonicalize=CANONICALIZATION,
        include_headers=[name.encode("ascii") for name in SIGNED_HEADERS + OVERSIGNED_HEADERS],
        linesep=b"\r\n",
    )
    if not field_line.endswith(b"\r\n"):
        field_line += b"\r\n"
    return field_line + data
