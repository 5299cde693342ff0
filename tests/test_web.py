"""`newsletter serve` against a real server: digests go to aiosmtpd, the links come out of the
message that arrived, and requests go over a socket to uvicorn.

Checked: one-click unsubscribe (RFC 8058, urlencoded and multipart) and the next send skipping
the address; GET/HEAD changing nothing; undo; feedback votes (one current vote per paper);
the digest in the browser, byte for byte the mailed HTML; security headers; and hostile input:
tampered, foreign, cross-purpose and replayed tokens, huge, slow, mistyped and malformed bodies.
"""

from __future__ import annotations

import time

import re
import socket
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import runs as sending
from newsletter.delivery import make_transport
from newsletter.links import Purpose, make_token, read_token
from smtp_servers import SmtpServer
from web_servers import (
    ADA,
    BOB,
    LOOPBACK,
    NOW,
    SECRET_KEY,
    Web,
    form_action,
    html_part,
    links_in,
    one_click,
    post_form,
    request,
    running_web,
    text_part,
)

ADA_KEY = "ada@example.org"


@pytest.fixture
def web(tmp_path: Path, smtp: SmtpServer) -> Iterator[Web]:
    with running_web(tmp_path, smtp) as running:
        report = running.send()
        assert report.count("sent") == 2, report.outcomes
        yield running


def nothing_changed(web: Web) -> None:
    assert web.store.unsubscribed_addresses() == set()
    assert web.store.votes() == []


# the links in the message ----------------------------------------------------------------------
def test_every_link_in_the_digest_points_at_serve(web: Web) -> None:
    message = web.digest_for(ADA_KEY)
    links = links_in(message)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert links.list_unsubscribe == links.footer_unsubscribe
    assert links.list_unsubscribe.startswith(f"{web.base}/u/")
    assert links.view.startswith(f"{web.base}/d/")
    papers = len(web.store.digest_for(ADA.email, NOW.date()).paper_ids)  # type: ignore[union-attr]
    assert papers >= 2 and len(links.more) == len(links.less) == papers
    assert all(link.startswith(f"{web.base}/f/more/") for link in links.more)
    assert all(link.startswith(f"{web.base}/f/less/") for link in links.less)
    text = text_part(message)
    for link in (links.view, *links.more, *links.less, links.list_unsubscribe):
        assert link in text  # the plain-text part carries the same links
    # Bob's links are his own: none of Ada's tokens appear in his message.
    bob = links_in(web.digest_for(BOB.email))
    assert bob.list_unsubscribe != links.list_unsubscribe and bob.view != links.view


def test_healthz_answers_while_the_store_is_reachable(web: Web) -> None:
    answer = request("GET", f"{web.base}/healthz")
    assert (answer.status, answer.text) == (200, "ok\n")


def test_healthz_fails_when_the_store_is_gone(tmp_path: Path, smtp: SmtpServer) -> None:
    with running_web(tmp_path, smtp) as web:
        web.store.engine.dispose()
        for suffix in ("", "-wal", "-shm"):
            (tmp_path / f"web.db{suffix}").unlink(missing_ok=True)
        assert request("GET", f"{web.base}/healthz").status == 503


# unsubscribe -----------------------------------------------------------------------------------
def test_one_click_unsubscribes_at_once_and_the_next_send_skips_the_address(web: Web) -> None:
    url = links_in(web.digest_for(ADA_KEY)).list_unsubscribe
    answer = one_click(url)
    assert answer.status == 200
    assert "location" not in answer.headers and "set-cookie" not in answer.headers
    assert "You are unsubscribed" in answer.text
    assert web.store.unsubscribed_addresses() == {ADA_KEY}
    # A provider may POST twice: still one unsubscribe, same answer.
    assert one_click(url).status == 200
    assert web.store.unsubscribed_addresses() == {ADA_KEY}

    report = web.send(NOW + timedelta(days=1))
    by_address = {o.subscriber.casefold(): o for o in report.outcomes}
    assert (by_address[ADA_KEY].status, by_address[ADA_KEY].detail) == ("skipped", "unsubscribed")
    before = len(web.smtp.handler.to(ADA_KEY))
    assert before == 1  # only the first day's digest ever arrived


