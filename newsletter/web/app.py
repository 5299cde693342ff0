"""The routes of `newsletter serve` (see `newsletter.links` for the URLs a digest carries).

    GET  /healthz            200 when the store answers, else 503
    GET  /u/<token>          a page with one button; changes nothing (scanners fetch links)
    POST /u/<token>          `List-Unsubscribe=One-Click` (RFC 8058, or the page's button):
                             unsubscribed at once; 200 with a page that offers to undo it
    POST /u/<token>/undo     `action=resubscribe`: subscribed again
    GET  /d/<token>          the digest of that day, as mailed, while the ledger keeps it
    GET  /f/<vote>/<token>   a one-button page (`vote` is `more` or `less`); a script sends it
    POST /f/<vote>/<token>   `vote=<vote>`: the subscriber's current vote on the paper

Every state change is a POST with one fixed body; a token made for another route, another key
or another paper, or altered in any way, gets 404 and changes nothing. An address that was never
subscribed gets exactly the answers a subscribed one gets, so a link reveals nothing about who
is subscribed. Pages use relative URLs, so the service works under any path of a reverse proxy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from newsletter.links import LinkSettings, Purpose, TokenClaims, make_token, read_token
from newsletter.store import Store
from newsletter.store.choices import LESS, MORE
from newsletter.subscribers import Subscriber
from newsletter.web.forms import ONE_CLICK, expect_form
from newsletter.web.guard import Guard, Limits
from newsletter.web.view import render_recorded

VIEW_RETENTION_DAYS = 90  # how long a digest stays readable in the browser
# The mailed HTML styles itself with style attributes, which no nonce can cover; it has no
# script, and the page allows none.
VIEW_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
INVALID_LINK = "This link is not valid. Use the link in your most recent digest."
VOTES = {"more": (Purpose.MORE, MORE), "less": (Purpose.LESS, LESS)}
FEEDBACK_TEXT = {
    "more": {
        "title": "More papers like this?",
        "question": "Tell the digest to pick more papers like this one:",
        "button": "Yes, more like this",
        "thanks": "Thanks: your digest will favour papers like this one.",
        "other_label": "Fewer like this instead",
    },
    "less": {
        "title": "Fewer papers like this?",
        "question": "Tell the digest to pick fewer papers like this one:",
        "button": "Yes, fewer like this",
        "thanks": "Thanks: your digest will pick fewer papers like this one.",
        "other_label": "More like this instead",
    },
}


def _nobody(_address: str) -> Subscriber | None:
    return None


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class WebContext:
    """What the routes need: the store, where links point and their key, and the outside world.

    `subscriber` finds an address's entry in the subscribers file (for the name and keywords
    of a digest shown in the browser); `clock` is injected so tests control "today".
    """

    store: Store
    links: LinkSettings
    keywords_link: str = ""
    subscriber: Callable[[str], Subscriber | None] = _nobody
    clock: Callable[[], datetime] = _utc_now
    retention_days: int = VIEW_RETENTION_DAYS
    limits: Limits = field(default_factory=Limits)


_pages = Environment(
    loader=PackageLoader("newsletter.web", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
)


def _page(request: Request, template: str, status: int = 200, **values: object) -> HTMLResponse:
    html = _pages.get_template(template).render(nonce=request.state.csp_nonce, **values)
    return HTMLResponse(html, status_code=status)


def create_app(context: WebContext) -> ASGIApp:
    """The web service over `context`, wrapped in its guard (limits, headers, access log)."""
    key = context.links.key
    store = context.store

    def claims(request: Request, purpose: Purpose) -> TokenClaims:
        found = read_token(key, purpose, request.path_params["token"])
        if found is None:
            raise HTTPException(404, INVALID_LINK)
        return found

    async def healthz(request: Request) -> Response:
        if await run_in_threadpool(store.reachable):
            return PlainTextResponse("ok\n")
        return PlainTextResponse("the store is not reachable\n", status_code=503)

    async def unsubscribe_page(request: Request) -> Response:
        found = claims(request, Purpose.UNSUBSCRIBE)
        token = request.path_params["token"]
        return _page(request, "unsubscribe.html", title="Unsubscribe?", address=found.address, unsubscribe_url=token)

    async def unsubscribe(request: Request) -> Response:
        found = claims(request, Purpose.UNSUBSCRIBE)
        await expect_form(request, ONE_CLICK)
        # A mail provider's one-click POST carries no Origin; a browser's form post does.
        source = "link" if "origin" in request.headers else "one-click"
        await run_in_threadpool(store.unsubscribe, found.address, source=source)
        token = request.path_params["token"]
        return _page(
            request, "unsubscribed.html", title="You are unsubscribed", address=found.address,
            undo_url=f"{token}/undo",
        )

    async def resubscribe(request: Request) -> Response:
        found = claims(request, Purpose.UNSUBSCRIBE)
        await expect_form(request, ("action", "resubscribe"))
        await run_in_threadpool(store.resubscribe, found.address)
        token = request.path_params["token"]
        return _page(
            request, "resubscribed.html", title="You are subscribed again", address=found.address,
            unsubscribe_url=f"../{token}",
        )

    async def view(request: Request) -> Response:
        found = claims(request, Purpose.VIEW)
        try:
            day = date.fromisoformat(found.subject)
        except ValueError:
            raise HTTPException(404, INVALID_LINK) from None
        html = await run_in_threadpool(_view_html, context, found.address, day)
        if html is None:
            raise HTTPException(
                404, f"This digest is no longer available: digests stay readable for {context.retention_days} days."
            )
        return HTMLResponse(html, headers={"Content-Security-Policy": VIEW_CSP})

    def feedback_claims(request: Request) -> tuple[str, TokenClaims]:
        vote = request.path_params["vote"]
        if vote not in VOTES:
            raise HTTPException(404, INVALID_LINK)
        return vote, claims(request, VOTES[vote][0])

    async def feedback_page(request: Request) -> Response:
        vote, found = feedback_claims(request)
        text = FEEDBACK_TEXT[vote]
        return _page(
            request, "feedback.html", title=text["title"], question=text["question"], button=text["button"],
            paper_title=await run_in_threadpool(_paper_title, store, found.subject),
            vote=vote, vote_url=request.path_params["token"],
        )

    async def record_vote(request: Request) -> Response:
        vote, found = feedback_claims(request)
        await expect_form(request, ("vote", vote))
        await run_in_threadpool(
            store.record_vote, found.address, found.subject, VOTES[vote][1], at=context.clock()
        )
        other = "less" if vote == "more" else "more"  # its link, for "changed your mind?"
        other_token = make_token(key, VOTES[other][0], found.address, found.subject)
        text = FEEDBACK_TEXT[vote]
        return _page(
            request, "voted.html", title="Thanks", thanks=text["thanks"], other_label=text["other_label"],
            paper_title=await run_in_threadpool(_paper_title, store, found.subject),
            other_url=f"../{other}/{other_token}",
        )

    async def error_page(request: Request, exc: HTTPException) -> Response:
        titles = {404: "Link not valid", 405: "Not allowed", 413: "Too large", 415: "Wrong format"}
        text = exc.detail if exc.status_code != 405 else "This address does not accept that request."
        response = _page(request, "message.html", exc.status_code, title=titles.get(exc.status_code, "Request refused"), text=text)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/u/{token}", unsubscribe_page, methods=["GET"]),
        Route("/u/{token}", unsubscribe, methods=["POST"]),
        Route("/u/{token}/undo", resubscribe, methods=["POST"]),
        Route("/d/{token}", view, methods=["GET"]),
        Route("/f/{vote}/{token}", feedback_page, methods=["GET"]),
        Route("/f/{vote}/{token}", record_vote, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: error_page})
    return Guard(app, context.limits)


def _paper_title(store: Store, paper_id: str) -> str:
    found = store.papers_by_ids([paper_id])
    return found[0].title if found else "(a paper no longer in the store)"


def _view_html(context: WebContext, address: str, day: date) -> str | None:
    today = context.clock().date()
    if not today - timedelta(days=context.retention_days) <= day <= today + timedelta(days=1):
        return None
    record = context.store.digest_for(address, day)
    if record is None or record.status == "abandoned":
        return None
    papers = context.store.papers_by_ids(record.paper_ids)
    return render_recorded(
        record, papers, context.subscriber(address), context.links, keywords_link=context.keywords_link
    )
