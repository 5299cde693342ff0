"""Link tokens and the links of a digest (newsletter/links.py): pure functions, literal cases."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.links import (
    DigestLinks,
    LinkSettings,
    Purpose,
    digest_links,
    feedback_link,
    make_token,
    read_token,
    unsubscribe_link,
    view_link,
)

KEY = "links-test-secret-0123456789"
DAY = date(2026, 11, 23)
SERVING = LinkSettings(public_url="https://news.example/digest", key=KEY)
EXTERNAL = LinkSettings(key=KEY, external_unsubscribe_url="https://example.org/unsubscribe?list=papers")


def test_a_token_reads_back_only_for_its_purpose_and_key() -> None:
    token = make_token(KEY, Purpose.MORE, "Ada@Example.org", "arxiv:2611.12040")
    claims = read_token(KEY, Purpose.MORE, token)
    assert claims is not None
    assert (claims.purpose, claims.address, claims.subject) == (Purpose.MORE, "Ada@Example.org", "arxiv:2611.12040")
    for other in (Purpose.LESS, Purpose.VIEW, Purpose.UNSUBSCRIBE):
        assert read_token(KEY, other, token) is None
    assert read_token(KEY + "x", Purpose.MORE, token) is None
    assert read_token("", Purpose.MORE, token) is None


@pytest.mark.parametrize(
    "token",
    ["", ".", "abc", "a.b.c", "!!!.???", "W10.AAAA", "e30." + "A" * 22, "A" * 2000 + ".x", "%FF.%FF", "bnVsbA.AAAA"],
)
def test_malformed_tokens_read_as_nothing(token: str) -> None:
    assert read_token(KEY, Purpose.UNSUBSCRIBE, token) is None


@given(st.text(min_size=1, max_size=60), st.text(max_size=40), st.integers(min_value=0, max_value=200))
def test_any_single_change_to_a_token_breaks_it(address: str, subject: str, position: int) -> None:
    token = make_token(KEY, Purpose.VIEW, address, subject)
    assert read_token(KEY, Purpose.VIEW, token) is not None
    index = position % len(token)
    replacement = "A" if token[index] != "A" else "B"
    tampered = token[:index] + replacement + token[index + 1 :]
    claims = read_token(KEY, Purpose.VIEW, tampered)
    # base64 padding bits can absorb a change in the last character of a part; the claims
    # must then be exactly the original ones.
    assert claims is None or (claims.address, claims.subject) == (address, subject)


@given(st.text(min_size=1, max_size=60), st.text(max_size=40), st.sampled_from(list(Purpose)))
def test_tokens_are_made_as_the_module_docstring_says(address: str, subject: str, purpose: Purpose) -> None:
    # Links already in mailboxes must keep working: the token's bytes are pinned here.
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

    try:
        payload = json.dumps([address, subject], ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        signed = json.dumps([purpose.value, address, subject], ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no token can be made of it
        return
    mac = hmac.new(KEY.encode(), signed, hashlib.sha256).digest()[:16]
    assert make_token(KEY, purpose, address, subject) == f"{b64(payload)}.{b64(mac)}"


def test_a_digests_links_are_the_single_links() -> None:
    paper_ids = ["arxiv:1", "title:abc", "arxiv:1"]
    links = digest_links(SERVING, "Ada@Example.org", DAY, paper_ids)
    assert links.unsubscribe_url == unsubscribe_link(SERVING, "Ada@Example.org")
    assert links.view == view_link(SERVING, "Ada@Example.org", DAY)
    for paper_id in paper_ids:
        assert links.more[paper_id] == feedback_link(SERVING, Purpose.MORE, "Ada@Example.org", paper_id)
        assert links.less[paper_id] == feedback_link(SERVING, Purpose.LESS, "Ada@Example.org", paper_id)


def test_links_point_at_the_public_url() -> None:
    links = digest_links(SERVING, "ada@example.org", DAY, ["arxiv:1", "title:abc", "arxiv:1"])
    assert links.unsubscribe_url is not None and links.unsubscribe_url.startswith("https://news.example/digest/u/")
    assert links.view.startswith("https://news.example/digest/d/")
    assert list(links.more) == list(links.less) == ["arxiv:1", "title:abc"]
    assert links.more["arxiv:1"].startswith("https://news.example/digest/f/more/")
    assert links.less["title:abc"].startswith("https://news.example/digest/f/less/")
    view_token = links.view.rsplit("/", 1)[1]
    claims = read_token(KEY, Purpose.VIEW, view_token)
    assert claims is not None and claims.subject == "2026-11-23"
    for link in (links.unsubscribe_url, links.view, *links.more.values()):
        assert not any(char in link for char in "<>, \"'")  # safe in List-Unsubscribe and attributes


def test_without_a_public_url_only_the_operators_endpoint_is_linked() -> None:
    links = digest_links(EXTERNAL, "Ada@Example.org", DAY, ["arxiv:1"])
    assert links == DigestLinks(unsubscribe_url=links.unsubscribe_url)
    # README "Unsubscribe links": address lower-cased, hex HMAC of "unsubscribe:<address>".
    expected = hmac.new(KEY.encode(), b"unsubscribe:ada@example.org", hashlib.sha256).hexdigest()
    assert links.unsubscribe_url == f"https://example.org/unsubscribe?list=papers&address=ada%40example.org&token={expected}"
    assert unsubscribe_link(LinkSettings(), "ada@example.org") is None
    assert view_link(LinkSettings(), "ada@example.org", DAY) == ""
    assert feedback_link(LinkSettings(), Purpose.MORE, "ada@example.org", "arxiv:1") == ""


def test_the_key_is_never_in_a_repr() -> None:
    assert KEY not in repr(SERVING)