def test_one_click_as_multipart_form_data(web: Web) -> None:
    url = links_in(web.digest_for(ADA_KEY)).list_unsubscribe
    body = (
        b"--XyZ\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--XyZ--\r\n"
    )
    answer = request("POST", url, body, {"Content-Type": "multipart/form-data; boundary=XyZ"})
    assert answer.status == 200
    assert web.store.unsubscribed_addresses() == {ADA_KEY}


def test_get_and_head_change_nothing(web: Web) -> None:
    links = links_in(web.digest_for(ADA_KEY))
    for url in (links.list_unsubscribe, links.view, links.more[0], links.less[0]):
        for method in ("GET", "HEAD"):
            assert request(method, url).status == 200, (method, url)
    page = request("GET", links.list_unsubscribe)
    assert "Unsubscribe?" in page.text and "Ada@example.org" in page.text
    assert page.text.count("<button") == 1
    nothing_changed(web)


def test_the_page_button_unsubscribes_and_undo_subscribes_again(web: Web) -> None:
    url = links_in(web.digest_for(ADA_KEY)).footer_unsubscribe
    page = request("GET", url)
    target = form_action(url, page.text)
    assert target == url
    done = request(
        "POST", target, b"List-Unsubscribe=One-Click",
        {"Content-Type": "application/x-www-form-urlencoded", "Origin": web.base},
    )
    assert done.status == 200 and web.store.is_unsubscribed(ADA_KEY)
    undo = form_action(target, done.text)
    assert undo == f"{url}/undo"
    again = post_form(undo, "action=resubscribe")
    assert again.status == 200 and "You are subscribed again" in again.text
    assert web.store.unsubscribed_addresses() == set()
    # ... and the page after undo offers to unsubscribe once more, at the same link.
    assert form_action(undo, again.text) == url
    report = web.send(NOW + timedelta(days=1))
    assert {o.subscriber.casefold(): o.detail for o in report.outcomes}[ADA_KEY] != "unsubscribed"


def test_an_unknown_address_gets_the_same_answers(web: Web) -> None:
    known = links_in(web.digest_for(ADA_KEY)).list_unsubscribe
    stranger = f"{web.base}/u/{make_token(SECRET_KEY, Purpose.UNSUBSCRIBE, 'Nobody@Nowhere.example')}"

    def page(url: str, method: str, address: str) -> tuple[int, str]:
        answer = one_click(url) if method == "POST" else request("GET", url)
        text = answer.text.replace(address, "ADDRESS")
        text = re.sub(r"nonce(?:-|=\")[A-Za-z0-9_-]{22}", "NONCE", text)
        return answer.status, text.replace(urlsplit(url).path.rsplit("/", 1)[1], "TOKEN")

    for method in ("GET", "POST"):
        assert page(known, method, "Ada@example.org") == page(stranger, method, "Nobody@Nowhere.example")


# view in browser -------------------------------------------------------------------------------
def test_view_in_browser_shows_the_mailed_digest(web: Web) -> None:
    message = web.digest_for(ADA_KEY)
    answer = request("GET", links_in(message).view)
    assert answer.status == 200
    assert answer.text.splitlines() == html_part(message).splitlines()
    csp = answer.headers["Content-Security-Policy"]
    assert "script-src" not in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp


def test_view_in_browser_follows_the_ledger_not_todays_ranking(web: Web) -> None:
    """The page is built from what the ledger recorded (papers and order), for the retention period."""
    message = web.digest_for(ADA_KEY)
    view = links_in(message).view
    recorded = web.store.digest_for(ADA.email, NOW.date())
    assert recorded is not None
    titles = [p.title for p in web.store.papers_by_ids(recorded.paper_ids)]
    page = request("GET", view).text
    positions = [page.index(title.split(":")[0][:30]) for title in titles]
    assert positions == sorted(positions)
    web.clock.now = NOW + timedelta(days=90)
    assert request("GET", view).status == 200
    web.clock.now = NOW + timedelta(days=91)
    expired = request("GET", view)
    assert expired.status == 404 and "no longer available" in expired.text


