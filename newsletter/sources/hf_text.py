"""The HF Daily Papers page copied as plain text: recognising it and reading its papers.

Shape (design.md, "Dump formats")::

    new / Get trending papers in your email inbox! / Subscribe / Daily Papers /
    byAK and the research community        <- page header, one line each, blank lines between
    Apr 15                                 <- listing date, no year
    <title>
    <abstract>                             <- one line
      • 3 authors                          <- optional metadata block: a byline (an author
    ·                                         count, or an organisation line "<org id> <name>"),
    Feb 27 3                                  a "·" line and a date line with optional upvotes

The metadata block is found by structure alone: a non-blank line, then a `·` line, then a
non-blank line. Titles and abstracts are taken in turn; only after a malformed entry does the
parser look at their shape (see `_orphan_title`) to get back in step. A malformed entry becomes
a `DumpIssue` and is skipped; a text without the header, or with no paper at all, is a
`DumpError`. Line numbers are 1-based in the original text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from newsletter.errors import DumpError
from newsletter.models import DumpIssue, Paper, ParsedDump
from newsletter.sources.dates import DATE_LINE, month_number, read_date_line

FORMAT = "hf-text"
HEADER_LINES = frozenset(
    {"new", "get trending papers in your email inbox!", "subscribe", "daily papers",
     "byak and the research community", "by ak and the research community",
     "get trending papers in your email inbox once a day!", "trending papers"}
)  # fmt: skip
# At least one of these must be in the header: the others are too generic to recognise a page.
HEADER_MARKERS = frozenset(
    {"daily papers", "byak and the research community", "by ak and the research community"}
)
# Without a metadata block, an "abstract" this short is page chrome after the listing
# (`System theme` / `Company`), not a paper.
MIN_ABSTRACT_WORDS = 6
SEPARATOR = "·"
MAX_TITLE_CHARS = 300  # longest arXiv titles are ~250 characters; abstracts are longer
MAX_BYLINE_CHARS = 200  # an organisation line is short; a longer "byline" is misplaced text
AUTHOR_COUNT = re.compile(r"•\s*(?P<count>[0-9]{1,6})\s+authors?", re.ASCII | re.IGNORECASE)
ORG_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*", re.ASCII)


class EntryError(ValueError):
    """One entry is malformed; it becomes a DumpIssue, not a DumpError."""


@dataclass(frozen=True)
class Paragraph:
    """A run of text lines (a title or an abstract), from its first line on."""

    line: int
    text: str


@dataclass(frozen=True)
class Metadata:
    """A byline, `·` and date-line block, at its byline's line."""

    line: int
    byline: str
    date_text: str


Item = Paragraph | Metadata


def recognises(text: str) -> bool:
    """True when the text holds the HF Daily Papers page header (chrome may come first)."""
    return _header_end(text.split("\n")) is not None


def parse(text: str, *, fallback_date: date) -> ParsedDump:
    """Read an HF text capture. Yearless dates resolve against the listing date."""
    lines = text.split("\n")
    header_end = _header_end(lines)
    if header_end is None:
        line = _first_content_line(lines)
        raise DumpError(
            "not an HF Daily Papers text capture: the page header "
            "('Daily Papers', 'byAK and the research community') was not found",
            line=line,
        )
    listing_date, body_start = _listing_date(lines, header_end + 1, fallback_date)
    reference = listing_date or fallback_date
    papers, issues = _read_entries(_items(lines, body_start), reference)
    if not papers:
        detail = f"; first problem at line {issues[0].line}: {issues[0].reason}" if issues else ""
        raise DumpError(
            f"no papers found after the Daily Papers header{detail}", line=header_end + 1
        )
    return ParsedDump(FORMAT, tuple(papers), listing_date, tuple(issues))


def _normalised(line: str) -> str:
    return " ".join(line.split()).casefold()


