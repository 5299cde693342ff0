"""The edge: turns `Settings` into the plain values the stages take, for both adapters.

`cli.py` and `scheduler.py` each build a `Runtime` and call the same few methods, so the
sequence "ingest what is new, load the subscribers, run the day" lives here once. Nothing
below this module reads `Settings`.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from newsletter.day import DayOptions, DayReport, run_day
from newsletter.delivery import Transport, make_transport
from newsletter.ingest import IngestReport, ingest_dumps
from newsletter.models import Sender
from newsletter.planning import Retry
from newsletter import roster, semantic
from newsletter.semantic import Encoder, encoder_for
from newsletter.settings import Settings
from newsletter.store import Store
from newsletter.subscribers import SubscriberList, load_subscribers

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


def sender_from(settings: Settings) -> Sender:
    return Sender(
        from_address=settings.from_address,
        from_name=settings.from_name,
        links=settings.link_settings,
        dkim=settings.dkim_key,
    )


def semantic_model(settings: Settings) -> str | None:
    """The hybrid ranker's model when it is on (the extra installed and not turned off)."""
    encoder = encoder_for(settings.semantic_model)
    return encoder.model if encoder is not None else None


def semantic_encoder(settings: Settings) -> Encoder | None:
    return encoder_for(settings.semantic_model)


def _embed_in_child(database_url: str, model: str, keywords: list[str]) -> tuple[int, int]:
    """In a process of its own: embed and store the papers without a vector and the keyword
    texts not seen before; (papers, keyword texts) embedded."""
    store = Store(database_url)
    try:
        encoder = encoder_for(model)
        assert encoder is not None, "the semantic extra is installed where the parent runs"
        papers = semantic.embed_new_papers(store, encoder)
        texts = semantic.embed_keywords(store, encoder, keywords, store.all_papers()) if keywords else 0
        return papers, texts
    finally:
        store.close()


def day_options(settings: Settings, *, by_hand: bool = True) -> DayOptions:
    workers = settings.workers if settings.workers is not None else max(1, os.cpu_count() or 1)
    return DayOptions(
        retry=Retry(
            min_seconds=settings.retry_min_seconds,
            max_seconds=settings.retry_max_seconds,
            lifetime_hours=settings.retry_lifetime_hours,
        ),
        max_error_rate=settings.max_error_rate,
        suppress_after=settings.suppress_after,
        workers=workers,
        resend_failed=by_hand,
        semantic_model=semantic_model(settings),
    )


@dataclass
class Runtime:
    """The store and the plain values of one process, built once from the settings."""

    settings: Settings
    store: Store = field(init=False)
    sender: Sender = field(init=False)

    def __post_init__(self) -> None:
        self.store = Store(self.settings.database_url)
        self.sender = sender_from(self.settings)

    def transport(self) -> Transport:
        return make_transport(self.settings)

    @property
    def transport_label(self) -> str:
        s = self.settings
        if s.uses_smtp:
            return f"SMTP {s.smtp_host}:{s.smtp_port}"
        return f"the outbox folder {s.outbox_dir} (NEWSLETTER_SMTP_HOST is not set)"

    def subscribers(self) -> SubscriberList:
        s = self.settings
        return load_subscribers(s.subscribers_file, max_papers=s.max_papers, send_at=s.send_at, timezone=s.timezone)

    def ingest(
        self, path: Path | None = None, progress: Progress | None = None, *, settle_seconds: float = 0
    ) -> IngestReport:
        """Ingest new dumps; `settle_seconds`: leave files still being written for later. With
        hybrid ranking on, new papers are embedded now (once each), not at the first send."""
        report = ingest_dumps(self.store, path or self.settings.dumps_dir, progress, settle_seconds=settle_seconds)
        report.embedded = self.embed()[0]
        return report

    def embed_keywords(self, subscribers: Sequence) -> None:  # type: ignore[type-arg]
        """With hybrid ranking on, store the vectors of keywords not seen before, so a send
        reads every vector from the store."""
        self.embed(sorted(roster.keywords(subscribers)))

    def embed(self, keywords: Sequence[str] = ()) -> tuple[int, int]:
        """With hybrid ranking on: vectors for the stored papers that have none and for the
        keyword texts (`semantic.keyword_texts`) not seen before, computed in a short-lived
        process of its own and stored, so the process that sends (`send`, the service) never
        holds the model (about 150 MB). Nothing is started when nothing is missing.
        (papers, keyword texts) embedded."""
        encoder = semantic_encoder(self.settings)
        if encoder is None:
            return 0, 0
        missing_texts = False
        if keywords:
            texts = semantic.keyword_texts(keywords, self.store.all_papers())
            missing_texts = len(self.store.keyword_embeddings(encoder.model, texts)) < len(texts)
        if not missing_texts and not self.store.papers_without_embedding(encoder.model):
            return 0, 0
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as child:
            return child.submit(_embed_in_child, self.store.url, encoder.model, list(keywords)).result()

    def run_here(
        self, subscribers: Sequence, now: datetime | None = None, *, by_hand: bool = True,  # type: ignore[type-arg]
        progress: Progress | None = None, claim_owner: str = "", claim_seconds: float | None = None,
    ) -> DayReport:
        """The day's digests for `subscribers`, in this process, through the transport the
        settings choose; `claim_*`: whose claims, and their lease (a worker's shard)."""
        self.embed_keywords(subscribers)
        options = replace(
            day_options(self.settings, by_hand=by_hand), claim_owner=claim_owner, claim_seconds=claim_seconds
        )
        report = run_day(self.store, subscribers, self.sender, self.transport(), now, options, progress=progress)
        report.transport = self.transport_label
        return report

    def close(self) -> None:
        self.store.close()
