"""What a link in a capture points at: a paper (and its arXiv id), a comment count, a profile.

Captures link a paper card in several ways, all of which name the arXiv id:
`https://huggingface.co/papers/<id>`, a relative `/papers/<id>`, `arxiv.org/abs/<id>v2`,
`arxiv.org/pdf/<id>`, and the upvote button's `/login?next=%2Fpapers%2F<id>`. The id is kept
without its version. Pure functions over URL strings.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

# New-style ids (2404.12345, 0704.0001) and old-style ones (hep-th/9901001, math.GT/0309136).
ARXIV_ID = r"(?P<id>[0-9]{4}\.[0-9]{4,5}|[a-z][a-z-]*(?:\.[A-Za-z]{2})?/[0-9]{7})(?:v[0-9]+)?"
PAPER_PATH = re.compile(rf"(?:^|/)papers/{ARXIV_ID}(?![0-9])", re.ASCII)
ARXIV_PATH = re.compile(rf"^/(?:abs|pdf|html)/{ARXIV_ID}(?![0-9])", re.ASCII)
BARE_ARXIV_ID = re.compile(rf"(?:arxiv:)?{ARXIV_ID}", re.ASCII | re.IGNORECASE)
ARXIV_HOSTS = frozenset({"arxiv.org", "www.arxiv.org", "export.arxiv.org"})
HF_HOSTS = frozenset({"huggingface.co", "www.huggingface.co", "hf.co"})
# First path segments on huggingface.co that are not a user or organisation profile.
HF_SECTIONS = frozenset(
    {"papers", "models", "datasets", "spaces", "collections", "docs", "blog", "login", "join",
     "pricing", "enterprise", "storage", "posts", "learn", "api", "settings", "tasks", "chat",
     "new", "organizations", "search", "front", "avatars", "terms-of-service", "privacy"}
)  # fmt: skip
# HF pages that are cards of something other than a paper (models, datasets, Spaces, collections).
NOT_PAPER_SECTIONS = frozenset({"models", "datasets", "spaces", "collections"})
URL_ONLY = re.compile(r"<?(?:https?://|/)[^\s<>]+>?")


def arxiv_id_in(url: str) -> str | None:
    """The arXiv id a link names (HF paper page, arXiv abstract/PDF, upvote button), or None."""
    parts = urlsplit(url.strip())
    host = parts.netloc.lower()
    if host in ARXIV_HOSTS:
        match = ARXIV_PATH.match(parts.path)
        return match.group("id") if match else None
    if host and host not in HF_HOSTS:
        return None
    match = PAPER_PATH.search(parts.path)
    if match:
        return match.group("id")
    # The upvote and sign-in buttons: /login?next=%2Fpapers%2F2404.12345
    if parts.path.rstrip("/").endswith("/login") and "next=" in parts.query:
        target = unquote(parts.query.split("next=", 1)[1])
        match = PAPER_PATH.search(target)
        return match.group("id") if match else None
    return None


def is_comment_link(url: str) -> bool:
    """The comment counter beside a date (`.../papers/<id>#community`): not an upvote count."""
    return urlsplit(url).fragment == "community"


def is_upvote_link(url: str) -> bool:
    parts = urlsplit(url)
    return parts.path.rstrip("/").endswith("/login") and arxiv_id_in(url) is not None


def is_non_paper_card(url: str) -> bool:
    """A link to a model, dataset, Space or collection page on HF: those cards are no papers."""
    parts = urlsplit(url.strip())
    if parts.netloc and parts.netloc.lower() not in HF_HOSTS:
        return False
    segments = [segment for segment in parts.path.split("/") if segment]
    if not segments:
        return False
    # `huggingface.co/<org>/<model>` is a model page; datasets, Spaces and collections say so.
    return segments[0] in NOT_PAPER_SECTIONS or (
        len(segments) == 2 and segments[0] not in HF_SECTIONS
    )


def is_profile_link(url: str) -> bool:
    """`https://huggingface.co/<user or org>`: one path segment that is not a site section."""
    parts = urlsplit(url.strip())
    if parts.netloc and parts.netloc.lower() not in HF_HOSTS:
        return False
    segments = [segment for segment in parts.path.split("/") if segment]
    return len(segments) == 1 and segments[0] not in HF_SECTIONS and not parts.query


def is_bare_url(text: str) -> bool:
    """A line that is nothing but a URL (plain-text captures put each link's URL on its own line)."""
    return URL_ONLY.fullmatch(text.strip()) is not None


def bare_arxiv_id(value: str) -> str | None:
    """`2404.12345v2` or `arXiv:2404.12345` -> `2404.12345`; None when it is no arXiv id."""
    match = BARE_ARXIV_ID.fullmatch(value.strip())
    return match.group("id") if match else None
