"""Rendering: a subscriber's picks in, subject + preheader + HTML + plain text out. Pure.

The MJML template is compiled to HTML once per process (mjml-python keeps Jinja tags intact)
and cut into three precompiled Jinja parts: the head (up to the paper cards), one card, and
the foot. Jinja fills them with autoescaping on, so dump text is only ever escaped data: it
is never parsed as MJML or as template code. The plain-text part is cut the same way and
rendered without HTML escaping (an `&amp;` would be wrong there); it carries no markup that
text could break, and every value is flattened to printable text first.

A card depends only on the paper, the keywords that matched it and its position, so each
distinct card is rendered once per process (highlighting included) and reused for every
subscriber who gets it: a day of many subscribers renders a few thousand cards, and each
digest is its head, its cached cards and its foot joined.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import NamedTuple
from pathlib import Path

from jinja2 import Environment, StrictUndefined, Template
from mjml import mjml2html

from markupsafe import escape

from newsletter.links import DigestLinks

from newsletter.text import clean_latex
from newsletter.highlight import Segment, excerpt, highlight, match_spans, opening
from newsletter.models import Ranked, Trending

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
CARDS_KEPT = 20_000  # distinct cards kept per process (each a few KB)
LOOP_START = "{% for item in items %}"
LOOP_END = "{% endfor %}"
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
    # The HTML as the pieces it was joined from (head, cards, foot): the message encodes each
    # piece once per process and reuses it (`message.compose_message`). Empty: one piece.
    html_parts: tuple[str, ...] = ()


def one_line(value: str) -> str:
    """Collapse any whitespace (newlines included) and drop control characters."""
    return " ".join(_UNPRINTABLE.sub(" ", value).split())


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


@lru_cache(maxsize=32768)
def _trimmed(abstract: str, keywords: tuple[str, ...]) -> tuple[str, str]:
    """An abstract cut for the card so that the match it names shows, and wrapped for the text
    part (once per paper and matched keywords)."""
    full = one_line(clean_latex(abstract))
    trimmed = excerpt(full, match_spans(full, keywords), ABSTRACT_LIMIT)
    wrapped = textwrap.fill(
        trimmed, TEXT_WIDTH, initial_indent="   ", subsequent_indent="   ",
        break_long_words=True, break_on_hyphens=False,
    )
    return trimmed, wrapped


@lru_cache(maxsize=8192)
def _wrapped_title(position: int, title: str) -> str:
    return textwrap.fill(
        f"{position}. {title}", TEXT_WIDTH, subsequent_indent="   ",
        break_long_words=False, break_on_hyphens=False,
    )


def _item(position: int, pick: Ranked) -> dict[str, object]:
    title = one_line(clean_latex(pick.paper.title))
    keywords = [m.keyword for m in pick.matched]
    abstract, abstract_wrapped = _trimmed(pick.paper.abstract, tuple(keywords))
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
        "title_wrapped": _wrapped_title(position, title),
        "abstract_wrapped": abstract_wrapped,
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


class _Islands:
    """A template as static text and small Jinja "islands" (a `{{ value }}`, or a whole
    `{% if %}`/`{% for %}` block): rendering gives a list of pieces in which the static ones
    are the very same string objects every time, so the message encodes them once."""

    _TAG = re.compile(r"{{.*?}}|{%-?\s*(\w+).*?-?%}", re.S)
    _NAME = re.compile(r"{{\s*(\w+)\s*}}")
    _OPENERS, _CLOSERS = {"if", "for"}, {"endif", "endfor"}

    def __init__(self, source: str, env: Environment) -> None:
        self.escape = bool(env.autoescape)
        self.parts: list[str | Template | tuple[str]] = []
        position = 0
        tags = list(self._TAG.finditer(source))
        index = 0
        while index < len(tags):
            tag = tags[index]
            end_index = index
            if tag.group(1) in self._OPENERS:
                depth = 0
                for end_index in range(index, len(tags)):
                    word = tags[end_index].group(1)
                    depth += word in self._OPENERS
                    depth -= word in self._CLOSERS
                    if depth == 0:
                        break
            elif tag.group(1) is not None:
                raise ValueError(f"unexpected {tag.group()} outside a block in the digest template")
            if tag.start() > position:
                self.parts.append(source[position : tag.start()])
            island_end = tags[end_index].end()
            island = source[tag.start() : island_end]
            name = self._NAME.fullmatch(island)
            # A plain `{{ name }}` is looked up here (escaped as Jinja would); blocks go to Jinja.
            self.parts.append((name.group(1),) if name else env.from_string(island))
            position = island_end
            index = end_index + 1
        if position < len(source):
            self.parts.append(source[position:])

    def render(self, context: dict[str, object]) -> list[str]:
        pieces: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                pieces.append(part)
            elif isinstance(part, tuple):
                value = context[part[0]]  # a missing name is a bug: fail as StrictUndefined would
                pieces.append(str(escape(value)) if self.escape else str(value))
            else:
                pieces.append(part.render(context))
        return pieces


class _Parts(NamedTuple):
    head: _Islands
    card: Template
    foot: _Islands


_LOOP_TAG = re.compile(r"{%-?\s*(for|endfor)\b")


def _loop_end(source: str, start: int) -> int:
    """Where the loop opened at `start` closes: its matching LOOP_END (loops nest)."""
    depth = 0
    for tag in _LOOP_TAG.finditer(source, start):
        depth += 1 if tag.group(1) == "for" else -1
        if depth == 0:
            return source.index(LOOP_END, tag.start())
    raise ValueError("the card loop of the digest template is never closed")


def _cut(source: str, env: Environment) -> _Parts:
    """A template cut at its loop over the cards (LOOP_START and its own LOOP_END; the card
    has loops of its own, and other sections may follow): before, the loop's body, after."""
    start = source.index(LOOP_START)
    end = _loop_end(source, start)
    return _Parts(
        _Islands(source[:start], env),
        env.from_string(source[start + len(LOOP_START) : end]),
        _Islands(source[end + len(LOOP_END) :], env),
    )


