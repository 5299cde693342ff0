"""Plain values that travel between the stages: papers, parsed dumps, ranked picks, plans,
outcomes, the sender, and the delivery states of the ledger.

Nothing here does I/O. Parsers produce `Paper`s, the store keeps them, the ranker turns
them into `Ranked` values, the planner into `Plan`s, the renderer reads those, and a day's
run ends in one `Outcome` per subscriber.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from newsletter.links import LinkSettings
    from newsletter.signing import DkimKey
    from newsletter.subscribers import Subscriber

ARXIV_PREFIX = "arxiv:"
TITLE_PREFIX = "title:"
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalise_title(title: str) -> str:
    """Fold a title to the form used to recognise the same paper in two dumps."""
    folded = unicodedata.normalize("NFKC", title).casefold()
    return " ".join(_NON_WORD.sub(" ", folded).split())


def paper_identity(title: str, arxiv_id: str | None = None) -> str:
    """A paper's stable id: its arXiv id when known, else a hash of its normalised title."""
    if arxiv_id:
        return ARXIV_PREFIX + arxiv_id
    digest = hashlib.sha256(normalise_title(title).encode("utf-8")).hexdigest()[:20]
    return TITLE_PREFIX + digest


@dataclass(frozen=True)
class Paper:
    """One paper as a dump describes it. Optional fields are None when the dump does not say."""

    title: str
    abstract: str
    arxiv_id: str | None = None
    authors: tuple[str, ...] = ()
    author_count: int | None = None
    organization: str | None = None
    published: date | None = None
    upvotes: int | None = None
    url: str | None = None
    # The id the store filed it under. It differs from the computed identity only when a paper
    # first seen without an arXiv id later gained one: the first id stays, so the ledger holds.
    stored_id: str | None = field(default=None, compare=False)

    @property
    def paper_id(self) -> str:
        return self.stored_id or paper_identity(self.title, self.arxiv_id)

    @property
    def title_key(self) -> str:
        return paper_identity(self.title)

    @property
    def byline(self) -> str:
        """Who wrote it, as far as the dump tells: names, an organisation or a count."""
        if self.authors:
            shown = ", ".join(self.authors[:3])
            more = len(self.authors) - 3
            return f"{shown} and {more} more" if more > 0 else shown
        if self.organization:
            return self.organization
        if self.author_count is not None:
            return f"{self.author_count} author" + ("" if self.author_count == 1 else "s")
        return ""

    @property
    def link(self) -> str:
        """Where the reader goes: the dump's link, the HF paper page, or a title search."""
        if self.url:
            return self.url
        if self.arxiv_id:
            return f"https://huggingface.co/papers/{self.arxiv_id}"
        from urllib.parse import quote_plus

        return "https://huggingface.co/papers?q=" + quote_plus(self.title)


@dataclass(frozen=True)
class DumpIssue:
    """Something a parser skipped inside an otherwise readable dump (line is 1-based)."""

    line: int
    reason: str


@dataclass(frozen=True)
class ParsedDump:
    """What a parser made of one file."""

    format: str
    papers: tuple[Paper, ...]
    listing_date: date | None = None
    issues: tuple[DumpIssue, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class KeywordMatch:
    """One subscriber keyword that matched a paper, and in which fields ("title", "abstract")."""

    keyword: str
    fields: tuple[str, ...]


class Ranked(NamedTuple):
    """A paper scored for one profile. `picked` means it clears the floor and the top-N cut.

    A named tuple rather than a frozen dataclass: the ranker makes ~100,000 of them for 10,000
    subscribers, and a tuple is built in a third of the time (0.31 µs against 0.85 µs)."""

    paper: Paper
    score: float
    matched: tuple[KeywordMatch, ...]
    picked: bool = False


class DeliveryState(StrEnum):
    """Where a (subscriber, day) digest stands in the ledger.

    planned -> sending -> sent; a transient failure that outlasts the quick retries ->
    deferred (with the time of its next attempt) -> sending ...; a permanent refusal, or a
    deferral past its lifetime -> failed. `abandoned`: an earlier day's digest that never
    arrived and gave its papers back to the next one.
    """

    PLANNED = "planned"
    SENDING = "sending"
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    ABANDONED = "abandoned"


@dataclass(frozen=True)
class Trending:
    """The day's most-upvoted papers for one subscriber (never a keyword pick)."""

    papers: tuple[Paper, ...]
    by_upvotes: bool  # False: the listing gave no upvote counts; these are its first papers


class OutcomeStatus(StrEnum):
    """What a run did for one subscriber (a run's view; the ledger keeps `DeliveryState`)."""

    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    SKIPPED = "skipped"
    PREVIEWED = "previewed"


@dataclass(frozen=True)
class Plan:
    """What one subscriber gets for one day, or why nothing (`reason`)."""

    subscriber: Subscriber
    day: date
    picks: tuple[Ranked, ...]
    message_id: str
    reason: str = ""  # set when nothing is to be sent
    digest_id: int | None = None  # the ledger row, when one exists that is not `sent`
    trending: Trending | None = None  # the day's most upvoted papers, when the subscriber asks
    rounds: int = 0  # delivery rounds the ledger row has had (for the retry backoff)
    created_at: datetime | None = None  # when the ledger row was written (its lifetime starts)

    @property
    def sendable(self) -> bool:
        return not self.reason


@dataclass(frozen=True, slots=True)
class Outcome:
    subscriber: str
    status: OutcomeStatus
    papers: int = 0
    detail: str = ""
    subject: str = ""
    attempts: int = 0  # SMTP attempts spent in this run (sent, deferred or failed)


@dataclass(frozen=True)
class Sender:
    """Who digests come from and how they are signed and linked: a plain value built from
    the settings at the edge, so no stage below the CLI and the scheduler reads `Settings`."""

    from_address: str
    from_name: str
    links: LinkSettings
    dkim: DkimKey | None = None

    @property
    def domain(self) -> str:
        return self.from_address.rpartition("@")[2]
