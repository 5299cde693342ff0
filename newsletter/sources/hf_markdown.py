"""The HF papers pages captured as Markdown or plain text with links, by any crawler or reader.

Covers what tools write: YAML front matter, `Title:` / `URL Source:` / `Markdown Content:`
header blocks, page chrome before and after the listing, inline and reference-style links
(with or without their definitions), avatar images, titles broken over two lines, headings of
any level, plain text with each link's URL on its own line, structured extractions that repeat
every card. The text is parsed as Markdown (blocks.py) and the cards found by their structure
(cards.py). Recognised when at least one paper card is found; a capture with none is refused.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache

from newsletter.errors import DumpError
from newsletter.models import ParsedDump
from newsletter.sources.blocks import Block, markdown_blocks
from newsletter.sources.cards import find_papers, listing_date

FORMAT = "hf-markdown"


def recognises(text: str) -> bool:
    """True when a paper card is found (the listing may start anywhere in the file)."""
    return bool(find_papers(_blocks(text), date.today()))


def parse(text: str, *, fallback_date: date) -> ParsedDump:
    """Read a Markdown capture; yearless dates resolve against the listing date."""
    blocks = _blocks(text)
    listed = listing_date(blocks, fallback_date)
    papers = find_papers(blocks, listed or fallback_date)
    if not papers:
        raise DumpError(
            "no paper cards found (a title linking its paper, with an abstract or a meta line)",
            line=1,
        )
    return ParsedDump(FORMAT, tuple(papers), listed)


@lru_cache(maxsize=2)
def _blocks(text: str) -> list[Block]:
    """Parsed once for `recognises` and `parse` (detection reads the whole capture)."""
    return markdown_blocks(text)
