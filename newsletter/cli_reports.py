"""`newsletter status` and `newsletter history`: the service's day and what was sent to whom.

Commands of the `newsletter` CLI (registered on `cli.app`, imported at the end of cli.py); like
the rest of the CLI they only adapt: the data comes from `reporting`, they print it as plain
lines or as JSON on stdout.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime
from typing import Annotated, Any

import typer

from newsletter import reporting
from newsletter.cli_base import _fail, _operator_errors, _settings, app, out
from newsletter.errors import NewsletterError
from newsletter.reporting import plural, states_line
from newsletter.store import DigestReport, Store
from newsletter.subscribers import load_subscribers

HISTORY_LIMIT = 100


def _json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, ensure_ascii=False, indent=2) + "\n")


def _say(text: str) -> None:
    out.print(text, highlight=False, markup=False, soft_wrap=True)


def _when(value: datetime | None) -> str:
    return "never" if value is None else f"{value.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    health: Annotated[
        bool, typer.Option("--health", help="Only say whether the service is running: exit 0 if its heartbeat is fresh, else 1.")
    ] = False,
) -> None:
    """What the service knows now: dumps, papers, subscribers, send slots, today's digests."""
    settings = _settings()
    now = datetime.now(UTC)
    with _operator_errors():
        store = Store(settings.database_url)
        if health:
            checked = reporting.health(store, settings, now)
            if not checked.fresh:
                _fail(checked.line())
            _say(f"Healthy: {checked.line()}")
            return
        problem = None
        try:
            loaded = load_subscribers(
                settings.subscribers_file, max_papers=settings.max_papers,
                send_at=settings.send_at, timezone=settings.timezone,
            )
        except NewsletterError as exc:
            loaded, problem = None, str(exc)
        report = reporting.gather_status(store, settings, loaded, now, subscribers_problem=problem)
    if as_json:
        _json(report.to_json())
        return
    _print_status(report)


def _print_status(report: reporting.Status) -> None:
    dumps = report.dumps
    _say(
        f"Dumps: {dumps.seen} seen ({dumps.ingested} ingested, {dumps.set_aside} set aside); "
        f"last ingested {_when(dumps.last_ingested_at)}"
    )
    _say(f"Papers: {plural(report.papers, 'paper')} stored")
    if report.subscribers is None:
        _say(f"Subscribers: cannot be read: {report.subscribers_problem}")
    else:
        _say("Subscribers: " + ", ".join(f"{count} {name}" for name, count in report.subscribers.items()))
    for slot in report.slots:
        _say(
            f"Send slot {slot.name} ({plural(slot.subscribers, 'subscriber')}): "
            f"last sent {_when(slot.last_send)}, next {_when(slot.next_send)}"
        )
    _say(f"Today ({report.day:%Y-%m-%d}): {states_line(report.today)}")
    for item in report.deferred:
        _say(
            f"Deferred: {item.subscriber} ({item.day:%Y-%m-%d}, {plural(item.attempts, 'attempt')}), "
            f"next attempt {_when(item.next_attempt_at)}: {item.error or 'no reason recorded'}"
        )
    for item in report.failures:
        code = f" {item.error_code}" if item.error_code else ""
        _say(f"Failed: {item.subscriber} ({item.day:%Y-%m-%d}){code}: {item.error or 'no reason recorded'}")
    service = report.health
    _say(f"Service: {service.line()}")


def _day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        _fail(f"--day {value!r} is not a date as YYYY-MM-DD, e.g. 2026-04-16")


@app.command()
def history(
    subscriber: Annotated[str | None, typer.Option("--subscriber", help="Only this subscriber (their email address).")] = None,
    day: Annotated[str | None, typer.Option("--day", help="Only this digest day (YYYY-MM-DD).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many digests, the latest first.")] = HISTORY_LIMIT,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """What was sent to whom: each digest's day, state, attempts, Message-ID and papers."""
    settings = _settings()
    wanted_day = _day(day)
    with _operator_errors():
        rows = Store(settings.database_url).digest_history(subscriber=subscriber, day=wanted_day, limit=limit)
    if as_json:
        _json([reporting.history_item(row) for row in rows])
        return
    if not rows:
        _say("No digests recorded" + (f" for {subscriber}" if subscriber else "") + (f" on {day}" if day else "") + ".")
        return
    for row in rows:
        _print_digest(row)


def _print_digest(row: DigestReport) -> None:
    when = f", sent {_when(row.sent_at)}" if row.sent_at else ""
    _say(
        f"{row.day:%Y-%m-%d} {row.subscriber}: {row.state}, {plural(row.attempts, 'attempt')}{when}, "
        f"{plural(row.paper_count, 'paper')}, Message-ID {row.message_id}"
    )
    if row.next_attempt_at is not None:
        _say(f"  next attempt {_when(row.next_attempt_at)}")
    if row.error:
        _say(f"  reason: {row.error}")
    for position, (paper_id, title) in enumerate(row.papers, start=1):
        _say(f"  {position}. {title} ({paper_id})")
