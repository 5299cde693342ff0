"""The card finder: paper cards recognised by the structure the listing always has.

Whatever tool made the capture, a paper card on the HF papers pages is a title that links the
paper (its HF page, its arXiv page, or for some cards only GitHub or a project page), then its
abstract, then a meta line: an author count or an organisation, a `·`, a date, and an upvote
count (a number linked to the sign-in page with `next=/papers/<id>`). Cards are found in a list
of `Block`s (blocks.py), wherever the listing starts, with no grammar per tool:

- a *linked title* is a heading, or a block that is nothing but a link, whose link names an
  arXiv id (links.py). It opens a card on its own.
- an *unlinked title* (a heading, or a line linking outside HF, e.g. GitHub) opens a card only
  when an abstract follows and a meta line comes before the next title.

A card runs from its title to the next heading or to a block that links another paper. Its
abstract is the first prose block in it; meta lines are read wherever they are. A listing that
shows every card twice (Trending, structured extractions) gives one paper per arXiv id, else
per normalised title. Navigation, banners, model and collection cards have no title of this
kind (or link a model/collection page), so they never become papers.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit
from dataclasses import dataclass, replace
from datetime import date

from newsletter.models import Paper, normalise_title
from newsletter.sources.blocks import Block, Line, Link
from newsletter.sources.dates import DATE_LINE, month_number, read_date_line
from newsletter.sources.links import (
    arxiv_id_in,
    is_comment_link,
    is_non_paper_card,
    is_profile_link,
    is_upvote_link,
)

MAX_TITLE_CHARS = 300  # the longest arXiv titles are ~250 characters
MIN_ABSTRACT_WORDS = 6
MIN_ABSTRACT_CHARS = 40
MIN_PLAIN_ABSTRACT_CHARS = 100  # a title without links needs a real abstract after it
AUTHOR_COUNT = re.compile(r"(?<![0-9])(?P<count>[0-9]{1,6})\s+authors?\b", re.ASCII | re.I)
# `101`, `Upvote 117`, `[-] 1`, `- [x] Upvote 29`, `-` (no votes yet), `1.2k`
UPVOTES = re.compile(
    r"(?:[-*]\s*)?(?:\[[ xX-]?\]\s*)?(?:upvote\s*)?(?P<count>[0-9][0-9,]*(?:\.[0-9]+)?k?|-)",
    re.ASCII | re.I,
)
DATE_PREFIX = re.compile(r"^(?:published|submitted)(?:\s+on)?\s+", re.I)
SUBMITTED_BY = re.compile(r"^submitted\s+by\b", re.I)
LEADING_PLACEHOLDERS = re.compile(r"^(?:\[[^\[\]]*\]\s*)+")
SEPARATOR = "·"
MISSING_REFERENCE = "#missing-reference"  # blocks.py: a reference link without definition
# Links a card carries besides its title: code and project pages (`[GitHub 1.2k](...)`).
CARD_LINK_TEXT = re.compile(r"(?:link:\s*)?(?:github|arxiv page|project page)\b", re.I)
CODE_HOSTS = ("github.com", "gitlab.com", "arxiv.org")


@dataclass
class Card:
    """A card being read: its title block, the blocks after it, and what they said."""

    title: Block
    title_text: str
    url: str
    arxiv_id: str | None
    body: list[Block]


def find_papers(blocks: list[Block], reference: date) -> list[Paper]:
    """Every paper card in `blocks`, once each, in the order of first appearance."""
    papers: dict[str, Paper] = {}
    for _, paper in _read_cards(blocks, reference):
        key = paper.arxiv_id or normalise_title(paper.title)
        known = papers.get(key)
        papers[key] = paper if known is None else _merged(known, paper)
    return list(papers.values())


def listing_date(blocks: list[Block], reference: date) -> date | None:
    """The listing date shown above the cards (a bare `Apr 15`), read before the first card."""
    first_card = next((card.title.line for card, _ in _read_cards(blocks, reference)), None)
    for block in blocks:
        if first_card is not None and block.line >= first_card:
            break
        for line in block.lines:
            match = DATE_LINE.fullmatch(line.text)
            if match and not match.group("upvotes") and month_number(match.group("month")):
                read = read_date_line(line.text, reference)
                return read[0] if read else None
    return None


# --- finding cards -------------------------------------------------------------------------


def _read_cards(blocks: list[Block], reference: date) -> list[tuple[Card, Paper]]:
    """Each card that is a paper, with the paper it describes (repeats not merged yet)."""
    upvotes_by_id = _upvote_links(blocks)
    cards = _cards(blocks)
    if any(card.arxiv_id for card in cards):  # a linked listing: plain cards may join it
        cards = _cards(blocks, plain=True)
    found = ((card, _paper(card, reference, upvotes_by_id)) for card in cards)
    return [(card, paper) for card, paper in found if paper is not None]


def _cards(blocks: list[Block], *, plain: bool = False) -> list[Card]:
    cards: list[Card] = []
    current: Card | None = None
    for index, block in enumerate(blocks):
        opened = _title(block, blocks[index + 1 :], plain)
        if opened is not None:
            if current is not None and current.arxiv_id and current.arxiv_id == opened.arxiv_id:
                if block.level and not current.title.level:
                    # The same paper's thumbnail link, then its heading: the heading is the title.
                    current.title, current.title_text, current.url = block, opened.title_text, opened.url
                    continue
                if not block.level:
                    # Another line linking the same paper (a short summary without a full stop,
                    # its URL on the next line) belongs to the card; only a heading repeats it.
                    current.body.append(block)
                    continue
            # Daily listings print the upvote box before the title it counts.
            if current is not None and current.body:
                _hand_over_upvotes(current, opened)
            elif current is None and index and not blocks[index - 1].level:
                _take_upvotes(blocks[index - 1], opened)
            current = opened
            cards.append(current)
            continue
        if current is None:
            continue
        ids = _ids(block)
        if block.level or (ids and current.arxiv_id not in ids) or _non_paper_title(block):
            current = None  # another heading, another paper's links: this card has ended
            continue
        current.body.append(block)
    return cards


def _title(block: Block, following: list[Block], plain: bool) -> Card | None:
    """The card this block opens, if it is a paper's title.

    `plain`: the listing's cards link their papers, so a plain line followed by an abstract
    and a meta line is a card of the same listing whose links the capture lost.
    """
    text = block.text
    if not _title_like(text, heading=bool(block.level)):
        return None
    own = _own_link(block)
    url = own.url if own else ""
    if own is not None and is_non_paper_card(url):
        return None
    arxiv_id = arxiv_id_in(url) if own else None
    if arxiv_id is None and own is None and block.level:
        ids = {found for link in block.links if (found := arxiv_id_in(link.url))}
        arxiv_id = ids.pop() if len(ids) == 1 else None
    if arxiv_id is None and own is not None and is_upvote_link(url):
        return None
    if arxiv_id is None and block.level and own is None:
        arxiv_id = _abstract_link(following)  # `### Title` then `[abstract](/papers/<id>)`
    card = Card(block, _title_text(block, own), url, arxiv_id, [])
    if arxiv_id is not None or (block.level and url == MISSING_REFERENCE):
        return card  # a heading whose link's definition the capture lost still links a page
    if own is None and not block.level:
        # An unlinked plain line opens a card when its abstract follows and its byline links
        # the paper (`Title` / abstract / `[5 authors](/papers/<id>)`); without any link it
        # is the seeds' text form, which hf_text reads.
        if block.links:
            return None
        linked = _byline_link(following)
        if linked or (plain and _confirmed_plain(following)):
            return Card(block, block.text, "", linked, [])
        return None
    if own is not None and (is_profile_link(url) or url.startswith("#")) and not block.level:
        return None
    return card if _confirmed(following) else None


def _abstract_link(following: list[Block]) -> str | None:
    """The paper the next block links, when that block is an abstract linking one paper."""
    content = [block for block in following[:3] if block.text]
    if not content or content[0].level or not _is_prose(content[0].text):
        return None
    ids = _ids(content[0])
    return ids.pop() if len(ids) == 1 else None


def _byline_link(following: list[Block]) -> str | None:
    """The paper a plain title's author line links: abstract first, then only meta lines (an
    organisation before `·`, a date) up to an `N authors` line linking one paper."""
    content = [block for block in following[:10] if block.text]
    if not content or content[0].level or not _prose(content[0], [None] * len(content[0].lines)):
        return None
    for position, block in enumerate(content[1:], start=1):
        ids = _ids(block)
        kinds = [_meta_kind(line) for line in block.lines]
        if block.level:
            return None
        if ids:  # the author line links the paper; an upvote link belongs to the next title
            linked = [kind for line, kind in zip(block.lines, kinds) if line.links]
            return ids.pop() if len(ids) == 1 and linked and set(linked) == {"authors"} else None
        after = content[position + 1] if position + 1 < len(content) else None
        byline = after is not None and after.text.startswith(SEPARATOR)
        if not (all(kinds) or byline):
            return None  # prose or the next title: no linked meta line in this card
    return None


def _confirmed_plain(following: list[Block]) -> bool:
    """For a plain title in a linked listing: a full abstract, then a byline and its `·`."""
    content = [block for block in following[:12] if block.text]
    if not content or content[0].level:
        return False
    abstract = _prose(content[0], [None] * len(content[0].lines))
    if len(abstract) < MIN_PLAIN_ABSTRACT_CHARS:
        return False
    for block in content[1:]:
        if block.level or _ids(block):
            return False
        kinds = [_meta_kind(line) for line in block.lines]
        if "separator" in kinds or "authors" in kinds:
            return True
        if not any(kinds) and not block.text.startswith(SEPARATOR):
            if block is not content[1]:
                return False  # a second non-meta block: prose or the next title
    return False


def _confirmed(following: list[Block]) -> bool:
    """An abstract comes next, and a meta line before the next heading or linked title."""
    content = [block for block in following[:12] if block.text and block.text != SEPARATOR]
    if not content or content[0].level or not _prose(content[0], [None] * len(content[0].lines)):
        return False
    if any(_meta_kind(line) or _card_link(line) for line in content[0].lines[1:]):
        return True
    for block in content[1:]:
        if block.level or _ids(block):
            return False
        if any(_meta_kind(line) or _card_link(line) for line in block.lines):
            return True
    return False


def _card_link(line: Line) -> Link | None:
    """The code or project link of a card (`[GitHub 11.3k](https://github.com/...)`)."""
    for link in line.links:
        host = urlsplit(link.url).netloc.lower()
        if CARD_LINK_TEXT.match(link.text) or (
            host.endswith(CODE_HOSTS) and not _is_prose(line.text)
        ):
            return link
    return None


def _take_upvotes(before: Block, opened: Card) -> None:
    """The upvote count closing the block right before a card's title (outside any card)."""
    line = before.lines[-1]
    ids = {found for link in line.links if (found := arxiv_id_in(link.url))}
    if _meta_kind(line) == "upvotes" and ids <= ({opened.arxiv_id} - {None}):
        opened.body.insert(0, Block(before.line, 0, (line,)))


