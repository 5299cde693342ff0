"""Rendering: a subscriber's picks in, subject + preheader + HTML + plain text out. Pure.

The digest templates are compiled once per process and cut into a head, one card and a foot
(`newsletter.templating`: Jinja fills them with autoescaping on, so dump text is only ever
escaped data). Every value is flattened to printable text first.

Work is done once per process wherever the result does not depend on the subscriber:

- a paper's cleaned title and abstract, and its meta line, once per paper;
- a card (HTML and text together) once per (paper, matched keywords): its position, the
  subscriber's feedback links and, in the text part, the wrapped title line (whose wrapping
  depends on the position) are slots filled per digest. Cards are kept in a memo bounded by
  memory (`CARDS_KEPT_BYTES`; least recently used go first);
- the head's and foot's blocks once per shape, their values filled in per digest.

So a digest is its head, kept cards and foot joined: no Jinja call at all once the day's
cards exist, and the pieces that many digests share are the very same `Shared` string
objects, which the message encodes once (`message.compose_message`).
"""

from __future__ import annotations

import re
import sys
import textwrap
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import NamedTuple

from markupsafe import escape

from newsletter import templating
from newsletter.highlight import Segment, excerpt, highlight, match_spans, opening
from newsletter.links import DigestLinks
from newsletter.memo import Kept
from newsletter.models import Paper, Ranked, Trending
from newsletter.templating import Shared
from newsletter.text import clean_latex

ABSTRACT_LIMIT = 420
SUBJECT_TITLE_LIMIT = 80
PREHEADER_LIMIT = 150  # what inbox lists show beside the subject, at most
PREHEADER_TITLES = 3
TEXT_WIDTH = 72
# Memory the rendered cards of one process may hold (least recently used go first). A card
# takes about 6 KB (its own HTML and plain text, and their encodings), so about 4,300 are
# kept; a day of 100,000 subscribers has about 47,000 distinct cards, most of them shown to a
# few subscribers only, and renders 1.9 cards per digest with this budget (1.7 with 32 MiB,
# a pool worker then peaking 10 MiB higher, at about 220 MiB).
CARDS_KEPT_BYTES = 24 * 1024 * 1024
# What a piece of a card costs beside its text: its encoding (about as long as the text)
# and the attribute dictionary that holds it.
PIECE_OVERHEAD = 340
PAPERS_KEPT = 4096  # papers whose cleaned text is kept (a day's listing has a few hundred)
EXCERPTS_KEPT = 4096  # abstract excerpts (one per paper and first match: about 3,500 a day)
TITLE_LINES_KEPT = 8192  # the text part's title lines (one per paper and position)
LINES_KEPT = 16384  # keywords and titles flattened to one line
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
    # Each part as the pieces it was joined from: `Shared` ones and the subscriber's own
    # values between them. Empty: one piece.
    html_parts: tuple[str, ...] = ()
    text_parts: tuple[str, ...] = ()


def one_line(value: str) -> str:
    """Collapse any whitespace (newlines included) and drop control characters."""
    return " ".join(_UNPRINTABLE.sub(" ", value).split())


# Keywords and titles recur in every digest that shows them: flattened once each.
_line = lru_cache(maxsize=LINES_KEPT)(one_line)


def trim_abstract(abstract: str, limit: int = ABSTRACT_LIMIT) -> str:
    """The opening of an abstract: cut at the last sentence end before `limit`; else at a
    word, with an ellipsis (the excerpt a card shows when no match needs bringing in)."""
    return opening(one_line(abstract), limit)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def subject_line(picks: list[Ranked], keywords: tuple[str, ...]) -> str:
    """Say what is inside: `3 papers on theorem proving, Lean: <top title>`."""
    if not picks:
        return "No new papers on " + ", ".join(keywords[:3]) + " today"
    matched = {_line(m.keyword) for pick in picks for m in pick.matched}
    topics = [keyword for keyword in keywords if keyword in matched]
    topic_text = ", ".join(topics[:2] or keywords[:2])
    top = _shorten(_line(picks[0].paper.title), SUBJECT_TITLE_LIMIT)
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
    titles = [_line(pick.paper.title) for pick in picks[:PREHEADER_TITLES]]
    more = len(picks) - len(titles)
    tail = f" (+{more} more)" if more else ""
    return _shorten("Top picks: " + "; ".join(titles), PREHEADER_LIMIT - len(tail)) + tail


class _PaperText(NamedTuple):
    """What a card shows of a paper whatever matched it."""

    title: str  # LaTeX residue cleaned, one line
    abstract: str  # the whole abstract, cleaned, one line
    meta: str
    link: str


@lru_cache(maxsize=PAPERS_KEPT)
def _paper_text(paper: Paper) -> _PaperText:
    parts = [paper.byline]
    if paper.published:
        parts.append(paper.published.strftime("%d %b %Y").lstrip("0"))
    if paper.upvotes:
        parts.append(f"▲ {paper.upvotes}")
    return _PaperText(
        title=one_line(clean_latex(paper.title)),
        abstract=one_line(clean_latex(paper.abstract)),
        meta=one_line(" · ".join(part for part in parts if part)),
        link=_link(paper),
    )


