"""A recorded digest rendered again for the browser: the same HTML as the email.

The ledger holds which papers a digest had and in which order (`digest_papers`); the papers'
text comes from the store, and the "why" of each pick is recomputed for the subscriber's
keywords, as the planner does when it sends a recorded digest again. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence

from newsletter.links import LinkSettings, digest_links
from newsletter.models import Paper, Ranked
from newsletter.ranking import Profile, rank_papers
from newsletter.render import Recipient, render_digest
from newsletter.store import DigestRecord
from newsletter.subscribers import Subscriber


def recorded_picks(papers: Sequence[Paper], subscriber: Subscriber | None) -> list[Ranked]:
    """`papers` in their recorded order, each with the keywords it matches (none without a
    subscriber entry: the file may have dropped them since)."""
    if subscriber is None or not papers:
        return [Ranked(paper, 0.0, ()) for paper in papers]
    profile = Profile(keywords=subscriber.keywords, exclude=subscriber.exclude)
    rescored = {r.paper.paper_id: r for r in rank_papers(papers, profile, max_papers=len(papers))}
    return [rescored.get(paper.paper_id, Ranked(paper, 0.0, ())) for paper in papers]


def render_recorded(
    record: DigestRecord,
    papers: Sequence[Paper],
    subscriber: Subscriber | None,
    links: LinkSettings,
    *,
    keywords_link: str,
) -> str:
    """The HTML of the digest `record` describes, with its own working links."""
    picks = recorded_picks(papers, subscriber)
    own_links = digest_links(links, record.subscriber, record.digest_day, [p.paper_id for p in papers])
    rendered = render_digest(
        recipient=Recipient(
            record.subscriber,
            subscriber.name if subscriber else None,
            subscriber.keywords if subscriber else (),
        ),
        day=record.digest_day,
        picks=picks,
        unsubscribe_link=own_links.unsubscribe_url or "",
        keywords_link=keywords_link,
        links=own_links,
    )
    return rendered.html