def _hand_over_upvotes(previous: Card, opened: Card) -> None:
    """An upvote count right before a title, linking no other paper, is that title's."""
    last = previous.body[-1]
    line = last.lines[-1]
    ids = {found for link in line.links if (found := arxiv_id_in(link.url))}
    if _meta_kind(line) != "upvotes" or not ids <= ({opened.arxiv_id} - {None}):
        return
    if len(last.lines) == 1:
        previous.body.pop()
    else:
        previous.body[-1] = Block(last.line, last.level, last.lines[:-1])
    opened.body.insert(0, Block(last.line, 0, (line,)))


def _title_like(text: str, *, heading: bool = False) -> bool:
    if not (0 < len(text) <= MAX_TITLE_CHARS) or not any(ch.isalpha() for ch in text):
        return False
    if not heading and text.endswith(".") and len(text.split()) > 3:
        return False  # a sentence: a short abstract or a summary, not a title
    return _meta_kind(Line(text)) is None and not SUBMITTED_BY.match(text)


def _own_link(block: Block) -> Link | None:
    """The link the whole block stands for: its only link's text is the block's text."""
    links = [link for link in block.links if not is_comment_link(link.url)]
    if len(block.lines) != 1:
        return None
    if block.level and links:
        return links[0]
    for link in links:
        if link.text == block.text or (not link.text and len(links) == 1):
            return link
    return None