def _link(paper: Paper) -> str:
    """The paper's link without control characters (a dump's URL is dump text too)."""
    return _UNPRINTABLE.sub("", paper.link)


@lru_cache(maxsize=EXCERPTS_KEPT)
def _excerpt(abstract: str, first_match: tuple[int, int] | None) -> tuple[str, str]:
    """An abstract cut for the card so that its first match shows, and that cut wrapped for
    the text part: once per paper and first match (most keyword sets share one)."""
    trimmed = excerpt(abstract, [first_match] if first_match else [], ABSTRACT_LIMIT)
    wrapped = textwrap.fill(
        trimmed, TEXT_WIDTH, initial_indent="   ", subsequent_indent="   ",
        break_long_words=True, break_on_hyphens=False,
    )
    return trimmed, wrapped


@lru_cache(maxsize=TITLE_LINES_KEPT)
def _wrapped_title(position: int, title: str) -> Shared:
    return Shared(textwrap.fill(
        f"{position}. {title}", TEXT_WIDTH, subsequent_indent="   ",
        break_long_words=False, break_on_hyphens=False,
    ))


class _TrendingPaper(NamedTuple):
    title: str
    link: str
    meta: str
    upvotes: int | None


@lru_cache(maxsize=256)
def _trending_context(trending: Trending | None) -> tuple[tuple[_TrendingPaper, ...], str]:
    """The "Trending today" section: the day's most-upvoted papers (issue 15), and its note."""
    if trending is None or not trending.papers:
        return (), ""
    note = (
        "The most-upvoted papers of the day's listing."
        if trending.by_upvotes
        else "Today's listing gives no upvote counts, so these are its first papers, in its order."
    )
    papers = tuple(
        _TrendingPaper(_paper_text(paper).title, _link(paper), one_line(paper.byline), paper.upvotes)
        for paper in trending.papers
    )
    return papers, note


# Marks in place of values, cut out and filled per digest. one_line() drops control
# characters from everything a dump or a subscribers file supplies, and the templates hold
# none, so a mark only ever comes from the renderer. Card slots: the position, the feedback
# links, and the text part's title line (it wraps differently at "9." and "10.").
POSITION, MORE, LESS, TITLE = "\x01", "\x02", "\x03", "\x04"
_SLOTS = (POSITION, MORE, LESS, TITLE)
_POSITIONS = [Shared(number) for number in map(str, range(100))]  # the same in many digests


@lru_cache(maxsize=256)
def _recurring(value: str) -> Shared:
    """A value of the head or foot that recurs in many digests (the day, the headline, the
    greeting without a name, the operator's links), as one shared piece."""
    return Shared(value)


class _Match(NamedTuple):
    keyword: str
    where: str  # "title and abstract"
    author: bool  # the paper is by an author the subscriber follows


class _Item(NamedTuple):
    """What the card templates see as `item` (attributes: Jinja reads them without the
    failed attribute lookup that a dictionary's keys cost it)."""

    position: str
    title: str
    title_segments: list[Segment]
    abstract_segments: list[Segment]
    link: str
    meta: str
    matched: tuple[_Match, ...]
    abstract: str
    title_wrapped: str
    abstract_wrapped: str
    more_link: str
    less_link: str


class _Rendered(NamedTuple):
    """One card's own pieces (the template's static ends apart), slot marks among them:
    HTML, plain text, and the title that the text part's title line wraps."""

    html: tuple[str, ...]
    text: tuple[str, ...]
    title: str


_cards: Kept[tuple[object, ...], _Rendered] = Kept(CARDS_KEPT_BYTES)


def _rendered_card(pick: Ranked, with_links: bool) -> _Rendered:
    """A card for `pick`, rendered once per process for each (paper, matched keywords) and
    reused at any position, for anyone."""
    key = (pick.paper, pick.matched, with_links)
    card = _cards.get(key)
    if card is not None:
        return card
    paper = _paper_text(pick.paper)
    keywords = [m.keyword for m in pick.matched]
    spans = match_spans(paper.abstract, keywords)
    abstract, abstract_wrapped = _excerpt(paper.abstract, spans[0] if spans else None)
    item = _Item(
        position=POSITION,
        title=paper.title,
        title_segments=highlight(paper.title, keywords),
        abstract_segments=highlight(abstract, keywords),
        link=paper.link,
        meta=paper.meta,
        matched=tuple(
            _Match(_line(m.keyword), " and ".join(m.fields), m.fields == ("author",)) for m in pick.matched
        ),
        abstract=abstract,
        title_wrapped=TITLE,
        abstract_wrapped=abstract_wrapped,
        more_link=MORE if with_links else "",
        less_link=LESS if with_links else "",
    )
    html_card, text_card = templating.html_parts().card, templating.text_parts().card
    html = _slotted(html_card.body.render(item=item))
    text = _slotted(text_card.body.render(item=item))
    own = (piece for piece in (*html, *text) if type(piece) is Shared)  # not the marks
    size = sum(sys.getsizeof(piece) + len(piece) + PIECE_OVERHEAD for piece in own)
    return _cards.put(key, _Rendered(html, text, paper.title), size)