@lru_cache(maxsize=1)
def _html_parts() -> _Parts:
    compiled = mjml2html(_template_source(HTML_TEMPLATE), fonts={}, disable_comments=True)
    env = Environment(autoescape=True, undefined=StrictUndefined, keep_trailing_newline=True)
    return _cut(compiled, env)


@lru_cache(maxsize=1)
def _text_parts() -> _Parts:
    env = Environment(autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True)
    return _cut(_template_source(TEXT_TEMPLATE), env)


# Slots in a cached card, filled per digest: never in rendered text, as one_line() drops
# control characters from everything a dump or a subscribers file supplies.
POSITION, MORE, LESS = "\x01", "\x02", "\x03"
_SLOT = re.compile("([\x01\x02\x03])")
_html_cards: dict[tuple[object, ...], tuple[str, ...]] = {}
_text_cards: dict[tuple[object, ...], tuple[str, ...]] = {}


def _slotted(rendered: str) -> tuple[str, ...]:
    """A card cut at its slots: static text at even places, slot marks at odd ones."""
    return tuple(_SLOT.split(rendered))


def _fill(pieces: tuple[str, ...], values: dict[str, str]) -> list[str]:
    return [values[piece] if number % 2 else piece for number, piece in enumerate(pieces)]


def _card_item(position: int | str, pick: Ranked, with_links: bool) -> dict[str, object]:
    return _item(position if isinstance(position, int) else 0, pick) | (
        {"position": position} if isinstance(position, str) else {}
    ) | {"more_link": MORE if with_links else "", "less_link": LESS if with_links else ""}


def _html_card(position: int, pick: Ranked, links: DigestLinks | None) -> list[str]:
    """One card's HTML as pieces, rendered once per process for each (paper, matched keywords)
    and reused at any position, with the subscriber's own feedback links filled in."""
    with_links = bool(links and links.more)
    key = (pick.paper, pick.matched, with_links)
    pieces = _html_cards.get(key)
    if pieces is None:
        pieces = _slotted(_html_parts().card.render(item=_card_item(POSITION, pick, with_links)))
        if len(_html_cards) >= CARDS_KEPT:
            _html_cards.clear()
        _html_cards[key] = pieces
    return _fill(pieces, _slot_values(position, pick, links))


def _text_card(position: int, pick: Ranked, links: DigestLinks | None) -> list[str]:
    """One card's text, once per process for each (paper, matched keywords, position): the
    position changes how the title wraps."""
    with_links = bool(links and links.more)
    key = (pick.paper, pick.matched, position, with_links)
    pieces = _text_cards.get(key)
    if pieces is None:
        pieces = _slotted(_text_parts().card.render(item=_card_item(position, pick, with_links)))
        if len(_text_cards) >= CARDS_KEPT:
            _text_cards.clear()
        _text_cards[key] = pieces
    return _fill(pieces, _slot_values(position, pick, links, html=False))


def _slot_values(position: int, pick: Ranked, links: DigestLinks | None, *, html: bool = True) -> dict[str, str]:
    paper_id = pick.paper.paper_id
    more = links.more.get(paper_id, "") if links else ""
    less = links.less.get(paper_id, "") if links else ""
    if html:
        more, less = str(escape(more)), str(escape(less))
    return {POSITION: str(position), MORE: more, LESS: less}


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
        "email": recipient.email,
        "keywords": ", ".join(keywords),
        "unsubscribe_link": unsubscribe_link,
        "keywords_link": keywords_link,
        "view_link": links.view if links else "",
        **_trending_context(trending),
    }
    html, text = _html_parts(), _text_parts()
    html_parts = html.head.render(context)
    text_parts = text.head.render(context)
    for position, pick in enumerate(picks, start=1):
        html_parts.extend(_html_card(position, pick, links))
        text_parts.extend(_text_card(position, pick, links))
    html_parts.extend(html.foot.render(context))
    text_parts.extend(text.foot.render(context))
    return RenderedDigest(
        subject=subject,
        preheader=preheader,
        html="".join(html_parts),
        text="".join(text_parts),
        html_parts=tuple(html_parts),
    )