def _title_text(block: Block, own: Link | None) -> str:
    """The title as shown: the block's own link text, or the heading's text.

    A heading holding more than its title (`### [Title](/papers/<id>) [PDF](...)`) gives the
    text of its one paper link that reads like a title.
    """
    if own is not None and own.text and not block.level:
        return own.text
    if block.level:
        texts = {
            link.text
            for link in block.links
            if link.text and arxiv_id_in(link.url) and len(link.text.split()) > 1
        }
        if len(texts) == 1 and (text := texts.pop()) != block.text and _title_like(text, heading=True):
            return text
    return block.text


def _ids(block: Block) -> set[str]:
    return {found for link in block.links if (found := arxiv_id_in(link.url))}


def _non_paper_title(block: Block) -> bool:
    own = _own_link(block)
    return own is not None and is_non_paper_card(own.url) and _title_like(block.text)


def _is_prose(text: str) -> bool:
    return len(text) >= MIN_ABSTRACT_CHARS and len(text.split()) >= MIN_ABSTRACT_WORDS


# --- reading a card ------------------------------------------------------------------------


def _meta_kind(line: Line) -> str | None:
    text = _without_comment_counts(line)
    if not text or text == SEPARATOR:
        return "separator" if text == SEPARATOR else None
    if AUTHOR_COUNT.search(text) and len(text) < 60:
        return "authors"
    if UPVOTES.fullmatch(text) and (text != "-" or any(is_upvote_link(l.url) for l in line.links)):
        return "upvotes"
    if any(_date_match(segment) for segment in text.split(SEPARATOR)):
        return "date"
    return None