def _slotted(rendered: str) -> tuple[str, ...]:
    """A rendered card body cut at its slot marks: its text as `Shared` pieces (empty ones
    left out), the marks as plain strings."""
    marks = sorted((at, mark) for mark in _SLOTS for at in _occurrences(rendered, mark))
    pieces: list[str] = []
    start = 0
    for at, mark in (*marks, (len(rendered), "")):
        if at > start:
            pieces.append(Shared(rendered[start:at]))
        if mark:
            pieces.append(mark)
        start = at + 1
    return tuple(pieces)


def _occurrences(text: str, mark: str) -> list[int]:
    """Where `mark` is in `text` (str.find: faster than a regular expression on a card)."""
    found: list[int] = []
    at = text.find(mark)
    while at >= 0:
        found.append(at)
        at = text.find(mark, at + 1)
    return found


def render_digest(
    *,
    recipient: Recipient,
    day: date,
    picks: list[Ranked],
    unsubscribe_link: str,
    keywords_link: str = "",
    links: DigestLinks | None = None,
    trending: Trending | None = None,
) -> RenderedDigest:
    """Render one digest. `picks` are in rank order; an empty list renders a short note.

    `unsubscribe_link` and `keywords_link` (where to ask for other keywords; empty: "reply")
    are the operator's URLs, not dump text. `links` (from `newsletter.links.digest_links`) adds
    the view-in-browser link and each paper's "more/less like this" links.
    """
    keywords = tuple(keyword for keyword in map(_line, recipient.keywords) if keyword)
    subject = subject_line(picks, keywords)
    preheader = preheader_line(picks)
    count = len(picks)
    trending_papers, trending_note = _trending_context(trending)
    greeting = (
        " is what matched your keywords today."
        if count
        else " is today's note: no new paper matched your keywords, so there is nothing to read."
    )
    context = {
        "subject": subject,
        "preheader": preheader,
        "day_label": _recurring(_day_label(day)),
        "headline": _recurring(f"{_plural(count, 'paper')} picked for you" if count else "Nothing new for you today"),
        "greeting": (
            f"Hello {one_line(recipient.name)}, here{greeting}" if recipient.name else _recurring("Here" + greeting)
        ),
        "email": recipient.email,
        "keywords": ", ".join(keywords),
        "unsubscribe_link": unsubscribe_link,
        "keywords_link": _recurring(keywords_link),
        "view_link": links.view if links else "",
        "trending": trending_papers,
        "trending_note": _recurring(trending_note),
    }
    html, text = templating.html_parts(), templating.text_parts()
    html_parts = html.head.render(context)
    text_parts = text.head.render(context)
    more_links, less_links = (links.more, links.less) if links else ({}, {})
    with_links = bool(more_links)
    for position, pick in enumerate(picks, start=1):
        card = _rendered_card(pick, with_links)
        html_parts.append(html.card.prefix if position == 1 else html.card.between)
        text_parts.append(text.card.prefix if position == 1 else text.card.between)
        number = _POSITIONS[position] if position < len(_POSITIONS) else str(position)
        html_values = {POSITION: number}
        text_values = {TITLE: _wrapped_title(position, card.title)}
        if with_links:
            paper_id = pick.paper.paper_id
            more, less = more_links.get(paper_id, ""), less_links.get(paper_id, "")
            html_values |= {MORE: str(escape(more)), LESS: str(escape(less))}
            text_values |= {MORE: more, LESS: less}
        html_parts.extend(map(html_values.get, card.html, card.html))
        text_parts.extend(map(text_values.get, card.text, card.text))
    if picks:
        html_parts.append(html.card.suffix)
        text_parts.append(text.card.suffix)
    html_parts.extend(html.foot.render(context))
    text_parts.extend(text.foot.render(context))
    return RenderedDigest(
        subject=subject,
        preheader=preheader,
        html="".join(html_parts),
        text="".join(text_parts),
        html_parts=tuple(html_parts),
        text_parts=tuple(text_parts),
    )


@lru_cache(maxsize=64)
def _day_label(day: date) -> str:
    return f"{day:%A}, {day.day} {day:%B %Y}"


def cache_report() -> str:
    """How much the process keeps (for benchmarks): cards, and the memos behind them."""
    return (
        f"cards {len(_cards)} ({_cards.size / 2**20:.1f} MiB, {_cards.stored} rendered), "
        f"papers {_paper_text.cache_info().currsize}, excerpts {_excerpt.cache_info().currsize}"
    )
