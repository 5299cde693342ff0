"""The HF papers pages saved from a browser as HTML ("Save page as", SingleFile, curl).

The HTML is parsed with selectolax (blocks.py turns its innermost block elements into the
same blocks a Markdown capture gives) and the cards are found by their structure (cards.py).
Scripts, styles and templates are dropped first. Recognised by an `<html>`, `<!doctype html>`
or `<body>` tag near the start of the file, so a Markdown capture carrying a stray `<a id>`
anchor is still read as Markdown.
"""

from __future__ import annotations

import re
from datetime import date

from newsletter.errors import DumpError
from newsletter.models import ParsedDump
from newsletter.sources.blocks import html_blocks
from newsletter.sources.cards import find_papers, listing_date

FORMAT = "hf-html"
HTML_START = re.compile(r"\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)\b", re.I | re.S)


def recognises(text: str) -> bool:
    return HTML_START.match(text[:4096]) is not None


def parse(text: str, *, fallback_date: date) -> ParsedDump:
    blocks = html_blocks(text)
    listed = listing_date(blocks, fallback_date)
    papers = find_papers(blocks, listed or fallback_date)
    if not papers:
        raise DumpError(
            "an HTML page without paper cards (no heading or link to a paper with its abstract)",
            line=1,
        )
    return ParsedDump(FORMAT, tuple(papers), listed)