def _without_comment_counts(line: Line) -> str:
    """The line's text without the comment counter HF prints after the date (`Apr 9 2`)."""
    text = line.text
    if line.links and all(is_comment_link(link.url) for link in line.links) and text.isdigit():
        return ""  # the counter on a line of its own, its URL on the next (plain-text captures)
    for link in line.links:
        counter = is_comment_link(link.url) or (link.text.isdigit() and text != link.text)
        if counter and link.text and text.endswith(link.text):
            # `May 29[6](...#community)`: a number linked after the date counts comments
            text = text[: -len(link.text)].rstrip()
    return text.strip()


def _date_match(segment: str) -> re.Match[str] | None:
    """`Apr 3`, `Sep 12, 2023`, `Published on Apr 3, 2026`, `Feb 27 3` (date and upvotes)."""
    text = DATE_PREFIX.sub("", " ".join(segment.split()))
    match = DATE_LINE.fullmatch(text)
    return match if match and month_number(match.group("month")) else None


def _read_date(segment: str, reference: date) -> tuple[date, int | None] | None:
    match = _date_match(segment)
    return read_date_line(match.group(0), reference) if match else None


def _paper(card: Card, reference: date, upvotes_by_id: dict[str, int | None]) -> Paper | None:
    abstract = ""
    author_count: int | None = None
    organization: str | None = None
    published: date | None = None
    upvotes: int | None = None
    arxiv_id = card.arxiv_id
    previous: Block | None = None
    for position, block in enumerate(card.body):
        following = card.body[position + 1] if position + 1 < len(card.body) else None
        kinds = [_meta_kind(line) for line in block.lines]
        if not abstract:
            abstract = _prose(block, kinds)
        for line, kind in zip(block.lines, kinds):
            line_ids = {found for link in line.links if (found := arxiv_id_in(link.url))}
            if line_ids and (arxiv_id is None or arxiv_id not in line_ids):
                break  # the next card begins inside this paragraph (captures without blank lines)
            text = _without_comment_counts(line)
            # The first reading of each field wins: the card's own meta line comes before
            # whatever page text follows the last card.
            if kind == "authors" and author_count is None:
                author_count = int(AUTHOR_COUNT.search(text).group("count"))  # type: ignore[union-attr]
            elif kind == "upvotes" and upvotes is None:
                upvotes = _count(UPVOTES.fullmatch(text).group("count"))  # type: ignore[union-attr]
            elif kind == "date" and published is None:
                for segment in text.split(SEPARATOR):
                    read = _read_date(segment, reference)
                    if read:
                        published = read[0]
                        upvotes = read[1] if upvotes is None else upvotes
                        break
            if kind in (None, "date"):  # `[Acme](/acme) · Apr 3`, not `[* 3 authors][14]`
                organization = organization or _organization(line, block, previous, following)
        if arxiv_id is None:
            ids = _ids(block)
            arxiv_id = ids.pop() if len(ids) == 1 else None
        previous = block
    if arxiv_id is None and not abstract:
        return None
    if arxiv_id is not None and upvotes_by_id.get(arxiv_id) is not None:
        upvotes = upvotes_by_id[arxiv_id] if upvotes is None else upvotes
    url = card.url if card.url.startswith(("http://", "https://")) else None
    if url is None and arxiv_id is None:
        links = [link for block in card.body for line in block.lines if (link := _card_link(line))]
        url = links[0].url if links and links[0].url.startswith(("http://", "https://")) else None
    return Paper(
        title=card.title_text,
        abstract=abstract,
        arxiv_id=arxiv_id,
        author_count=author_count,
        organization=organization,
        published=published,
        upvotes=upvotes,
        url=None if arxiv_id else url,
    )


