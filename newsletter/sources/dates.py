"""Dates in dumps: month names, yearless dates, and the listing date a file name gives.

The HF listing prints dates without a year for the current year (`Jan 17`) and with one for
earlier years (`Oct 9, 2025`). Every parser resolves yearless dates with one rule, kept here:
a date without a year belongs to the listing's year, or to the year before if that would put it
after the listing date. The listing date itself comes from the dump when it says so, else from
the caller's fallback date (a `YYYY-MM-DD` in the file name, else the file's modification date;
see `fallback_date_for`). Pure functions: no clock, no file system.
"""

from __future__ import annotations

import re
from datetime import MINYEAR, date

MONTHS: dict[str, int] = {
    "jan": 1, "january": 1,
    "feb": 2, "february": 2,
    "mar": 3, "march": 3,
    "apr": 4, "april": 4,
    "may": 5,
    "jun": 6, "june": 6,
    "jul": 7, "july": 7,
    "aug": 8, "august": 8,
    "sep": 9, "sept": 9, "september": 9,
    "oct": 10, "october": 10,
    "nov": 11, "november": 11,
    "dec": 12, "december": 12,
}  # fmt: skip
# Feb 29 may sit up to eight years back (1896 -> 1904); no other date needs more than one.
MAX_YEARS_BACK = 8
# `Jan 17`, `Oct 9, 2025`, `Feb 27 3`: HF's date line; a trailing number is the upvote count.
DATE_LINE = re.compile(
    r"(?P<month>[A-Za-z]{3,9})\.? (?P<day>[0-9]{1,2})"
    r"(?:, (?P<year>[0-9]{4}))?(?: (?P<upvotes>[0-9]{1,9}))?",
    re.ASCII,
)
FILE_NAME_DATE = re.compile(r"(?<![0-9])([0-9]{4})-([0-9]{2})-([0-9]{2})(?![0-9])")


def month_number(name: str) -> int | None:
    """The month an English name or abbreviation (`Jan`, `Sept`, `March`) stands for."""
    return MONTHS.get(name.strip().rstrip(".").casefold())


def resolve_yearless(month: int, day: int, listing: date) -> date | None:
    """The latest `month`/`day` not after `listing`: the listing's year, else the year before.

    Returns None when no year makes it a real date (`Feb 30`). Feb 29 resolves to the latest
    leap year not after the listing date, which is what the rule means when the listing's own
    year has no Feb 29.
    """
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    for year in range(listing.year, max(MINYEAR, listing.year - MAX_YEARS_BACK) - 1, -1):
        try:
            candidate = date(year, month, day)
        except ValueError:
            continue
        if candidate <= listing:
            return candidate
    return None


def read_date_line(text: str, reference: date) -> tuple[date, int | None] | None:
    """`Jan 17`, `Oct 9, 2025` or `Feb 27 3` -> (date, upvotes); None if not a real date.

    Yearless dates resolve against `reference` (the listing date) with `resolve_yearless`.
    A number after the day without a comma is the upvote count, never a year.
    """
    match = DATE_LINE.fullmatch(" ".join(text.split()))
    month = month_number(match.group("month")) if match else None
    if match is None or month is None:
        return None
    day = int(match.group("day"))
    upvotes = int(match.group("upvotes")) if match.group("upvotes") else None
    if match.group("year") is None:
        resolved = resolve_yearless(month, day, reference)
    else:
        try:
            resolved = date(int(match.group("year")), month, day)
        except ValueError:
            resolved = None
    return (resolved, upvotes) if resolved else None


def listing_year_hint(file_name: str) -> date | None:
    """The listing date a file name carries (`hf-2026-04-15.txt`), or None.

    The last valid `YYYY-MM-DD` in the name wins, so a folder-style prefix does not shadow the
    file's own date. Despite the name it returns the whole date: it is the listing date, and
    its year is the year of every yearless date in the dump.
    """
    found: date | None = None
    for match in FILE_NAME_DATE.finditer(file_name):
        year, month, day = (int(part) for part in match.groups())
        try:
            found = date(year, month, day)
        except ValueError:
            continue
    return found


def fallback_date_for(file_name: str, modified: date) -> date:
    """The `fallback_date` to pass to `parse_dump`: the name's date, else the file's mtime date."""
    return listing_year_hint(file_name) or modified


# `retrieved: 2026-10-02`, `- Captured (UTC): 2026-06-29T16:31:22`, `exported: 2026-07-28`,
# `created: 2026-04-15T09:12:44`: the day a reader tool says it captured the page.
CAPTURE_DATE = re.compile(
    r"^[\s>*_-]*(?:retrieved|captured|exported|saved|created|fetched|scraped|published time"
    r"|date)\b[^:\n]{0,12}:[*_\s]*(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})",
    re.IGNORECASE | re.MULTILINE,
)
CAPTURE_HEADER_CHARS = 2000  # front matter and header blocks sit at the top of the file


def capture_date(text: str) -> date | None:
    """The capture day a reader tool wrote in the file's header, or None.

    It stands in for the listing's year when the file name has no date: better than the
    file's modification time, which changes when the file is copied.
    """
    match = CAPTURE_DATE.search(text[:CAPTURE_HEADER_CHARS])
    if match is None:
        return None
    try:
        return date.fromisoformat(match.group("date"))
    except ValueError:
        return None
