"""The pipeline: one function per stage, called by the CLI and the scheduler.

    ingest_dumps   new/changed files in the dumps folder -> papers in the store
    plan_digest    a subscriber's candidates -> ranked picks (or the reason there are none)
    preview        render every plan to files; no transport, no ledger change

Sending (the ledger, the connection pool, the error budget) is `newsletter.sending`.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

from newsletter.errors import ConfigError, DumpError
from newsletter.ingest import dump_files, read_dump
from newsletter.message import compose_message, digest_message_id, keywords_mailto, unsubscribe_mailto
from newsletter.models import Paper, Ranked
from newsletter.ranking import PaperIndex, Profile, Semantic, rank, rank_papers
from newsletter.semantic import Encoder, encoder_for, paper_text, stored_semantic
from newsletter.render import Recipient, RenderedDigest, render_digest
from newsletter.settings import Settings
from newsletter.store import Store
from newsletter.subscribers import Subscriber
from newsletter.unsubscribe import unsubscribe_url

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._@-]+")


# plan -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """What one subscriber gets today, or why nothing."""

    subscriber: Subscriber
    day: date
    picks: tuple[Ranked, ...]
    message_id: str
    reason: str = ""  # set when nothing is to be sent
    digest_id: int | None = None  # today's ledger row, when one exists that is not `sent`

    @property
    def sendable(self) -> bool:
        return not self.reason


def local_day(subscriber: Subscriber, now: datetime) -> date:
    """The subscriber's calendar day at `now`: the day their digest belongs to."""
    return now.astimezone(ZoneInfo(subscriber.timezone)).date()


def profile_for(subscriber: Subscriber) -> Profile:
    return Profile(keywords=subscriber.keywords, exclude=subscriber.exclude, authors=subscriber.authors)


# semantic ---------------------------------------------------------------------------------
def semantic_encoder(settings: Settings) -> Encoder | None:
    """The encoder for hybrid ranking, or None: the `semantic` extra is not installed, or
    NEWSLETTER_SEMANTIC_MODEL is off."""
    return encoder_for(settings.semantic_model)


_BROKEN_MODELS: set[str] = set()


def semantic_for(store: Store | None, encoder: Encoder | None, papers: Sequence[Paper]) -> Semantic | None:
    """Embeddings of `papers` for hybrid ranking, read from the store (`stored_semantic`:
    papers are embedded at ingest, keywords when the subscribers file changes, so the model
    is loaded here only for what is missing). Without a store (the ad-hoc `rank` command)
    they are encoded and kept in memory only.

    A model that cannot be loaded is reported once and ranking goes on lexically: a broken
    model setting must not stop everyone's digest (`newsletter check` reports it too).
    """
    if encoder is None or not papers or encoder.model in _BROKEN_MODELS:
        return None
    try:
        if store is None:
            encoded = encoder.encode([paper_text(paper) for paper in papers])
            return Semantic({p.paper_id: v for p, v in zip(papers, encoded)}, encoder.encode)
        vectors = store.paper_embeddings(encoder.model, [paper.paper_id for paper in papers])
        missing = [paper for paper in papers if paper.paper_id not in vectors]
        if missing:
            encoded = encoder.encode([paper_text(paper) for paper in missing])
            store.save_paper_embeddings(encoder.model, {p.paper_id: v for p, v in zip(missing, encoded)})
    except ConfigError as exc:
        _BROKEN_MODELS.add(encoder.model)
        log.error("ranking without the semantic model: %s", exc)
        return None
    return stored_semantic(store, encoder.model, papers, fallback=encoder)


class PlanCache:
    """Memo for one run: papers by id, and one index per distinct set of candidates.

    Most subscribers share the same candidates (everything new since yesterday), so the
    index is built once and every profile is ranked against it. With an `encoder` (the
    semantic extra) the index is hybrid, from embeddings stored once per paper.
    """

    INDEXES_KEPT = 8

    def __init__(self, store: Store, encoder: Encoder | None = None) -> None:
        self.store = store
        self.encoder = encoder
        self._papers: dict[str, Paper] = {}
        self._indexes: OrderedDict[tuple[str, ...], PaperIndex] = OrderedDict()
        self._statuses: dict[date, dict[str, str]] = {}

    def has_digest(self, subscriber: str, day: date) -> bool:
        """Whether the ledger had a row for (subscriber, day) when the run began."""
        if day not in self._statuses:
            self._statuses[day] = self.store.statuses_on(day)
        return subscriber in self._statuses[day]

    def papers(self, paper_ids: Sequence[str]) -> list[Paper]:
        missing = [paper_id for paper_id in paper_ids if paper_id not in self._papers]
        if missing:
            for paper in self.store.papers_by_ids(missing):
                self._papers[paper.paper_id] = paper
        return [self._papers[paper_id] for paper_id in paper_ids if paper_id in self._papers]

    def index(self, paper_ids: Sequence[str]) -> PaperIndex:
        key = tuple(paper_ids)
        index = self._indexes.get(key)
        if index is None:
            papers = self.papers(key)
            index = PaperIndex.build(papers, semantic_for(self.store, self.encoder, papers))
            self._indexes[key] = index
            if len(self._indexes) > self.INDEXES_KEPT:
                self._indexes.popitem(last=False)
        else:
            self._indexes.move_to_end(key)
        return index