def _first_content_line(lines: list[str]) -> int:
    return next((index + 1 for index, line in enumerate(lines) if line.strip()), 1)


def _header_end(lines: list[str]) -> int | None:
    """Index of the header's last line: the first run of known header lines holding a marker.

    The run may start anywhere (a reader tool's front matter or the site's navigation may come
    first); blank lines inside it are skipped.
    """
    last: int | None = None
    has_marker = False
    for index, line in enumerate(lines):
        key = _normalised(line)
        if not key:
            continue
        if key in HEADER_LINES:
            last = index
            has_marker = has_marker or key in HEADER_MARKERS
        elif has_marker:
            break
        else:
            last, has_marker = None, False
    return last if has_marker else None


def _listing_date(lines: list[str], start: int, fallback_date: date) -> tuple[date | None, int]:
    """The listing date right after the header, if there is one, and where the papers start."""
    for index in range(start, len(lines)):
        if not lines[index].strip():
            continue
        match = DATE_LINE.fullmatch(" ".join(lines[index].split()))
        if match is None or match.group("upvotes") or not month_number(match.group("month")):
            return None, index
        read = read_date_line(lines[index], fallback_date)
        return (read[0] if read else None), index + 1
    return None, len(lines)


def _items(lines: list[str], start: int) -> list[Item]:
    """Split the body into paragraphs (runs of text lines) and metadata blocks."""
    items: list[Item] = []
    index = start
    while index < len(lines):
        if not lines[index].strip():
            index += 1
        elif _metadata_starts(lines, index):
            items.append(Metadata(index + 1, lines[index].strip(), lines[index + 2].strip()))
            index += 3
        else:
            first = index
            while (
                index < len(lines) and lines[index].strip() and not _metadata_starts(lines, index)
            ):
                index += 1
            text = " ".join(" ".join(line.split()) for line in lines[first:index])
            items.append(Paragraph(first + 1, text))
    return items


def _metadata_starts(lines: list[str], index: int) -> bool:
    return (
        index + 2 < len(lines)
        and bool(lines[index].strip())
        and lines[index].strip() != SEPARATOR
        and lines[index + 1].strip() == SEPARATOR
        and bool(lines[index + 2].strip())
    )


def _read_entries(items: list[Item], reference: date) -> tuple[list[Paper], list[DumpIssue]]:
    """Pair titles with abstracts and attach each following metadata block."""
    reader = _EntryReader(reference)
    for position, item in enumerate(items):
        if isinstance(item, Metadata):
            reader.metadata(item)
        else:
            reader.paragraph(item, items[position + 1 : position + 2])
    reader.finish()
    # Short lines after the last paper without an abstract are the page's footer (`Previous`,
    # `Company`, `TOS` ...) copied with the listing: chrome, not a broken entry.
    issues = [
        issue
        for issue in reader.issues
        if not reader.papers
        or issue.line < reader.last_paper_line
        or not issue.reason.endswith("has no abstract")
    ]
    return reader.papers, issues