def test_a_day_without_a_digest_is_not_found(web: Web) -> None:
    other_day = make_token(SECRET_KEY, Purpose.VIEW, ADA.email, (NOW.date() - timedelta(days=1)).isoformat())
    assert request("GET", f"{web.base}/d/{other_day}").status == 404


# feedback --------------------------------------------------------------------------------------
def test_feedback_post_records_one_current_vote_per_paper(web: Web) -> None:
    links = links_in(web.digest_for(ADA_KEY))
    recorded = web.store.digest_for(ADA.email, NOW.date())
    assert recorded is not None
    first, second = recorded.paper_ids[:2]
    page = request("GET", links.more[0])
    assert page.status == 200 and "More papers like this?" in page.text
    target = form_action(links.more[0], page.text)
    assert post_form(target, "vote=more").status == 200
    votes = web.store.votes(ADA.email)
    assert [(v.subscriber, v.paper_id, v.vote, v.voted_at) for v in votes] == [(ADA_KEY, first, 1, NOW)]

    web.clock.now = NOW + timedelta(hours=2)
    thanks = post_form(links.less[0], "vote=less")
    assert thanks.status == 200
    assert [(v.paper_id, v.vote, v.voted_at) for v in web.store.votes(ADA.email)] == [
        (first, -1, NOW + timedelta(hours=2))
    ]
    # "Changed your mind?" leads to the opposite vote's page for the same paper.
    other = form_action(links.less[0], thanks.text.replace("<a href", "<form action"))
    assert other == links.more[0]
    assert post_form(links.more[1], "vote=more").status == 200
    assert {(v.paper_id, v.vote) for v in web.store.votes(ADA.email)} == {(first, -1), (second, 1)}


# hostile tokens --------------------------------------------------------------------------------
def _tamper(url: str) -> list[str]:
    base, token = url.rsplit("/", 1)
    payload, mac = token.split(".")
    flipped_mac = mac[:-2] + ("A" if mac[-2] != "A" else "B") + mac[-1]
    forged_payload = make_token(SECRET_KEY, Purpose.VIEW, "mallory@example.org").split(".")[0]
    return [
        f"{base}/{payload}.{flipped_mac}",
        f"{base}/{forged_payload}.{mac}",  # someone else's address under Ada's mac
        f"{base}/{payload}",
        f"{base}/{token}x",
        f"{base}/{payload}.{mac}.{mac}",
        f"{base}/%FF%FE.{mac}",
        f"{base}/{'A' * 2000}.{mac}",
    ]


def test_tampered_tokens_get_4xx_and_change_nothing(web: Web) -> None:
    links = links_in(web.digest_for(ADA_KEY))
    for url in _tamper(links.list_unsubscribe):
        assert request("GET", url).status == 404, url
        assert one_click(url).status == 404, url
    for url in _tamper(links.more[0]):
        assert post_form(url, "vote=more").status == 404, url
    for url in _tamper(links.view):
        assert request("GET", url).status == 404, url
    nothing_changed(web)


def test_foreign_and_cross_purpose_tokens_get_4xx_and_change_nothing(web: Web) -> None:
    links = links_in(web.digest_for(ADA_KEY))
    view_token = links.view.rsplit("/", 1)[1]
    more_token = links.more[0].rsplit("/", 1)[1]
    unsubscribe_token = links.list_unsubscribe.rsplit("/", 1)[1]
    foreign = make_token("another-install-secret-key-0123", Purpose.UNSUBSCRIBE, ADA.email)
    attempts = [
        ("POST", f"{web.base}/u/{view_token}", "List-Unsubscribe=One-Click"),  # view link replayed to unsubscribe
        ("POST", f"{web.base}/u/{more_token}", "List-Unsubscribe=One-Click"),
        ("POST", f"{web.base}/u/{foreign}", "List-Unsubscribe=One-Click"),  # another key
        ("POST", f"{web.base}/u/{view_token}/undo", "action=resubscribe"),
        ("POST", f"{web.base}/f/less/{more_token}", "vote=less"),  # "more" replayed as "less"
        ("POST", f"{web.base}/f/more/{unsubscribe_token}", "vote=more"),
        ("POST", f"{web.base}/f/more/{view_token}", "vote=more"),
        ("POST", f"{web.base}/f/sideways/{more_token}", "vote=sideways"),
        ("GET", f"{web.base}/d/{unsubscribe_token}", ""),
        ("GET", f"{web.base}/d/{more_token}", ""),
    ]
    for method, url, body in attempts:
        answer = post_form(url, body) if method == "POST" else request(method, url)
        assert answer.status == 404, (method, url)
        assert "not valid" in answer.text
    nothing_changed(web)