def _prose(block: Block, kinds: list[str | None]) -> str:
    """The block's leading prose lines (an abstract), before any meta line or code link."""
    lines: list[str] = []
    for line, kind in zip(block.lines, kinds):
        if kind is not None or _card_link(line):
            break
        lines.append(line.text)
    text = " ".join(lines)
    return text if _is_prose(text) else ""


def _organization(
    line: Line, block: Block, previous: Block | None, following: Block | None
) -> str | None:
    """An organisation's profile link on the meta line (`[AI at Meta](.../facebook) · Jan 3`).

    A profile link is the organisation only when a `·` follows it (on its line, the next
    line, or the next block): the submitter's profile link has none.
    """
    profiles = [
        link for link in line.links if is_profile_link(link.url) or link.url == MISSING_REFERENCE
    ]
    if len(profiles) != 1 or SUBMITTED_BY.match(line.text):
        return None
    if previous is not None and SUBMITTED_BY.match(previous.text):
        return None
    lines = list(block.lines)
    after = lines[lines.index(line) + 1 :] or (list(following.lines) if following else [])
    if SEPARATOR not in line.text and not (after and after[0].text.startswith(SEPARATOR)):
        return None
    name = LEADING_PLACEHOLDERS.sub("", profiles[0].text or line.text).strip(" ·")
    return name or None


def _count(text: str) -> int | None:
    if text == "-":
        return None
    text = text.replace(",", "").lower()
    if text.endswith("k"):
        return int(float(text[:-1]) * 1000)
    return int(float(text))


def _upvote_links(blocks: list[Block]) -> dict[str, int | None]:
    """Upvote buttons anywhere (`[101](/login?next=/papers/<id>)`): by arXiv id."""
    found: dict[str, int | None] = {}
    for block in blocks:
        for line in block.lines:
            match = UPVOTES.fullmatch(line.text)
            if not match:
                continue
            for link in line.links:
                arxiv_id = arxiv_id_in(link.url)
                if arxiv_id and is_upvote_link(link.url):
                    found.setdefault(arxiv_id, _count(match.group("count")))
    return found


def _merged(first: Paper, second: Paper) -> Paper:
    """The same paper shown twice: the first as shown, gaps filled from the second."""
    filled = {
        name: getattr(second, name)
        for name in ("abstract", "author_count", "organization", "published", "upvotes", "url")
        if not getattr(first, name) and getattr(second, name)
    }
    if len(second.abstract) > len(first.abstract):
        filled["abstract"] = second.abstract
    return replace(first, **filled)
