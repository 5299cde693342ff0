"""The HF Daily Papers page as scrapers capture it in Markdown: recognising it, reading it.

Each paper opens with a heading that links its HF page, inline or reference-style::

    ### [Title](https://huggingface.co/papers/2404.12345)     or  ### [Title][3]
    [The abstract ...](https://huggingface.co/papers/2404.12345)
    * [![avatar](...) - 5 authors](https://huggingface.co/papers/2404.12345)
    [101](https://huggingface.co/login?next=...)               <- upvotes
    [3]: https://huggingface.co/papers/2404.12345             <- reference definitions

A line ending in a backslash (`\\` or `\\\\`) continues on the next one, and so does a link
whose brackets are still open. Inside an entry (heading to next heading) every logical line is
read for what it is: an `N authors` byline, a bare number (upvotes), a date line (`Jan 17`,
`Oct 9, 2025`), or prose; the abstract is the longest prose paragraph. The arXiv id comes from
the heading's link (`/papers/<id>` or `arxiv.org/abs/<id>`), else from any link in the entry.
An entry without abstract is a `DumpIssue`; a capture without any paper is a `DumpError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from newsletter.errors import DumpError
from newsletter.models import DumpIssue, Paper, ParsedDump
from newsletter.sources.dates import DATE_LINE, month_number, read_date_line

FORMAT = "hf-markdown"
# Link text: escaped characters, plain ones, or one level of nested brackets (`![img](..)`).
_TEXT = r"(?:\\.|[^\[\]\\\n]|\[(?:\\.|[^\[\]\\\n])*\])*"
_URL = r"<?(?P<url>[^()\s<>]*(?:\([^()\s]*\)[^()\s<>]*)*)>?(?:\s+\"[^\"\n]*\")?"
LINK = re.compile(rf"\[(?P<text>{_TEXT})\](?:\({_URL}\)|\[(?P<ref>[^\[\]\n]*)\])")
HEADING = re.compile(
    rf"#{{1,6}}\s*\[(?P<text>{_TEXT})\](?:\({_URL}\)|\[(?P<ref>[^\[\]\n]*)\])\s*#*"
)
REFERENCE = re.compile(r"\s{0,3}\[(?P<label>[^\[\]\n]+)\]:\s*<?(?P<url>[^\s<>]+)>?.*")
IMAGE = re.compile(r"!\[[^\[\]\n]*\](?:\([^()\n]*\)|\[[^\[\]\n]*\])")
PAPER_URL = re.compile(
    r"(?:huggingface\.co/papers/|arxiv\.org/(?:abs|pdf)/)(?P<id>[0-9]{4}\.[0-9]{4,5})(?![0-9])",
    re.ASCII,
)
AUTHOR_COUNT = re.compile(r"(?<![0-9])(?P<count>[0-9]{1,6})\s+authors?\b", re.ASCII | re.I)
LINE_MARKERS = re.compile(r"\s*(?:(?:[-*+>]|[0-9]{1,9}[.)]|#{1,6})\s+)*")
ESCAPED = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|<>~])")
DATE_PREFIX = re.compile(r"(?:published|submitted)\s+on\s+", re.I)
SKIPPED_PROSE = re.compile(r"(?:submitted by\b|·$)", re.I)


@dataclass(frozen=True)
class Entry:
    """One paper heading (1-based line, title, link) and the lines under it."""

    line: int
    title: str
    url: str
    body: list[str]


def recognises(text: str) -> bool:
    """True when some heading links a paper page (inline, or through a reference definition)."""
    lines = text.split("\n")
    references = _references(lines)
    return any(_paper_url(heading, references) for heading in _headings(lines))


def parse(text: str, *, fallback_date: date) -> ParsedDump:
    """Read a Markdown capture; yearless dates resolve against the listing date."""
    lines = text.split("\n")
    references = _references(lines)
    entries = _entries(lines, references)
    if not entries:
        raise DumpError("no paper heading (### [Title](https://huggingface.co/papers/...))", line=1)
    listing_date = _listing_date(lines[: entries[0].line - 1], fallback_date)
    reference = listing_date or fallback_date
    papers: list[Paper] = []
    issues: list[DumpIssue] = []
    for entry in entries:
        paper = _paper(entry, references, reference)
        if paper is None:
            issues.append(DumpIssue(entry.line, f"title {entry.title!r} has no abstract; skipped"))
        else:
            papers.append(paper)
    if not papers:
        raise DumpError(f"no paper with an abstract; {issues[0].reason}", line=issues[0].line)
    return ParsedDump(FORMAT, tuple(papers), listing_date, tuple(issues))


def _references(lines: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in lines:
        match = REFERENCE.fullmatch(line)
        if match:
            found.setdefault(match.group("label").casefold(), match.group("url"))
    return found


def _headings(lines: list[str]) -> list[tuple[int, re.Match[str]]]:
    return [
        (index, match)
        for index, line in enumerate(lines)
        if line.lstrip().startswith("#") and (match := HEADING.fullmatch(line.strip()))
    ]


def _link_url(match: re.Match[str], references: dict[str, str]) -> str:
    if match.group("url") is not None:
        return match.group("url")
    label = match.group("ref") or match.group("text")
    return references.get(label.casefold(), "")


def _paper_url(heading: tuple[int, re.Match[str]], references: dict[str, str]) -> bool:
    return PAPER_URL.search(_link_url(heading[1], references)) is not None


def _entries(lines: list[str], references: dict[str, str]) -> list[Entry]:
    """Each paper heading with the lines up to the next heading (reference lines dropped)."""
    headings = [heading for heading in _headings(lines) if _paper_url(heading, references)]
    entries = []
    for position, (index, match) in enumerate(headings):
        end = headings[position + 1][0] if position + 1 < len(headings) else len(lines)
        body = [line for line in lines[index + 1 : end] if not REFERENCE.fullmatch(line)]
        title = _plain(match.group("text"))
        entries.append(Entry(index + 1, title, _link_url(match, references), body))
    return entries


def _plain(markdown: str) -> str:
    """Readable text: images dropped, links replaced by their text, escapes undone."""
    text = IMAGE.sub(" ", markdown)
    for _ in range(2):  # a link inside a link's text is the deepest nesting a capture has
        text = LINK.sub(lambda match: match.group("text"), text)
    return " ".join(ESCAPED.sub(r"\1", text).split())


def _logical_lines(body: list[str]) -> list[str | None]:
    """Physical lines joined across trailing backslashes and open brackets; None for blanks."""
    logical: list[str | None] = []
    pending = ""
    for line in body:
        stripped = line.strip()
        if not stripped:  # a blank line ends a paragraph, even one with a bracket left open
            if pending:
                logical.append(LINE_MARKERS.sub("", pending, count=1))
                pending = ""
            logical.append(None)
            continue
        continued = stripped.endswith("\\")
        pending = f"{pending} {stripped.rstrip(chr(92)).strip()}".strip()
        if not continued and _open_brackets(pending) <= 0:
            logical.append(LINE_MARKERS.sub("", pending, count=1))
            pending = ""
    if pending:
        logical.append(LINE_MARKERS.sub("", pending, count=1))
    return logical


def _open_brackets(text: str) -> int:
    unescaped = re.sub(r"\\.", "", text)
    return unescaped.count("[") - unescaped.count("]")


def _paper(entry: Entry, references: dict[str, str], reference: date) -> Paper | None:
    author_count: int | None = None
    upvotes: int | None = None
    published: date | None = None
    prose: list[str] = []
    paragraph: list[str] = []
    for logical in [*_logical_lines(entry.body), None]:
        plain = _plain(logical) if logical else ""
        authors = AUTHOR_COUNT.search(plain)
        read = read_date_line(DATE_PREFIX.sub("", plain), reference) if plain else None
        if authors:
            author_count = int(authors.group("count"))
        elif plain.isascii() and plain.isdigit() and len(plain) <= 9:
            upvotes = int(plain)
        elif read:
            published = read[0]
            upvotes = read[1] if read[1] is not None else upvotes
        elif plain and not SKIPPED_PROSE.match(plain):
            paragraph.append(plain)
            continue
        if paragraph:
            prose.append(" ".join(paragraph))
            paragraph = []
    if not prose:
        return None
    arxiv_id = _arxiv_id(entry, references)
    return Paper(
        title=entry.title,
        abstract=max(prose, key=len),
        arxiv_id=arxiv_id,
        author_count=author_count,
        published=published,
        upvotes=upvotes,
        url=None if arxiv_id else entry.url or None,
    )


def _arxiv_id(entry: Entry, references: dict[str, str]) -> str | None:
    urls = [entry.url]
    urls += [_link_url(match, references) for match in LINK.finditer("\n".join(entry.body))]
    for url in urls:
        match = PAPER_URL.search(url)
        if match:
            return match.group("id")
    return None


def _listing_date(header: list[str], fallback_date: date) -> date | None:
    """The first line before the papers that is a bare month and day (`Apr 15`)."""
    for line in header:
        plain = _plain(LINE_MARKERS.sub("", line.strip(), count=1)).strip("*_ ")
        match = DATE_LINE.fullmatch(plain)
        if match and not match.group("upvotes") and month_number(match.group("month")):
            read = read_date_line(plain, fallback_date)
            return read[0] if read else None
    return None