def test_a_body_for_another_route_is_refused(web: Web) -> None:
    links = links_in(web.digest_for(ADA_KEY))
    assert post_form(links.list_unsubscribe, "vote=more").status == 400
    assert post_form(links.list_unsubscribe, "").status == 400
    assert post_form(links.list_unsubscribe, "List-Unsubscribe=One-Click&List-Unsubscribe=One-Click").status == 400
    assert post_form(links.list_unsubscribe, "List-Unsubscribe=One-Click&x=1").status == 400
    assert post_form(links.more[0], "vote=less").status == 400
    assert post_form(links.more[0], "List-Unsubscribe=One-Click").status == 400
    nothing_changed(web)


# hostile bodies --------------------------------------------------------------------------------
def test_wrong_content_types_get_415(web: Web) -> None:
    url = links_in(web.digest_for(ADA_KEY)).list_unsubscribe
    for content_type in ("application/json", "text/plain", "", "application/x-www-form-urlencoded-ish"):
        headers = {"Content-Type": content_type} if content_type else {}
        answer = request("POST", url, b"List-Unsubscribe=One-Click", headers)
        assert answer.status == 415, content_type
    nothing_changed(web)


def test_bad_utf8_and_malformed_forms_get_400(web: Web) -> None:
    url = links_in(web.digest_for(ADA_KEY)).list_unsubscribe
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    bodies = [
        b"List-Unsubscribe=One-Click%FF",
        b"List-Unsubscribe=One-\xffClick",
        b"List-Unsubscribe=%C3%28",
        b"\xc3\x28=One-Click",
        b"List-Unsubscribe",
        b"&&&",
        b"a=1&b=2&c=3&d=4&e=5&List-Unsubscribe=One-Click",
    ]
    for body in bodies:
        assert request("POST", url, body, form).status == 400, body
    multipart = "multipart/form-data; boundary=XyZ"
    file_part = (
        b"--XyZ\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"; filename=\"a.txt\"\r\n\r\n"
        b"One-Click\r\n--XyZ--\r\n"
    )
    bad_utf8_part = b"--XyZ\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-\xffClick\r\n--XyZ--\r\n"
    for body, content_type in [
        (file_part, multipart),
        (bad_utf8_part, multipart),
        (b"garbage", multipart),
        (b"--XyZ\r\n", "multipart/form-data"),  # no boundary parameter
    ]:
        assert request("POST", url, body, {"Content-Type": content_type}).status == 400, body
    nothing_changed(web)


def test_huge_bodies_get_413(web: Web) -> None:
    url = links_in(web.digest_for(ADA_KEY)).list_unsubscribe
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    huge = b"List-Unsubscribe=One-Click&pad=" + b"x" * (64 * 1024)
    assert request("POST", url, huge, form).status == 413
    # Announced but never sent: refused from the header alone.
    path = urlsplit(url).path
    with socket.create_connection((LOOPBACK, web.port), timeout=10) as conn:
        conn.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            "Content-Length: 10000000000\r\n\r\n".encode()
        )
        assert conn.recv(4096).startswith(b"HTTP/1.1 413")
    # Chunked, with no length announced: counted as it arrives.
    with socket.create_connection((LOOPBACK, web.port), timeout=10) as conn:
        conn.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        chunk = b"x" * 4096
        reply = b""
        for _ in range(8):
            try:
                conn.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except OSError:
                break
        reply = conn.recv(4096)
        assert reply.startswith(b"HTTP/1.1 413")
    # Headers too large for the server: refused by uvicorn's parser.
    answer = request("GET", url, headers={"X-Padding": "y" * (32 * 1024)})
    assert answer.status == 431
    nothing_changed(web)


