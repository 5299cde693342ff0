"""Composing: a plan and the sender in, the rendered digest and the message's bytes out. Pure.

The one place that turns a `Plan` into what a transport sends (and what `preview` writes),
so the digest a subscriber gets, its test copy and its preview are the same composition.
"""

from __future__ import annotations

from datetime import datetime

from newsletter.links import digest_links
from newsletter.message import Composed, compose_message, keywords_mailto, unsubscribe_mailto
from newsletter.models import Plan, Sender
from newsletter.render import Recipient, RenderedDigest, render_digest

TEST_PREFIX = "[test] "


def compose(
    plan: Plan,
    sender: Sender,
    now: datetime,
    *,
    to_address: str | None = None,
    message_id: str | None = None,
    subject_prefix: str = "",
) -> tuple[RenderedDigest, Composed]:
    """The digest of `plan`, rendered and composed (and signed when the sender has a key).

    `to_address`, `message_id` and `subject_prefix` make a copy for someone else (a test
    copy): it still carries the subscriber's own links, so the operator can try them.
    """
    subscriber = plan.subscriber
    # Feedback links are for the picks: the trending section has none (and each costs an HMAC).
    paper_ids = [pick.paper.paper_id for pick in plan.picks]
    links = digest_links(sender.links, subscriber.email, plan.day, paper_ids)
    personal_url = links.unsubscribe_url
    rendered = render_digest(
        recipient=Recipient(subscriber.email, subscriber.name, subscriber.keywords),
        day=plan.day,
        picks=list(plan.picks),
        unsubscribe_link=personal_url or unsubscribe_mailto(sender.from_address, subscriber.email),
        keywords_link=keywords_mailto(sender.from_address),
        links=links,
        trending=plan.trending,
    )
    if subject_prefix:
        rendered = RenderedDigest(subject_prefix + rendered.subject, rendered.preheader, rendered.html, rendered.text)
    composed = compose_message(
        digest=rendered,
        to_address=to_address or subscriber.email,
        to_name=None if to_address else subscriber.name,
        from_address=sender.from_address,
        from_name=sender.from_name,
        message_id=message_id or plan.message_id,
        sent_at=now,
        unsubscribe_url=personal_url,
        dkim=sender.dkim,
    )
    return rendered, composed