class _EntryReader:
    """The pairing state: the pending title and abstract, and what has been read so far."""

    def __init__(self, reference: date) -> None:
        self.reference = reference
        self.papers: list[Paper] = []
        self.issues: list[DumpIssue] = []
        self.title: Paragraph | None = None
        self.abstract: Paragraph | None = None
        self.last_paper_line = 0

    def metadata(self, item: Metadata) -> None:
        """A metadata block closes the pending entry, which must have title and abstract."""
        if self.title is None:
            self.issues.append(DumpIssue(item.line, "metadata block without a title and abstract"))
        elif self.abstract is None:
            self._missing_abstract()
        else:
            try:
                self.papers.append(_paper(self.title, self.abstract, item, self.reference))
                self.last_paper_line = item.line
            except EntryError as exc:
                reason = f"{exc}; entry {self.title.text!r} skipped"
                self.issues.append(DumpIssue(item.line, reason))
        self.title = self.abstract = None

    def paragraph(self, item: Paragraph, following: list[Item]) -> None:
        """A paragraph is a title, its abstract, or (see `_orphan_title`) the next title."""
        if self.title is not None and self.abstract is not None:
            self.finish()  # the previous entry had no metadata block
        if self.title is None:
            problem = _not_a_title(item)
            if problem:
                self.issues.append(DumpIssue(item.line, problem))
            else:
                self.title = item
        elif _orphan_title(item, following):
            self._missing_abstract()
            self.title = item
        else:
            self.abstract = item

    def finish(self) -> None:
        """Close the pending entry as one without metadata."""
        if self.title is not None and self.abstract is not None:
            if len(self.abstract.text.split()) >= MIN_ABSTRACT_WORDS:
                self.papers.append(_paper(self.title, self.abstract, None, self.reference))
                self.last_paper_line = self.abstract.line
        elif self.title is not None:
            self._missing_abstract()
        self.title = self.abstract = None

    def _missing_abstract(self) -> None:
        if self.title is not None:
            reason = f"title {self.title.text!r} has no abstract"
            self.issues.append(DumpIssue(self.title.line, reason))


def _not_a_title(paragraph: Paragraph) -> str | None:
    """Why a paragraph cannot open an entry, or None when it can."""
    if paragraph.text == SEPARATOR:
        return "stray '·' line outside a metadata block"
    match = DATE_LINE.fullmatch(paragraph.text)
    if match and month_number(match.group("month")):
        return f"date line {paragraph.text!r} outside a metadata block"
    if len(paragraph.text) > MAX_TITLE_CHARS:
        return "text without a title (too long for a title, no title before it)"
    return None


def _reads_like_title(text: str) -> bool:
    return len(text) <= MAX_TITLE_CHARS and not text.endswith(".")


def _orphan_title(candidate: Paragraph, following: list[Item]) -> bool:
    """True when `candidate`, expected to be an abstract, is rather the next entry's title.

    That is the case when it reads like a title and the paragraph after it reads like an
    abstract: the pending title then lost its abstract. A short abstract followed by a title,
    or a title followed by metadata, keeps the plain title-then-abstract reading.
    """
    if not _reads_like_title(candidate.text) or not following:
        return False
    after = following[0]
    return isinstance(after, Paragraph) and not _reads_like_title(after.text)


def _paper(title: Paragraph, abstract: Paragraph, meta: Metadata | None, reference: date) -> Paper:
    if meta is None:
        return Paper(title=title.text, abstract=abstract.text)
    author_count, organization = _byline(meta.byline)
    read = read_date_line(meta.date_text, reference)  # `Jan 17`, `Oct 9, 2025`, `Feb 27 3`
    if read is None:
        raise EntryError(f"unreadable date line {meta.date_text!r} in metadata block")
    published, upvotes = read
    return Paper(
        title=title.text,
        abstract=abstract.text,
        author_count=author_count,
        organization=organization,
        published=published,
        upvotes=upvotes,
    )


def _byline(byline: str) -> tuple[int | None, str | None]:
    """`• 3 authors` gives a count; any other line is an organisation (see `organization_name`)."""
    match = AUTHOR_COUNT.fullmatch(byline.strip())
    if match:
        return int(match.group("count")), None
    if len(byline) > MAX_BYLINE_CHARS:
        raise EntryError(f"metadata byline is {len(byline)} characters long, not a byline")
    return None, organization_name(byline)


def organization_name(line: str) -> str:
    """The display name in an organisation line: `facebook AI at Meta` -> `AI at Meta`.

    HF prints the organisation's id (a slug without spaces) and then its display name. The
    first word is dropped when it looks like a slug and something follows it; otherwise the
    whole line is kept, so nothing the dump says is lost.
    """
    text = " ".join(line.split())
    org_id, _, display = text.partition(" ")
    if display and ORG_ID.fullmatch(org_id):
        return display
    return text
