"""Where the day runs: in this process, or in shards by Celery workers.

    run_day(runtime, subscribers, now) -> DayReport

The one call `newsletter send` and the service's send slots and retry rounds make. Without
NEWSLETTER_BROKER_URL the day runs here (`Runtime.run_here`, the spine in `newsletter.day`);
with it, in shards that workers run through the same spine (`newsletter.workers`), waited for
here. Above both `runtime` and `workers`, so neither needs the other's way round.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from newsletter.day import DayReport
from newsletter.errors import ConfigError
from newsletter.runtime import Progress, Runtime
from newsletter.subscribers import Subscriber


def run_day(
    runtime: Runtime, subscribers: Sequence[Subscriber], now: datetime | None = None, *,
    by_hand: bool = True, progress: Progress | None = None,
) -> DayReport:
    """The day's digests for `subscribers`: in this process, or, with NEWSLETTER_BROKER_URL
    set, in shards run by Celery workers, waiting for them."""
    if runtime.settings.broker is None:
        return runtime.run_here(subscribers, now, by_hand=by_hand, progress=progress)
    try:
        from newsletter.workers import run_shards, shown_broker
    except ImportError as exc:
        raise ConfigError(
            f"NEWSLETTER_BROKER_URL is set but Celery is not installed ({exc.name}): "
            "pip install 'newsletter[celery]', or unset NEWSLETTER_BROKER_URL to send in this process"
        ) from None
    runtime.embed_keywords(subscribers)
    report = run_shards(runtime, subscribers, now, by_hand=by_hand, progress=progress)
    report.transport = f"{runtime.transport_label}, by workers over {shown_broker(runtime.settings)}"
    return report
