"""The pipeline: one function per stage, called by the CLI and the scheduler.

    ingest_dumps   new/changed files in the dumps folder -> papers in the store
    plan_digest    a subscriber's candidates -> ranked picks (or the reason there are none)
    preview        render every plan to files; no transport, no ledger change
    send_digests   render, record in the ledger, deliver, record the outcome

A subscriber's failure is recorded and the run goes on to the next one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

from newsletter.delivery import Transport
from newsletter.errors import DeliveryError, DumpError
from newsletter.message import compose_message, digest_message_id, keywords_mailto, unsubscribe_mailto
from newsletter.models import Paper, ParsedDump, Ranked
from newsletter.ranking import Profile, rank_papers
from newsletter.render import Recipient, RenderedDigest, render_digest
from newsletter.settings import Settings
from newsletter.sources import fallback_date_for, parse_dump
from newsletter.store import Store
from newsletter.subscribers import Subscriber
from newsletter.unsubscribe import unsubscribe_url

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._@-]+")


# ingest -------------------------------------------------------------------------------
@dataclass
class IngestReport:
    files: int = 0
    ingested: list[tuple[str, int, int]] = field(default_factory=list)  # path, papers, new
    unchanged: int = 0
    rejected: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def new_papers(self) -> int:
        return sum(new for _, _, new in self.ingested)


def dump_files(path: Path) -> list[Path]:
    """The files a dumps path names: the file itself, or the visible files of a folder."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))


def read_dump(path: Path, content: bytes | None = None) -> ParsedDump:
    """Read and parse one dump file; raises DumpError naming the file."""
    try:
        raw = path.read_bytes() if content is None else content
        text = raw.decode("utf-8-sig")
    except OSError as exc:
        raise DumpError(f"cannot read the file: {exc.strerror}", path=str(path)) from None
    except UnicodeDecodeError as exc:
        raise DumpError(
            f"not UTF-8 text (byte {exc.start}); save the capture as UTF-8", path=str(path)
        ) from None
    fallback = fallback_date_for(path.name, date.fromtimestamp(path.stat().st_mtime))
    try:
        return parse_dump(text, source_name=str(path), fallback_date=fallback)
    except DumpError as exc:
        raise exc.at(str(path)) from None


def ingest_dumps(store: Store, path: Path, progress: Progress | None = None) -> IngestReport:
    """Ingest every new or changed file under `path`. Unchanged files cost one hash."""
    report = IngestReport()
    for file in dump_files(path):
        report.files += 1
        try:
            content = file.read_bytes()
        except OSError as exc:  # unreadable now; not recorded, so it is tried again next time
            report.rejected.append(f"{file}: cannot read the file: {exc.strerror}")
            continue
        digest = hashlib.sha256(content).hexdigest()
        if store.dump_seen(digest):
            report.unchanged += 1
            continue
        if progress:
            progress(f"ingesting {file.name}")
        try:
            parsed = read_dump(file, content)
        except DumpError as exc:
            log.error("dump set aside: %s", exc)
            report.rejected.append(str(exc))
            store.record_rejected_dump(path=str(file), sha256=digest, error=str(exc))
            continue
        for issue in parsed.issues:
            report.warnings.append(f"{file}:{issue.line}: skipped entry: {issue.reason}")
        new = store.add_dump(
            path=str(file),
            sha256=digest,
            format=parsed.format,
            listing_date=parsed.listing_date,
            dump_papers_=parsed.papers,
        )
        report.ingested.append((str(file), len(parsed.papers), new))
        log.info("ingested %s: %d papers, %d new", file, len(parsed.papers), new)
    return report


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
    return Profile(keywords=subscriber.keywords, exclude=subscriber.exclude)


