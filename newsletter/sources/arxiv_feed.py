"""arXiv feeds: the API's Atom responses and the RSS/Atom listing feeds, read with feedparser.

- API (`export.arxiv.org/api/query`): Atom entries with `id` = `http://arxiv.org/abs/<id>v1`,
  `title` and `summary` wrapped over lines, `author/name`, `published`.
- Listing feeds (`rss.arxiv.org/rss/cs.CL`, `/atom/cs.CL`): items whose `link` is the abstract
  page, `description` = `arXiv:<id>v1 Announce Type: new` then `Abstract: ...`, and
  `dc:creator` = the authors separated by commas.
- The older RSS 1.0 listing, whose titles end in `. (arXiv:<id>v1 [cs.CL])` and whose
  description and creators are HTML (`<p>...</p>`, `<a href=...>Name</a>, ...`).

The arXiv id is kept without version. An entry with no title is a `DumpIssue`; a feed with
no entry is a `DumpError` (arXiv answers an empty query with an empty feed, not an error).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import feedparser
from selectolax.lexbor import LexborHTMLParser

from newsletter.errors import DumpError
from newsletter.models import DumpIssue, Paper, ParsedDump
from newsletter.sources.blocks import clean
from newsletter.sources.links import arxiv_id_in, bare_arxiv_id

FORMAT = "arxiv-feed"
FEED_START = re.compile(
    r"\s*(?:<\?xml[^>]*\?>\s*)?(?:<!--.*?-->\s*)*<(?:feed|rss|rdf:RDF)\b", re.I | re.S
)
ANNOUNCE = re.compile(r"^arXiv:\S+\s+Announce Type:\s*\S+\s*", re.I)
ABSTRACT_PREFIX = re.compile(r"^Abstract:\s*", re.I)
# The old RSS 1.0 listing: `Title. (arXiv:2310.07001v1 [cs.CL])`, `... [cs.CL] UPDATED)`.
TITLE_SUFFIX = re.compile(r"\.?\s*\(arXiv:[^()]*\)\s*(?:UPDATED)?\s*$", re.I)
API_ERROR = "arxiv.org/api/errors"
OAI_ID = re.compile(r"oai:arXiv\.org:(?P<id>\S+)", re.I)


def recognises(text: str) -> bool:
    return FEED_START.match(text[:4096]) is not None


def parse(text: str, *, fallback_date: date) -> ParsedDump:
    del fallback_date  # feed dates carry their year
    feed = feedparser.parse(text)
    if not feed.entries:
        reason = "an XML feed without entries"
        if feed.bozo:
            reason += f" ({feed.bozo_exception})"
        raise DumpError(reason, line=getattr(feed.get("bozo_exception"), "getLineNumber", lambda: 1)())
    papers: list[Paper] = []
    issues: list[DumpIssue] = []
    for number, entry in enumerate(feed.entries, start=1):
        title = clean(TITLE_SUFFIX.sub("", entry.get("title", "")))
        if API_ERROR in str(entry.get("id", "")):  # the API answers a bad query with an entry
            reason = f"entry {number}: the arXiv API reported an error: {_abstract(entry)}"
            issues.append(DumpIssue(number, reason + "; fix the query and fetch again"))
            continue
        if not title:
            issues.append(DumpIssue(number, f"entry {number}: no title; skipped"))
            continue
        authors = _authors(entry)
        papers.append(
            Paper(
                title=title,
                abstract=_abstract(entry),
                arxiv_id=_arxiv_id(entry),
                authors=authors,
                author_count=len(authors) or None,
                published=_date(entry),
            )
        )
    if not papers:
        raise DumpError(f"no usable entry in the feed; {issues[0].reason}", line=1)
    listed = _date(feed.feed) if feed.feed else None
    return ParsedDump(FORMAT, tuple(papers), listed, tuple(issues))


def _arxiv_id(entry: Any) -> str | None:
    candidates = [entry.get("id", ""), entry.get("link", "")]
    candidates += [link.get("href", "") for link in entry.get("links", [])]
    for candidate in candidates:
        found = arxiv_id_in(candidate)
        if found:
            return found
        oai = OAI_ID.fullmatch(candidate.strip())
        if oai and (found := bare_arxiv_id(oai.group("id"))):
            return found
    return None


def _plain(value: str) -> str:
    """Text of a field that may hold HTML (`<p>...</p>`, `<a href=...>Name</a>`)."""
    if "<" in value or "&" in value:
        value = LexborHTMLParser(f"<body>{value}</body>").text(separator=" ")
    return clean(value)


def _abstract(entry: Any) -> str:
    text = _plain(entry.get("summary", ""))
    return ABSTRACT_PREFIX.sub("", ANNOUNCE.sub("", text))


def _authors(entry: Any) -> tuple[str, ...]:
    names = [_plain(author.get("name", "")) for author in entry.get("authors", [])]
    if len(names) == 1 and "," in names[0]:  # dc:creator: "Ada Lovelace, Alan Turing"
        names = [clean(name) for name in names[0].split(",")]  # joined by `_plain` above
    return tuple(name for name in names if name)


def _date(entry: Any) -> date | None:
    """The calendar date as the feed writes it (local to its offset, not converted to UTC)."""
    for key in ("published", "updated"):
        raw = entry.get(key)
        if isinstance(raw, str) and raw.strip():
            try:
                return datetime.fromisoformat(raw.strip()).date()
            except ValueError:
                pass
            try:
                return parsedate_to_datetime(raw.strip()).date()  # RFC 822, as RSS 2.0 writes
            except (TypeError, ValueError):
                pass
        parsed = entry.get(f"{key}_parsed")
        if parsed:
            return date(parsed.tm_year, parsed.tm_mon, parsed.tm_mday)
    return None
