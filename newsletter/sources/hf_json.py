"""The HF daily papers API response (`/api/daily_papers`) saved as JSON.

Shape: a list of objects, each with a `paper` object (`id` = arXiv id, `title`, `summary`,
`authors` = objects with `name`, `upvotes`, `publishedAt`) and the day it was listed as a
top-level `publishedAt`. Extra fields are ignored; an item without a `paper` object is read as
the paper itself, and top-level `title`/`summary` fill in for missing ones.

Items have no line numbers that mean anything to a JSON reader, so an item's `DumpIssue.line`
is its 1-based position in the list (item 1 is the first) and the reason says "item N" too.
A text that is not JSON, or JSON that is not a list, is a `DumpError`; so is a non-empty list
none of whose items is a paper. An empty list is a day without papers, not an error.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from typing import Any

from newsletter.errors import DumpError
from newsletter.models import DumpIssue, Paper, ParsedDump

FORMAT = "hf-json"
# A list of objects or lists (or an empty list), or an object with a string key: enough to
# tell JSON from Markdown that also starts with "[" (`[![badge](...)]`, `[1]: https://...`).
JSON_START = re.compile(r"\s*(?:\[\s*[\[{\]]|\{\s*[\"}])")
ARXIV_ID = re.compile(
    r"(?:arxiv:)?(?P<id>[0-9]{4}\.[0-9]{4,5}|[a-z][a-z.-]*(?:\.[A-Z]{2})?/[0-9]{7})(?:v[0-9]+)?",
    re.ASCII | re.IGNORECASE,
)


class EntryError(ValueError):
    """One item is unusable; it becomes a DumpIssue, not a DumpError."""


def recognises(text: str) -> bool:
    """True when the text starts like a JSON list of objects or a JSON object."""
    return JSON_START.match(text) is not None


def parse(text: str, *, fallback_date: date) -> ParsedDump:
    """Read an API response. `fallback_date` is unused: every date here carries its year."""
    del fallback_date  # same signature as the other parsers; ISO timestamps need no year rule
    data = _load(text)
    if not isinstance(data, list):
        raise DumpError(f"expected a JSON list of daily-paper objects, found {_kind(data)}", line=1)
    papers: list[Paper] = []
    issues: list[DumpIssue] = []
    listed: list[date] = []
    for number, item in enumerate(data, start=1):
        try:
            papers.append(_paper(item))
        except EntryError as exc:
            issues.append(DumpIssue(number, f"item {number}: {exc}; skipped"))
            continue
        day = _iso_date(item.get("publishedAt")) if isinstance(item, dict) else None
        if day is not None:
            listed.append(day)
    if data and not papers:
        raise DumpError(f"no usable paper in the JSON list; {issues[0].reason}", line=1)
    return ParsedDump(FORMAT, tuple(papers), max(listed, default=None), tuple(issues))


def _load(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DumpError(f"invalid JSON: {exc.msg} (column {exc.colno})", line=exc.lineno) from exc
    except (ValueError, RecursionError) as exc:
        # ValueError: an integer longer than Python's digit limit; RecursionError: deep nesting.
        raise DumpError(f"unreadable JSON: {exc}", line=1) from exc


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"


def _paper(item: object) -> Paper:
    if not isinstance(item, dict):
        raise EntryError(f"expected an object, found {_kind(item)}")
    paper = item.get("paper", item)
    if not isinstance(paper, dict):
        raise EntryError(f"'paper' should be an object, found {_kind(paper)}")
    title = _text(paper.get("title")) or _text(item.get("title"))
    if not title:
        raise EntryError("no title")
    authors = _authors(paper.get("authors"))
    return Paper(
        title=title,
        abstract=_text(paper.get("summary")) or _text(item.get("summary")),
        arxiv_id=_arxiv_id(paper.get("id")),
        authors=authors,
        author_count=len(authors) if authors else None,
        organization=_organization(paper.get("organization"))
        or _organization(item.get("organization")),
        published=_iso_date(paper.get("publishedAt")) or _iso_date(item.get("publishedAt")),
        upvotes=_count(paper.get("upvotes")),
    )


def _text(value: object) -> str:
    """A string field with its whitespace (arXiv line wrapping) folded; "" when absent."""
    return " ".join(value.split()) if isinstance(value, str) else ""


def _arxiv_id(value: object) -> str | None:
    """The arXiv id without version (`2404.12345v2` -> `2404.12345`), or None if not one."""
    if not isinstance(value, str):
        return None
    match = ARXIV_ID.fullmatch(value.strip())
    return match.group("id") if match else None


def _authors(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    names = (entry.get("name") if isinstance(entry, dict) else entry for entry in value)
    return tuple(name for name in (_text(name) for name in names) if name)


def _organization(value: object) -> str | None:
    if isinstance(value, dict):
        value = value.get("fullname") or value.get("name")
    return _text(value) or None


def _count(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _iso_date(value: object) -> date | None:
    """The calendar date of an ISO 8601 timestamp (`2025-04-14T12:00:00.000Z`), or None."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.strip()).date()
    except ValueError:
        return None