def plan_digest(
    store: Store,
    subscriber: Subscriber,
    *,
    now: datetime,
    domain: str,
    cache: PlanCache | None = None,
    suppressed: Collection[str] = (),
    include_sent: bool = False,
) -> Plan:
    """Pick today's papers for one subscriber, honouring the ledger and the suppression list.

    `include_sent` plans today's digest again even if it was sent (for a test copy).
    """
    cache = cache or PlanCache(store)
    day = local_day(subscriber, now)
    message_id = digest_message_id(subscriber.email, day, domain)

    def nothing(reason: str) -> Plan:
        return Plan(subscriber, day, (), message_id, reason=reason)

    if not subscriber.active:
        return nothing("inactive (active: false)")
    if subscriber.email.casefold() in suppressed:
        return nothing("suppressed after repeated permanent failures (see `newsletter suppressed`)")
    record = store.digest_for(subscriber.email, day) if cache.has_digest(subscriber.email, day) else None
    if record is not None and record.status == "sent" and not include_sent:
        return nothing("already sent today")
    if record is not None:
        # Planned before a crash or a failure: send the very same papers, same Message-ID.
        papers = cache.papers(record.paper_ids)
        rescored = rank_papers(
            papers, profile_for(subscriber), max_papers=len(papers) or 1,
            semantic=semantic_for(store, cache.encoder, papers),
        )
        by_id = {r.paper.paper_id: r for r in rescored}  # for the "why" of each paper
        picks = tuple(by_id.get(p.paper_id, Ranked(p, 0.0, ())) for p in papers)
        return Plan(subscriber, day, picks, record.message_id, digest_id=record.id)
    candidate_ids = store.candidate_ids(subscriber.email, day)
    if not candidate_ids:
        return nothing("no new papers since the last digest")
    ranked = rank(cache.index(candidate_ids), profile_for(subscriber), max_papers=subscriber.max_papers)
    picks = tuple(r for r in ranked if r.picked)
    if not picks and not subscriber.send_empty:
        return nothing(f"nothing above the relevance floor among {len(candidate_ids)} new papers")
    return Plan(subscriber, day, picks, message_id)


def compose(plan: Plan, settings: Settings, now: datetime) -> tuple[RenderedDigest, EmailMessage]:
    subscriber = plan.subscriber
    personal_url = _unsubscribe_url(settings, subscriber.email)
    link = personal_url or unsubscribe_mailto(settings.from_address, subscriber.email)
    rendered = render_digest(
        recipient=Recipient(subscriber.email, subscriber.name, subscriber.keywords),
        day=plan.day,
        picks=list(plan.picks),
        unsubscribe_link=link,
        keywords_link=keywords_mailto(settings.from_address),
    )
    message = compose_message(
        digest=rendered,
        to_address=subscriber.email,
        to_name=subscriber.name,
        from_address=settings.from_address,
        from_name=settings.from_name,
        message_id=plan.message_id,
        sent_at=now,
        unsubscribe_url=personal_url,
        dkim=settings.dkim_key,
    )
    return rendered, message


def _unsubscribe_url(settings: Settings, address: str) -> str | None:
    """The subscriber's own https unsubscribe link, when the operator runs an endpoint."""
    if settings.unsubscribe_url is None or settings.unsubscribe_secret is None:
        return None
    return unsubscribe_url(settings.unsubscribe_url, settings.unsubscribe_secret.get_secret_value(), address)


# outcomes -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    subscriber: str
    status: str  # sent | failed | skipped | previewed
    papers: int = 0
    detail: str = ""
    subject: str = ""
    attempts: int = 0  # SMTP attempts spent (sent or failed)


def skipped(plan: Plan) -> Outcome:
    log.info("no digest for %s: %s", plan.subscriber.email, plan.reason)
    return Outcome(plan.subscriber.email, "skipped", detail=plan.reason)


# preview --------------------------------------------------------------------------------
def preview(
    store: Store,
    subscribers: Sequence[Subscriber],
    settings: Settings,
    out_dir: Path,
    *,
    now: datetime | None = None,
) -> list[Outcome]:
    """Render what each subscriber would get into `out_dir` (.html, .txt, .eml). Dry run."""
    now = now or datetime.now(UTC)
    out_dir.mkdir(parents=True, exist_ok=True)
    outcomes = []
    cache = PlanCache(store, semantic_encoder(settings))
    suppressed = store.suppressed_addresses()
    for subscriber in subscribers:
        plan = plan_digest(
            store, subscriber, now=now, domain=settings.sender_domain, cache=cache, suppressed=suppressed
        )
        if not plan.sendable:
            outcomes.append(skipped(plan))
            continue
        rendered, message = compose(plan, settings, now)
        stem = _SAFE_NAME.sub("_", f"{plan.day.isoformat()}_{subscriber.email}")
        html_path = out_dir / f"{stem}.html"
        html_path.write_text(rendered.html, encoding="utf-8")
        (out_dir / f"{stem}.txt").write_text(rendered.text, encoding="utf-8")
        (out_dir / f"{stem}.eml").write_bytes(message.as_bytes())
        outcomes.append(
            Outcome(subscriber.email, "previewed", len(plan.picks), str(html_path), rendered.subject)
        )
    return outcomes


def rank_dump_path(
    path: Path,
    keywords: Sequence[str],
    *,
    top: int,
    exclude: Sequence[str] = (),
    encoder: Encoder | None = None,
) -> list[Ranked]:
    """Rank every paper under `path` for an ad-hoc profile (hybrid with `encoder`); touches
    no state."""
    files = dump_files(path)
    if not files:
        raise DumpError("no dump files here", path=str(path))
    unique: dict[str, Paper] = {}  # by normalised title, as the store matches them
    for file in files:
        for paper in read_dump(file).papers:
            known = unique.get(paper.title_key)
            if known is None or (known.arxiv_id is None and paper.arxiv_id):
                unique[paper.title_key] = paper
    profile = Profile(keywords=tuple(keywords), exclude=tuple(exclude))
    papers = list(unique.values())
    return rank_papers(papers, profile, max_papers=top, semantic=semantic_for(None, encoder, papers))