def plan_digest(store: Store, subscriber: Subscriber, *, now: datetime, domain: str) -> Plan:
    """Pick today's papers for one subscriber, honouring the ledger."""
    day = local_day(subscriber, now)
    message_id = digest_message_id(subscriber.email, day, domain)

    def nothing(reason: str) -> Plan:
        return Plan(subscriber, day, (), message_id, reason=reason)

    if not subscriber.active:
        return nothing("inactive (active: false)")
    record = store.digest_for(subscriber.email, day)
    if record is not None and record.status == "sent":
        return nothing("already sent today")
    if record is not None:
        # Planned before a crash or a failure: send the very same papers, same Message-ID.
        papers = store.papers_by_ids(record.paper_ids)
        rescored = rank_papers(papers, profile_for(subscriber), max_papers=len(papers) or 1)
        by_id = {r.paper.paper_id: r for r in rescored}  # for the "why" of each paper
        picks = tuple(by_id.get(p.paper_id, Ranked(p, 0.0, ())) for p in papers)
        return Plan(subscriber, day, picks, record.message_id, digest_id=record.id)
    candidates = store.candidates(subscriber.email, day)
    if not candidates:
        return nothing("no new papers since the last digest")
    ranked = rank_papers(candidates, profile_for(subscriber), max_papers=subscriber.max_papers)
    picks = tuple(r for r in ranked if r.picked)
    if not picks and not subscriber.send_empty:
        return nothing(f"nothing above the relevance floor among {len(candidates)} new papers")
    return Plan(subscriber, day, picks, message_id)


def _compose(plan: Plan, settings: Settings, now: datetime) -> tuple[RenderedDigest, EmailMessage]:
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


def _skip(plan: Plan) -> Outcome:
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
    for subscriber in subscribers:
        plan = plan_digest(store, subscriber, now=now, domain=settings.sender_domain)
        if not plan.sendable:
            outcomes.append(_skip(plan))
            continue
        rendered, message = _compose(plan, settings, now)
        stem = _SAFE_NAME.sub("_", f"{plan.day.isoformat()}_{subscriber.email}")
        html_path = out_dir / f"{stem}.html"
        html_path.write_text(rendered.html, encoding="utf-8")
        (out_dir / f"{stem}.txt").write_text(rendered.text, encoding="utf-8")
        (out_dir / f"{stem}.eml").write_bytes(message.as_bytes())
        outcomes.append(
            Outcome(subscriber.email, "previewed", len(plan.picks), str(html_path), rendered.subject)
        )
    return outcomes


# send -----------------------------------------------------------------------------------
async def _deliver(store: Store, plan: Plan, settings: Settings, transport: Transport, now: datetime) -> Outcome:
    email = plan.subscriber.email
    rendered, message = _compose(plan, settings, now)
    digest_id = plan.digest_id
    if digest_id is None:
        store.release_unsent(email, before=plan.day)
        digest_id = store.plan_digest(
            subscriber=email, day=plan.day, message_id=plan.message_id,
            paper_ids=[p.paper.paper_id for p in plan.picks],
        ).id
    store.mark(digest_id, "sending")
    try:
        await transport.send(message)
    except DeliveryError as exc:
        store.mark(digest_id, "failed", error_code=exc.code, error=str(exc))
        log.error("digest for %s failed: %s", email, exc)
        return Outcome(email, "failed", len(plan.picks), str(exc), rendered.subject)
    store.mark(digest_id, "sent")
    log.info("digest for %s sent via %s (%d papers)", email, transport.name, len(plan.picks))
    return Outcome(email, "sent", len(plan.picks), plan.message_id, rendered.subject)


async def send_digests_async(
    store: Store,
    subscribers: Iterable[Subscriber],
    settings: Settings,
    transport: Transport,
    *,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> list[Outcome]:
    now = now or datetime.now(UTC)
    outcomes = []
    try:
        for subscriber in subscribers:
            plan = plan_digest(store, subscriber, now=now, domain=settings.sender_domain)
            if not plan.sendable:
                outcomes.append(_skip(plan))
                continue
            if progress:
                progress(f"sending to {subscriber.email}")
            try:
                outcomes.append(await _deliver(store, plan, settings, transport, now))
            except Exception as exc:  # noqa: BLE001 - one subscriber's bug must not stop the rest
                log.exception("digest for %s could not be built or recorded", subscriber.email)
                outcomes.append(Outcome(subscriber.email, "failed", detail=f"internal error: {exc!r}"))
    finally:
        await transport.close()
    return outcomes


def send_digests(
    store: Store,
    subscribers: Iterable[Subscriber],
    settings: Settings,
    transport: Transport,
    *,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> list[Outcome]:
    """Deliver today's digest to each subscriber that is due one; returns one outcome each."""
    return asyncio.run(
        send_digests_async(store, subscribers, settings, transport, now=now, progress=progress)
    )


def rank_dump_path(path: Path, keywords: Sequence[str], *, top: int, exclude: Sequence[str] = ()) -> list[Ranked]:
    """Rank every paper under `path` for an ad-hoc profile; touches no state."""
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
    return rank_papers(list(unique.values()), profile, max_papers=top)