def test_a_slow_client_does_not_stall_others_and_is_cut_off(web: Web) -> None:
    url = links_in(web.digest_for(ADA_KEY)).list_unsubscribe
    path = urlsplit(url).path
    with socket.create_connection((LOOPBACK, web.port), timeout=10) as slow_head, \
            socket.create_connection((LOOPBACK, web.port), timeout=10) as slow_body:
        slow_head.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the head never ends
        slow_body.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            "Content-Length: 26\r\n\r\nList-Unsub".encode()
        )
        # Others are served meanwhile.
        for _ in range(5):
            assert request("GET", f"{web.base}/healthz").status == 200
        # The server ends both: the head's deadline closes the first, the body's answers 408.
        assert slow_head.recv(4096) == b""
        assert slow_body.recv(4096).startswith(b"HTTP/1.1 408")
    nothing_changed(web)


# headers ---------------------------------------------------------------------------------------
def test_every_answer_carries_the_security_headers_and_no_cookie(web: Web) -> None:
    links = links_in(web.digest_for(ADA_KEY))
    answers = [
        request("GET", links.list_unsubscribe),
        request("GET", links.more[0]),
        request("GET", links.view),
        request("GET", f"{web.base}/healthz"),
        request("GET", f"{web.base}/nothing-here"),
        request("PUT", links.list_unsubscribe),
        post_form(links.list_unsubscribe, "x=1"),
        one_click(links.list_unsubscribe),
    ]
    for answer in answers:
        headers = answer.headers
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert "set-cookie" not in headers and "server" not in headers
    assert [a.status for a in answers[4:7]] == [404, 405, 400]


def test_the_feedback_script_runs_only_by_its_nonce(web: Web) -> None:
    link = links_in(web.digest_for(ADA_KEY)).more[0]
    first, second = request("GET", link), request("GET", link)
    nonces = []
    for answer in (first, second):
        csp = answer.headers["Content-Security-Policy"]
        nonce = re.search(r"script-src 'nonce-([^']+)'", csp).group(1)  # type: ignore[union-attr]
        assert f'<script nonce="{nonce}">' in answer.text
        assert "unsafe-inline" not in csp
        nonces.append(nonce)
    assert nonces[0] != nonces[1]


def test_tokens_stay_out_of_the_log(web: Web, caplog: pytest.LogCaptureFixture) -> None:
    links = links_in(web.digest_for(ADA_KEY))
    caplog.set_level("INFO", logger="newsletter.web")
    one_click(links.list_unsubscribe)
    request("GET", links.view)

    def logged() -> str:
        return "\n".join(record.getMessage() for record in caplog.records)

    # The server thread writes its access line just after the answer has gone out: wait for it.
    deadline = time.monotonic() + 10
    while "GET /d/… 200" not in logged() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "POST /u/… 200" in logged() and "GET /d/… 200" in logged()
    logged_text = logged()
    for link in (links.list_unsubscribe, links.view):
        assert link.rsplit("/", 1)[1] not in logged_text


def test_the_test_copy_carries_the_subscribers_own_links(web: Web) -> None:
    """`send --to` mails the operator a copy whose links act for the subscriber, so they can be tried."""
    sending.send_test(web.store, ADA, "ops@example.org", web.settings, make_transport(web.settings), now=NOW)
    copy = links_in(web.smtp.handler.to("ops@example.org")[0].message)
    for purpose, link in ((Purpose.UNSUBSCRIBE, copy.list_unsubscribe), (Purpose.VIEW, copy.view), (Purpose.MORE, copy.more[0])):
        claims = read_token(SECRET_KEY, purpose, link.rsplit("/", 1)[1])
        assert claims is not None and claims.address == "Ada@example.org"
    assert request("GET", copy.view).status == 200
