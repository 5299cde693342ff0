"""What every request passes through before and after its route.

- The head: refused with 431 past `Limits.max_head_bytes`.
- The body: refused with 413 when Content-Length or the bytes that arrive pass
  `Limits.max_body_bytes`, with 408 when it has not all arrived within `Limits.body_seconds`
  (a client trickling bytes holds only its own socket, and not for long). The routes then read
  the body from memory.
- The response headers: a Content-Security-Policy with a fresh nonce per request (scripts and
  styles of our pages carry it; nothing else runs or loads), `frame-ancestors 'none'` and
  X-Frame-Options (no framing), Referrer-Policy `no-referrer` (a token in the URL never leaks to
  the next site), X-Content-Type-Options, Cache-Control `no-store`. No cookie is ever set.
- An access log line per request with the tokens cut out of the path (the field notes: keep
  tokens out of logs); uvicorn's own access log is off.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from dataclasses import dataclass

from starlette.datastructures import MutableHeaders
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

_TOKEN_SEGMENT = re.compile(r"/[^/]{24,}")
SECURITY_HEADERS = (
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
    ("Cache-Control", "no-store"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
)


@dataclass(frozen=True)
class Limits:
    """How much a client may send and how slowly (the server's side is in `server`)."""

    max_body_bytes: int = 8 * 1024  # a one-click body is 26 bytes; a multipart one ~200
    body_seconds: float = 10.0  # the whole body must arrive within this
    head_seconds: float = 10.0  # the request line and headers must arrive within this
    keep_alive_seconds: int = 5  # an idle connection is closed after this
    max_connections: int = 256  # beyond this, new requests get 503 at once
    max_head_bytes: int = 16 * 1024  # request line and headers together


def default_csp(nonce: str) -> str:
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; img-src data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )


def redact(path: str) -> str:
    """The path with every token-sized segment replaced by `/…`."""
    return _TOKEN_SEGMENT.sub("/…", path)


class _Refused(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class Guard:
    """The ASGI middleware described in the module docstring."""

    def __init__(self, app: ASGIApp, limits: Limits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})["csp_nonce"] = nonce
        status = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS:
                    headers.setdefault(name, value)
                headers.setdefault("Content-Security-Policy", default_csp(nonce))
            await send(message)

        try:
            body = await self._read_body(scope, receive)
        except _Refused as refused:
            response = PlainTextResponse(refused.text, refused.status, headers={"Connection": "close"})
            await response(scope, receive, send_with_headers)
        else:
            if body is not None:
                await self.app(scope, _replay(body, receive), send_with_headers)
        if status:
            log.info("%s %s %d", scope["method"], redact(scope["path"]), status)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or None if the client went away; raises _Refused for 408/413."""
        head = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        head += sum(len(name) + len(value) + 4 for name, value in scope["headers"])
        if head > self.limits.max_head_bytes:
            # uvicorn bounds a head that arrives in pieces; one that arrives whole is counted here.
            raise _Refused(431, f"The request line and headers are larger than {self.limits.max_head_bytes} bytes.")
        limit = self.limits.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length" and int(value) > limit:  # h11 checked it is a number
                raise _Refused(413, f"The request body is larger than {limit} bytes.")
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.limits.body_seconds):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        raise _Refused(413, f"The request body is larger than {limit} bytes.")
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            raise _Refused(408, "The request body did not arrive in time.") from None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the body read already, then the client's later events."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
