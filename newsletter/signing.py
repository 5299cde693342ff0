"""DKIM signing (RFC 6376): dkimpy's DKIM-Signature field, OpenSSL's RSA. Pure but for the clock.

The signature is computed over the composed message's bytes, the very bytes both transports
send (SMTP `sendmail` and the outbox file), and the DKIM-Signature field is put in front of
the other headers exactly as dkimpy folded it: the signed message is the signature field
followed by the unchanged bytes that were signed.

Canonicalisation is relaxed/relaxed: relays may refold headers or touch trailing whitespace.
The headers that say who sent what, and the list headers a provider acts on (RFC 2369,
RFC 8058), are signed and also signed once more as absent ("oversigned"), so nobody on the
way can add a second From, Subject or List-Unsubscribe without breaking the signature.

The field is the one `dkim.sign` (dkimpy) makes with these settings, byte for byte: dkimpy
still parses and canonicalises the header fields, folds and hashes the signature field; this
module canonicalises the body itself (dkimpy's regular expressions take about 2 ms on a 45 KB
digest) and computes the RSA signature with OpenSSL through `cryptography` (dkimpy's RSA is
pure Python, about 8 ms per message with a 2048-bit key). The key is parsed once per process.
tests/test_signing.py holds the field to `dkim.sign`'s, real digests and generated messages.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import dkim  # type: ignore[import-untyped]
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from dkim.canonicalization import CanonicalizationPolicy  # type: ignore[import-untyped]

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
_FIELD_NAME = SIGNATURE_HEADER.encode("ascii")
_POLICY = CanonicalizationPolicy.from_c_value(b"/".join(CANONICALIZATION))
_INCLUDE_HEADERS = tuple(name.lower().encode("ascii") for name in SIGNED_HEADERS + OVERSIGNED_HEADERS)
_CRLF = b"\r\n"
_SPACES = re.compile(rb"  +")


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
        bits = _private_key(pem).key_size
    except ValueError:
        raise ValueError(
            f"{path} is not a PEM RSA private key ('BEGIN RSA PRIVATE KEY' or 'BEGIN PRIVATE "
            "KEY'); make one with: openssl genrsa -out dkim.pem 2048"
        ) from None
    if bits < MIN_KEY_BITS:
        raise ValueError(f"{path} is a {bits}-bit key; DKIM needs at least {MIN_KEY_BITS} (use 2048)")
    return pem


def sign_bytes(data: bytes, key: DkimKey) -> bytes:
    """`data` (a whole message, CRLF line ends) with a DKIM-Signature field in front
    (RFC 6376 §5.6: the signature is the first field)."""
    return signature_field(data, key, int(time.time())) + data


def signature_field(data: bytes, key: DkimKey, timestamp: int) -> bytes:
    """The DKIM-Signature field for `data`, from its name to its final CRLF, signed at
    `timestamp` (Unix seconds, the `t=` tag): what `dkim.sign` returns for the same message,
    key and second with this module's settings (no `l=`, no `x=`, `i=@<domain>`)."""
    headers, body = _split(data)
    domain = key.domain.encode("ascii")
    fields = [
        (b"v", b"1"),
        (b"a", b"rsa-sha256"),
        (b"c", _POLICY.to_c_value()),
        (b"d", domain),
        (b"i", b"@" + domain),
        (b"q", b"dns/txt"),
        (b"s", key.selector.encode("ascii")),
        (b"t", str(timestamp).encode("ascii")),
        (b"h", b" : ".join(_INCLUDE_HEADERS)),
        (b"bh", base64.b64encode(hashlib.sha256(_relaxed_body(body)).digest())),
        # dkimpy's placeholder, so that b= is folded onto a line of its own and putting the
        # signature in does not refold the tags before it.
        (b"b", b"0" * 60),
    ]
    # Hashed: the signed header fields, then this field with an empty b= and no final CRLF
    # (RFC 6376 §3.7), folded as it will be sent.
    unsigned = dkim.fold(_tag_list(fields), namelen=len(_FIELD_NAME), linesep=_CRLF)
    unsigned = dkim.RE_BTAG.sub(b"\\1", unsigned)
    hasher = hashlib.sha256()
    dkim.hash_headers(
        hasher, _POLICY, _POLICY.canonicalize_headers(headers), _INCLUDE_HEADERS,
        (_FIELD_NAME, b" " + unsigned), None,
    )
    signature = _private_key(key.private_key).sign(
        hasher.digest(), padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())
    )
    fields[-1] = (b"b", base64.b64encode(signature))
    value = dkim.fold(_tag_list(fields) + _CRLF, namelen=len(_FIELD_NAME), linesep=_CRLF)
    return _FIELD_NAME + b": " + value


def _tag_list(fields: list[tuple[bytes, bytes]]) -> bytes:
    return b"; ".join(name + b"=" + value for name, value in fields)


@lru_cache(maxsize=8)
def _private_key(pem: bytes) -> rsa.RSAPrivateKey:
    """`pem` parsed, once per process and key; ValueError unless it is an unencrypted PEM
    RSA private key (PKCS#1 or PKCS#8)."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # TypeError: encrypted
        raise ValueError(str(exc)) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"not an RSA key: {type(key).__name__}")
    return key


def _split(data: bytes) -> tuple[list[list[bytes]], bytes]:
    """(header fields, body) as `dkim.rfc822_parse` reads `data` (bare LF taken as CRLF, the
    body's lines joined with CRLF), with dkimpy parsing the header block only."""
    if data.count(b"\n") != data.count(_CRLF):
        data = data.replace(_CRLF, b"\n").replace(b"\n", _CRLF)
    end = data.find(b"\r\n\r\n")
    if end < 0 or data.startswith(_CRLF):  # no blank line, or no header field: dkimpy reads all
        headers, body = dkim.rfc822_parse(data)
        return headers, body
    headers, _ = dkim.rfc822_parse(data[: end + 4])
    return headers, data[end + 4 :]


def _relaxed_body(body: bytes) -> bytes:
    """The relaxed canonical body (RFC 6376 §3.4.4), equal to dkimpy's for any body: each run
    of spaces and tabs made one space, dropped before a CRLF; the CRLFs at the end made one,
    or none for an empty body."""
    if b"\t" in body:
        body = body.replace(b"\t", b" ")
    if b"  " in body:
        body = _SPACES.sub(b" ", body)
    if b" \r\n" in body:  # each run is one space now, so one pass drops them all
        body = body.replace(b" \r\n", _CRLF)
    end = len(body)
    while body.endswith(_CRLF, 0, end):
        end -= 2
    return body[:end] + _CRLF if end else b""
