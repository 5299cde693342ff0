"""Dump parsers, one module per format, and the detection that picks one from the content.

    parse_dump(text, source_name=..., fallback_date=...) -> ParsedDump

The file's extension is never consulted: a JSON capture saved as `.txt` is still JSON. Each
format module offers `FORMAT`, `recognises(text)` and `parse(text, fallback_date=...)`; they
are tried in `PARSERS` order, most specific first (the Markdown capture also carries the page
header the text parser looks for). Everything here is pure: the caller reads the file and
passes its text, its name for messages, and the fallback date (`fallback_date_for`).

Only `DumpError` leaves `parse_dump`: a text no parser recognises, or one the chosen parser
cannot read as a whole. Malformed entries inside a readable dump are `ParsedDump.issues`.
"""

from __future__ import annotations

import unicodedata
from datetime import date
from typing import Protocol

from newsletter.errors import DumpError
from newsletter.models import ParsedDump
from newsletter.sources import arxiv_feed, hf_html, hf_json, hf_markdown, hf_text
from newsletter.sources.dates import fallback_date_for, listing_year_hint, resolve_yearless

__all__ = [
    "FORMATS",
    "DumpParser",
    "detect_format",
    "fallback_date_for",
    "listing_year_hint",
    "parse_dump",
    "resolve_yearless",
]


class DumpParser(Protocol):
    """What each format module provides (modules satisfy this protocol structurally)."""

    FORMAT: str

    def recognises(self, text: str) -> bool: ...

    def parse(self, text: str, *, fallback_date: date) -> ParsedDump: ...


# JSON, feeds and HTML announce themselves in their first characters. A capture with paper
# links is read by the card finder; the seeds' own text form (no links) by hf_text.
PARSERS: tuple[DumpParser, ...] = (hf_json, arxiv_feed, hf_html, hf_markdown, hf_text)
FORMATS: tuple[str, ...] = tuple(parser.FORMAT for parser in PARSERS)
SHOWN_LINE_CHARS = 80
BYTE_ORDER_MARK = "\ufeff"


def parse_dump(text: str, *, source_name: str, fallback_date: date) -> ParsedDump:
    """Detect the dump's format from its content and parse it.

    `fallback_date` is the listing date when the dump does not say which year it is from:
    pass `fallback_date_for(file_name, mtime_date)`. Raises `DumpError` naming `source_name`.
    """
    text = _normalised(text)
    parser = _parser_for(text)
    if parser is None:
        raise DumpError(_unrecognised_reason(text), path=source_name, line=_first_line_number(text))
    try:
        return parser.parse(text, fallback_date=fallback_date)
    except DumpError as exc:
        raise exc.at(source_name) from exc


def detect_format(text: str) -> str | None:
    """The `FORMAT` name of the parser that would read `text`, or None."""
    parser = _parser_for(_normalised(text))
    return parser.FORMAT if parser else None


def _normalised(text: str) -> str:
    """One newline convention, no BOM (line numbers match an editor's), composed Unicode.

    NFC makes a title saved decomposed (`o` + combining diaeresis, as macOS tools may write
    it) the same string as the composed one, so the same paper keeps one title.
    """
    text = text.removeprefix(BYTE_ORDER_MARK).replace("\r\n", "\n").replace("\r", "\n")
    return unicodedata.normalize("NFC", text)


def _parser_for(text: str) -> DumpParser | None:
    return next((parser for parser in PARSERS if parser.recognises(text)), None)


def _first_line_number(text: str) -> int | None:
    lines = text.split("\n")
    return next((number for number, line in enumerate(lines, 1) if line.strip()), None)


def _unrecognised_reason(text: str) -> str:
    number = _first_line_number(text)
    if number is None:
        return "not a recognised dump: the file is empty"
    first = text.split("\n")[number - 1].strip()
    if len(first) > SHOWN_LINE_CHARS:
        first = first[:SHOWN_LINE_CHARS] + "..."
    return (
        "not a recognised dump: no paper card found (expected an HF papers capture as text, "
        "Markdown, HTML or JSON, or an arXiv feed); "
        f"first line was {first!r}"
    )
