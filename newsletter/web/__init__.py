"""`newsletter serve`: the web side that answers the links every digest carries.

    app      the routes (unsubscribe, view in browser, feedback, health) as a Starlette app
    guard    what every request passes through: body limits and deadlines, security headers,
             an access log with the tokens left out
    forms    strict reading of the small form bodies the routes accept
    view     a recorded digest rendered again for the browser
    server   uvicorn, configured for a small public service, in the foreground or a thread

Starlette on uvicorn: a small, well-kept ASGI toolkit and server (no ORM, no validation layer we
would not use); async, so a slow client waits on its own socket without holding a thread.
"""

from newsletter.web.app import WebContext, create_app

__all__ = ["WebContext", "create_app"]
