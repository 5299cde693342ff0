"""A real `newsletter serve` for the tests: uvicorn on a free loopback port in a thread, a digest
delivered to a real aiosmtpd server, and the links taken out of the message that arrived.

Nothing here mocks the web stack: requests go over a socket (http.client) to uvicorn, which runs
the same app, guard and server configuration as `newsletter serve`.
"""

from __future__ import annotations

import http.client
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import runs as sending
from newsletter.delivery import make_transport
from newsletter.ingest import ingest_dumps
from newsletter.settings import Settings
from newsletter.store import Store
from newsletter.subscribers import Subscriber
from newsletter.web.app import WebContext
from newsletter.web.guard import Limits
from newsletter.web.server import ServerThread, listen, make_server, web_context
from smtp_servers import SmtpServer, smtp_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_DUMPS = REPO_ROOT / "examples" / "dumps"
LOOPBACK = "127.0.0.1"
SECRET_KEY = "web-test-secret-key-0123456789abcdef"
NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
ADA = Subscriber(
    email="Ada@Example.org", name="Ada", keywords=("language model", "reasoning"), max_papers=4,
    timezone="UTC", send_at="07:00",
)
BOB = Subscriber(email="bob@example.org", keywords=("reasoning",), max_papers=3, timezone="UTC", send_at="07:00")
# Short deadlines so the slow-client tests finish quickly; sizes as in production.
TEST_LIMITS = Limits(body_seconds=0.5, head_seconds=0.5, keep_alive_seconds=1)


@dataclass
class Clock:
    """An injected "now" the tests move by hand."""

    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Web:
    """A running service, its store and settings, and the SMTP server digests go to."""

    store: Store
    settings: Settings
    smtp: SmtpServer
    port: int
    clock: Clock
    subscribers: list[Subscriber] = field(default_factory=lambda: [ADA, BOB])

    @property
    def base(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def send(self, now: datetime | None = None) -> "DayReport":
        """A send run, in a thread of its own: it uses asyncio.run, and Playwright's sync API
        keeps an event loop running in the test's thread."""
        with ThreadPoolExecutor(max_workers=1) as worker:
            return worker.submit(
                sending.send_digests, self.store, self.subscribers, self.settings,
                make_transport(self.settings), now=now or self.clock.now,
            ).result()

    def request(
        self, method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Response:
        return request(method, url, body, headers)

    def digest_for(self, address: str) -> EmailMessage:
        arrived = self.smtp.handler.to(address)
        assert arrived, f"no digest arrived for {address}"
        return arrived[-1].message


@dataclass(frozen=True)
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def request(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Response:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request(method, path, body=body, headers=headers or {})
        answer = connection.getresponse()
        return Response(answer.status, answer.headers, answer.read())
    finally:
        connection.close()


def one_click(url: str, **headers: str) -> Response:
    """What a mail provider sends for RFC 8058 one-click unsubscribe."""
    return request(
        "POST", url, b"List-Unsubscribe=One-Click",
        {"Content-Type": "application/x-www-form-urlencoded", **headers},
    )


def post_form(url: str, body: str) -> Response:
    return request("POST", url, body.encode(), {"Content-Type": "application/x-www-form-urlencoded"})


@contextmanager
def running_web(
    tmp_path: Path, smtp: SmtpServer, *, limits: Limits = TEST_LIMITS, seed: Path | None = None, **overrides: object
) -> Iterator[Web]:
    """The example dumps in a fresh store, settings whose links point at a server started
    here on a free port, and that server; stopped and closed afterwards."""
    database = tmp_path / "web.db"
    if seed is not None:
        shutil.copy(seed, database)
    sock = listen(LOOPBACK, 0)
    port = int(sock.getsockname()[1])
    values: dict[str, object] = {
        "database_url": f"sqlite:///{database}",
        "public_url": f"http://{LOOPBACK}:{port}",
        "secret_key": SECRET_KEY,
    }
    values.update(overrides)
    settings = smtp_settings(smtp, **values)
    store = Store(settings.database_url)
    if seed is None:
        ingest_dumps(store, EXAMPLE_DUMPS)
    clock = Clock()
    by_address = {s.email.casefold(): s for s in (ADA, BOB)}
    context: WebContext = web_context(
        settings, store, clock=clock, limits=limits, subscriber=lambda address: by_address.get(address.casefold())
    )
    server = ServerThread(make_server(context, host=LOOPBACK, port=port), sock).start()
    try:
        yield Web(store, settings, smtp, port, clock)
    finally:
        server.stop()
        store.close()


# Links out of a delivered message -------------------------------------------------------------
class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.anchors: list[tuple[str, str]] = []  # (text, href)
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href") or ""
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.anchors.append((" ".join("".join(self._text).split()), self._href))
            self._href = None


def anchors(html: str) -> list[tuple[str, str]]:
    parser = _Anchors()
    parser.feed(html)
    return parser.anchors


def html_part(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def text_part(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


@dataclass(frozen=True)
class DigestLinksFound:
    list_unsubscribe: str  # the https/http URI of List-Unsubscribe
    footer_unsubscribe: str
    view: str
    more: list[str]
    less: list[str]


def links_in(message: EmailMessage) -> DigestLinksFound:
    header = str(message["List-Unsubscribe"])
    uris = [uri.strip().strip("<>") for uri in header.replace("\n", "").split(",")]
    found = anchors(html_part(message))

    def hrefs(label: str) -> list[str]:
        return [href for text, href in found if text == label]

    return DigestLinksFound(
        list_unsubscribe=next(uri for uri in uris if uri.startswith("http")),
        footer_unsubscribe=hrefs("Unsubscribe")[0],
        view=hrefs("View in your browser")[0],
        more=hrefs("More like this"),
        less=hrefs("Less like this"),
    )


def form_action(page_url: str, html: str) -> str:
    """The absolute URL the page's (first) form posts to."""

    class _Form(HTMLParser):
        action: str | None = None

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "form" and self.action is None:
                self.action = dict(attrs).get("action") or ""

    parser = _Form()
    parser.feed(html)
    assert parser.action is not None, "the page has no form"
    return urljoin(page_url, parser.action)

