"""The dry-run and ad-hoc stages beside the day's run (`newsletter.day`).

    preview          render every subscriber's next digest to files; no transport, no ledger
    rank_dump_path   rank the papers of a dump file or folder for an ad-hoc profile
    semantic_for     embeddings of papers for the hybrid ranker, stored once per paper

Ingest is `newsletter.ingest`; planning `newsletter.planning`; a run `newsletter.day`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from newsletter.composing import compose
from newsletter.errors import ConfigError, DumpError
from newsletter.ingest import parse_path
from newsletter.models import Outcome, OutcomeStatus, Paper, Ranked, Sender
from newsletter.planning import Retry, local_day
from newsletter.preparing import PrepareSetup, make_planner, semantic_for
from newsletter.ranking import Profile, rank_papers
from newsletter.semantic import Encoder
from newsletter.store import Store
from newsletter.subscribers import Subscriber

log = logging.getLogger(__name__)

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._@-]+")


def preview(
    store: Store,
    subscribers: Sequence[Subscriber],
    sender: Sender,
    out_dir: Path,
    *,
    now: datetime | None = None,
    semantic_model: str | None = None,
) -> list[Outcome]:
    """Render what each subscriber would get into `out_dir` (.html, .txt, .eml). Dry run:
    the same planning and composition as a send, and nothing written to the ledger."""

    now = now or datetime.now(UTC)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the preview folder {out_dir}: {exc.strerror}; choose another with --out") from None
    setup = PrepareSetup(
        database_url=store.url, days=tuple(sorted({local_day(s, now) for s in subscribers})),
        sender=sender, now=now, retry=Retry(), semantic_model=semantic_model,
    )
    planner = make_planner(setup, store)
    outcomes = []
    for _, plan in planner.plan(subscribers):
        subscriber = plan.subscriber
        if not plan.sendable:
            outcomes.append(Outcome(subscriber.email, OutcomeStatus.SKIPPED, detail=plan.reason))
            continue
        rendered, composed = compose(plan, sender, now)
        stem = _SAFE_NAME.sub("_", f"{plan.day.isoformat()}_{subscriber.email}")
        html_path = out_dir / f"{stem}.html"
        try:
            html_path.write_text(rendered.html, encoding="utf-8")
            (out_dir / f"{stem}.txt").write_text(rendered.text, encoding="utf-8")
            (out_dir / f"{stem}.eml").write_bytes(composed.data)
        except OSError as exc:
            raise ConfigError(
                f"cannot write to the preview folder {out_dir}: {exc.strerror}; choose another with --out"
            ) from None
        outcomes.append(
            Outcome(subscriber.email, OutcomeStatus.PREVIEWED, len(plan.picks), str(html_path), rendered.subject)
        )
    return outcomes


def rank_dump_path(
    path: Path,
    keywords: Sequence[str],
    *,
    top: int,
    exclude: Sequence[str] = (),
    encoder: Encoder | None = None,
    set_aside: list[DumpError] | None = None,
) -> list[Ranked]:
    """Rank every paper under `path` for an ad-hoc profile (hybrid with `encoder`); touches
    no state. Files that cannot be parsed go into `set_aside` and the rest is ranked; without
    that list, the first such file raises. Raises too when no file parses at all."""
    report = parse_path(path)
    if report.rejected and (set_aside is None or not report.parsed):
        raise report.rejected[0]
    if set_aside is not None:
        set_aside.extend(report.rejected)
    unique: dict[str, Paper] = {}  # arXiv id first, then normalised title, as the store matches
    seen_ids: set[str] = set()
    for _, dump in report.parsed:
        for paper in dump.papers:
            if paper.arxiv_id in seen_ids:
                continue
            known = unique.get(paper.title_key)
            if known is None or (known.arxiv_id is None and paper.arxiv_id):
                unique[paper.title_key] = paper
                if paper.arxiv_id:
                    seen_ids.add(paper.arxiv_id)
    profile = Profile(keywords=tuple(keywords), exclude=tuple(exclude))
    papers = list(unique.values())
    return rank_papers(papers, profile, max_papers=top, semantic=semantic_for(None, encoder, papers))
