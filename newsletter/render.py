"""Rendering: a subscriber's picks in, subject + preheader + HTML + plain text out. Pure.

The MJML template is compiled to HTML once per process (mjml-python keeps Jinja tags intact),
then Jinja fills it per subscriber with autoescaping on, so dump text is only ever escaped
data: it is never parsed as MJML or as template code. The plain-text part is rendered without
HTML escaping (an `&amp;` would be wrong there); it carries no markup that text could break,
and every value is flattened to printable text first.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, StrictUndefined, Template
from mjml import mjml2html

from newsletter.ranking.trending import Trending
from newsletter.text import clean_latex
from newsletter.highlight import Segment, excerpt, highlight, match_spans
from newsletter.models import Ranked

# A wheel carries templates/ inside the package (pyproject maps it to newsletter/templates);
# a source checkout or editable install reads the top-level templates/ folder.
TEMPLATE_DIRS = (Path(__file__).parent / "templates", Path(__file__).parent.parent / "templates")
HTML_TEMPLATE = "digest.mjml.j2"
TEXT_TEMPLATE = "digest.txt.j2"
ABSTRACT_LIMIT = 420
SUBJECT_TITLE_LIMIT = 80
PREHEADER_LIMIT = 150  # what inbox lists show beside the subject, at most
PREHEADER_TITLES = 3
TEXT_WIDTH = 72
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\[\"'])")
# Control characters, line/paragraph separators, and the bidi embeddings and overrides
# (U+202A-U+202E, U+2066-U+2069): no title needs them, and an override can make a subject
# or a sender read backwards. Right-to-left scripts need none of them to show correctly.
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class Recipient:
    """What the renderer needs to know about the reader."""

    email: str
    name: str | None
    keywords: tuple[str, ...]


@dataclass(frozen=True)
class RenderedDigest:
    subject: str
    preheader: str
    html: str
    text: str


def one_line(value: str) -> str:
    """Collapse any whitespace (newlines included) and drop control characters."""
    return " ".join(_UNPRINTABLE.sub(" ", value).split())


def trim_abstract(abstract: str, limit: int = ABSTRACT_LIMIT) -> str:
    """Cut at the last sentence end before `limit`; else at a word, with an ellipsis."""
    text = one_line(abstract)
    if len(text) <= limit:
        return text
    kept = ""
    for sentence in _SENTENCE_END.split(text):
        candidate = f"{kept} {sentence}".strip()
        if len(candidate) > limit:
            break
        kept = candidate
    if len(kept) >= limit // 3:
        return kept
    return text[:limit].rsplit(" ", 1)[0].rstrip(",;:") + "…"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def subject_line(picks: list[Ranked], keywords: tuple[str, ...]) -> str:
    """Say what is inside: `3 papers on theorem proving, Lean: <top title>`."""
    if not picks:
        return "No new papers on " + ", ".join(keywords[:3]) + " today"
    matched = {one_line(m.keyword) for pick in picks for m in pick.matched}
    topics = [keyword for keyword in keywords if keyword in matched]
    topic_text = ", ".join(topics[:2] or keywords[:2])
    top = _shorten(one_line(picks[0].paper.title), SUBJECT_TITLE_LIMIT)
    count = _plural(len(picks), "paper") + (f" on {topic_text}" if topic_text else " for you")
    return f"{count}: {top}" if top else count


def _shorten(text: str, limit: int) -> str:
    """`text` cut at a word so that it fits in `limit` characters, with an ellipsis if cut."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    at_word = cut.rsplit(" ", 1)[0]
    return (at_word if len(at_word) > limit // 2 else cut).rstrip(",;: ") + "…"


def preheader_line(picks: list[Ranked]) -> str:
    """The line inbox lists show after the subject: the top picks' titles, then how many more."""
    if not picks:
        return "Nothing matched your keywords today."
    titles = [one_line(pick.paper.title) for pick in picks[:PREHEADER_TITLES]]
    more = len(picks) - len(titles)
    tail = f" (+{more} more)" if more else ""
    return _shorten("Top picks: " + "; ".join(titles), PREHEADER_LIMIT - len(tail)) + tail


def _meta(pick: Ranked) -> str:
    paper = pick.paper
    parts = [paper.byline]
    if paper.published:
        parts.append(paper.published.strftime("%d %b %Y").lstrip("0"))
    if paper.upvotes:
        parts.append(f"▲ {paper.upvotes}")
    return one_line(" · ".join(part for part in parts if part))


def _item(position: int, pick: Ranked) -> dict[str, object]:
    title = one_line(clean_latex(pick.paper.title))
    keywords = [m.keyword for m in pick.matched]
    full_abstract = one_line(clean_latex(pick.paper.abstract))  # cut so the match it names shows
    abstract = excerpt(full_abstract, match_spans(full_abstract, keywords), ABSTRACT_LIMIT)
    title_segments: list[Segment] = highlight(title, keywords)
    abstract_segments: list[Segment] = highlight(abstract, keywords)
    return {
        "position": position,
        "title": title,
        "title_segments": title_segments,
        "abstract_segments": abstract_segments,
        "link": pick.paper.link,
        "meta": _meta(pick),
        "matched": [
            {"keyword": one_line(m.keyword), "where": " and ".join(m.fields), "author": m.fields == ("author",)}
            for m in pick.matched
        ],
        "abstract": abstract,
        "title_wrapped": textwrap.fill(
            f"{position}. {title}", TEXT_WIDTH, subsequent_indent="   ",
            break_long_words=False, break_on_hyphens=False,
        ),
        "abstract_wrapped": textwrap.fill(
            abstract, TEXT_WIDTH, initial_indent="   ", subsequent_indent="   ",
            break_long_words=True, break_on_hyphens=False,
        ),
    }


def _trending_context(trending: Trending | None) -> dict[str, object]:
    """The "Trending today" section: the day's most-upvoted papers (issue 15)."""
    if trending is None or not trending.papers:
        return {"trending": [], "trending_note": ""}
    note = (
        "The most-upvoted papers of the day's listing."
        if trending.by_upvotes
        else "Today's listing gives no upvote counts, so these are its first papers, in its order."
    )
    return {
        "trending": [
            {"title": one_line(clean_latex(paper.title)), "link": paper.link, "meta": one_line(paper.byline),
             "upvotes": paper.upvotes}
            for paper in trending.papers
        ],
        "trending_note": note,
    }


def _template_source(name: str) -> str:
    for directory in TEMPLATE_DIRS:
        if (directory / name).is_file():
            return (directory / name).read_text(encoding="utf-8")
    raise FileNotFoundError(f"template {name} not found in {', '.join(map(str, TEMPLATE_DIRS))}")


@lru_cache(maxsize=1)
def _html_template() -> Template:
    compiled = mjml2html(_template_source(HTML_TEMPLATE), fonts={}, disable_comments=True)
    env = Environment(autoescape=True, undefined=StrictUndefined, keep_trailing_newline=True)
    return env.from_string(compiled)


@lru_cache(maxsize=1)
def _text_template() -> Template:
    env = Environment(autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True)
    return env.from_string(_template_source(TEXT_TEMPLATE))


def render_digest(
    *,
    recipient: Recipient,
    day: date,
    picks: list[Ranked],
    unsubscribe_link: str,
    keywords_link: str = "",
    trending: Trending | None = None,
) -> RenderedDigest:
    """Render one digest. `picks` are in rank order; an empty list renders a short note.

    `unsubscribe_link` and `keywords_link` (where to ask for other keywords; empty: "reply")
    are the operator's URLs, not dump text.
    """
    keywords = tuple(keyword for keyword in map(one_line, recipient.keywords) if keyword)
    subject = subject_line(picks, keywords)
    preheader = preheader_line(picks)
    count = len(picks)
    context = {
        "subject": subject,
        "preheader": preheader,
        "day_label": f"{day:%A}, {day.day} {day:%B %Y}",
        "headline": f"{_plural(count, 'paper')} picked for you" if count else "Nothing new for you today",
        "greeting": (
            f"Hello {one_line(recipient.name)}, here" if recipient.name else "Here"
        )
        + (
            " is what matched your keywords today."
            if count
            else " is today's note: no new paper matched your keywords, so there is nothing to read."
        ),
        "items": [_item(position, pick) for position, pick in enumerate(picks, start=1)],
        "email": recipient.email,
        "keywords": ", ".join(keywords),
        "unsubscribe_link": unsubscribe_link,
        "keywords_link": keywords_link,
        **_trending_context(trending),
    }
    return RenderedDigest(
        subject=subject,
        preheader=preheader,
        html=_html_template().render(context),
        text=_text_template().render(context),
    )
