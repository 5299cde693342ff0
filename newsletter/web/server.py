"""Running the web service on uvicorn: in the foreground (`newsletter serve`) or in a thread
beside the scheduler (`newsletter run` with NEWSLETTER_SERVE=true).

What a slow or hostile client can hold, and for how long (figures from `guard.Limits`):
- the request head (line and headers) must arrive within `head_seconds` (10 s) and fit in
  `max_head_bytes` (16 KiB), else the connection is closed; uvicorn itself only times out idle
  keep-alive connections, so `_GuardedH11Protocol` adds the deadline for the head;
- the body must arrive within `body_seconds` (10 s) and fit in `max_body_bytes` (8 KiB)
  (`guard.Guard`: 408 / 413);
- an idle keep-alive connection is closed after `keep_alive_seconds` (5 s);
- at most `max_connections` (256) connections at once; beyond that uvicorn answers 503 at once.
Everything is async on one event loop; database work runs in Starlette's thread pool, so a slow
client waits on its own socket and never holds a thread.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from newsletter.errors import ConfigError, NewsletterError
from newsletter.message import keywords_mailto
from newsletter.settings import Settings
from newsletter.store import Store
from newsletter.subscribers import Subscriber, load_subscribers
from newsletter.web.app import WebContext, create_app
from newsletter.web.guard import Limits

log = logging.getLogger(__name__)

STARTUP_SECONDS = 10.0


class _GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for each request head.

    The timer starts when the connection opens and again after each response; if it fires
    while no request is in progress (its head never completed), the connection is closed.
    """

    head_seconds: float = Limits().head_seconds

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        deadline = getattr(self, "_head_deadline", None)
        if deadline is not None:
            deadline.cancel()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        previous = getattr(self, "_head_deadline", None)
        if previous is not None:
            previous.cancel()
        self._head_deadline = self.loop.call_later(self.head_seconds, self._head_too_slow)

    def _head_too_slow(self) -> None:
        waiting_for_head = self.cycle is None or self.cycle.response_complete
        if waiting_for_head and not self.transport.is_closing():
            log.info("closed a connection whose request head did not arrive in %.0f s", self.head_seconds)
            self.transport.close()


class SubscriberDirectory:
    """Finds an address in the subscribers file, re-reading the file when it changes.

    A missing or broken file finds nobody: a digest shown in the browser then lacks only the
    name and the "why" of each paper.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stamp: tuple[float, int] | None = None
        self._by_address: dict[str, Subscriber] = {}
        self._lock = threading.Lock()

    def __call__(self, address: str) -> Subscriber | None:
        path: Path = self.settings.subscribers_file
        try:
            stat = path.stat()
            stamp = (stat.st_mtime, stat.st_size)
        except OSError:
            return None
        with self._lock:
            if stamp != self._stamp:
                self._by_address = self._load()
                self._stamp = stamp
            return self._by_address.get(address.casefold())

    def _load(self) -> dict[str, Subscriber]:
        try:
            loaded = load_subscribers(
                self.settings.subscribers_file, max_papers=self.settings.max_papers,
                send_at=self.settings.send_at, timezone=self.settings.timezone,
            )
        except NewsletterError as exc:
            log.warning("digests in the browser show no keywords: %s", exc)
            return {}
        return {subscriber.email.casefold(): subscriber for subscriber in loaded.subscribers}


def web_context(settings: Settings, store: Store, **overrides: Any) -> WebContext:
    """The routes' context from settings (tests override the clock or limits)."""
    values: dict[str, Any] = {
        "store": store,
        "links": settings.link_settings,
        "keywords_link": keywords_mailto(settings.from_address),
        "subscriber": SubscriberDirectory(settings),
    }
    values.update(overrides)
    return WebContext(**values)


def make_server(context: WebContext, *, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server for the app over `context`, configured as the module docstring says."""
    limits = context.limits
    protocol = type("GuardedH11Protocol", (_GuardedH11Protocol,), {"head_seconds": limits.head_seconds})
    config = uvicorn.Config(
        create_app(context),
        host=host,
        port=port,
        http=protocol,
        ws="none",
        lifespan="off",
        loop="asyncio",
        log_config=None,  # the CLI configures logging; uvicorn must not replace it
        access_log=False,  # guard.Guard logs each request with its token cut out
        server_header=False,
        proxy_headers=False,  # links are built from NEWSLETTER_PUBLIC_URL, never from the request
        timeout_keep_alive=limits.keep_alive_seconds,
        limit_concurrency=limits.max_connections,
        h11_max_incomplete_event_size=limits.max_head_bytes,
        timeout_graceful_shutdown=5,
    )
    return uvicorn.Server(config)


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port), so a port in use is one clear error, not uvicorn's exit.
    Port 0 picks a free port (see `.getsockname()`)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port or --host"
        ) from None
    return sock


def serve(settings: Settings, *, host: str, port: int) -> None:
    """Serve in the foreground until SIGINT/SIGTERM (`newsletter serve`)."""
    sock = listen(host, port)
    store = Store(settings.database_url)
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then raises the signal again against the
    # handlers it found; these do nothing, so the command ends with exit code 0, like `run`.
    stopping = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        make_server(web_context(settings, store), host=host, port=port).run(sockets=[sock])
    finally:
        for sig, handler in stopping.items():
            signal.signal(sig, handler)
        store.close()
    log.info("the web service stopped")


class ServerThread:
    """A server running in a daemon thread: `start()` returns once it listens (or raises)."""

    def __init__(self, server: uvicorn.Server, sock: socket.socket) -> None:
        self.server = server
        self.port = int(sock.getsockname()[1])
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="newsletter-serve", daemon=True
        )

    def start(self, *, timeout: float = STARTUP_SECONDS) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive():
                raise ConfigError("the web service stopped while starting (see the log)")
            if time.monotonic() > deadline:
                self.stop()
                raise ConfigError(f"the web service did not start within {timeout:.0f} s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join()


def serve_in_thread(settings: Settings, store: Store, *, host: str, port: int) -> ServerThread:
    """Start serving beside other work (the scheduler); call `.stop()` when shutting down."""
    return start_in_thread(web_context(settings, store), host=host, port=port)


def start_in_thread(context: WebContext, *, host: str, port: int) -> ServerThread:
    """Serve `context` in a daemon thread; returns once it listens."""
    sock = listen(host, port)
    return ServerThread(make_server(context, host=host, port=port), sock).start()
