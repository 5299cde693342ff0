"""The `newsletter` command: parses arguments, calls the pipeline, prints the outcome.

No logic of its own. Every operator mistake arrives as a `NewsletterError` and is printed as
one `Error: ...` line with exit code 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import webbrowser
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from email_validator import EmailNotValidError, validate_email

from newsletter import dispatch, ingest as ingesting, pipeline, semantic
from newsletter.day import send_copy
from newsletter.errors import ConfigError, DumpError, NewsletterError
from newsletter.logs import CLI_LOGGER, StderrToLog, configure_logging, fields
from newsletter.models import Outcome, OutcomeStatus, Paper
from newsletter.reporting import plural
from newsletter.runtime import Runtime, semantic_encoder, semantic_model
from newsletter.settings import Settings, load_settings, requested_log_format
from newsletter.delivery.check import check_smtp
from newsletter.store import Store
from newsletter.store.base import safe_url, shown as shown_url
from newsletter.subscribers import Subscriber, SubscriberList, load_subscribers
from newsletter.cli_base import _fail, _operator_errors, _settings, app, console, out

T = TypeVar("T")

SubscriberOption = Annotated[
    str | None, typer.Option("--subscriber", help="Only this subscriber (their email address).")
]


def _subscribers(settings: Settings, only: str | None, *, strict: bool = False) -> Sequence[Subscriber]:
    with _operator_errors():
        loaded: SubscriberList = load_subscribers(
            settings.subscribers_file,
            max_papers=settings.max_papers,
            send_at=settings.send_at,
            timezone=settings.timezone,
        )
    for problem in loaded.problems:
        console.print(f"[yellow]Skipped:[/] {escape(str(problem))}", highlight=False, soft_wrap=True)
    if strict and loaded.problems:
        raise typer.Exit(1)
    if only is None:
        return loaded.subscribers
    found = loaded.find(only)
    if found is None:
        _fail(f"{only} is not a valid entry in {settings.subscribers_file}")
    return [found]


def _with_progress(label: str, work: Callable[[Callable[[str], None]], T]) -> T:
    with console.status(label) as status:
        return work(lambda text: status.update(text))


def _ingest(runtime: Runtime, path: Path | None = None) -> ingesting.IngestReport:
    store, settings = runtime.store, runtime.settings
    target = path or settings.dumps_dir
    if not target.exists():
        _fail(f"dumps folder {target} does not exist; create it or set NEWSLETTER_DUMPS_DIR")
    report = _with_progress("Ingesting dumps…", lambda p: runtime.ingest(target, p))
    for line in report.rejected:
        console.print(f"[red]Set aside:[/] {escape(line)}", highlight=False, soft_wrap=True)
    for line in report.warnings:
        console.print(f"[yellow]Warning:[/] {escape(line)}", highlight=False, soft_wrap=True)
    console.print(
        f"Dumps: {len(report.ingested)} ingested, {report.unchanged} unchanged, "
        f"{len(report.rejected)} set aside; {plural(report.new_papers, 'new paper')} "
        f"({store.paper_count()} stored).",
        highlight=False,
    )
    return report


SUMMARY_ROWS = 50  # past this many subscribers, the table groups the outcomes by reason


def _summary(title: str, outcomes: Sequence[Outcome]) -> None:
    """One row per subscriber; for a long list, the failures alone and the rest by reason."""
    colours = {"sent": "green", "previewed": "green", "failed": "red", "skipped": "yellow", "deferred": "yellow"}
    if len(outcomes) > SUMMARY_ROWS:
        _grouped_summary(title, outcomes, colours)
        return
    table = Table(title=title, title_justify="left")
    for column in ("subscriber", "status", "papers", "detail"):
        table.add_column(column, overflow="fold")
    for o in outcomes:
        detail = o.subject if o.status in ("sent", "previewed") else o.detail
        if o.attempts > 1:
            detail = f"{detail} (after {o.attempts} attempts)"
        table.add_row(o.subscriber, f"[{colours[o.status]}]{o.status}[/]", str(o.papers), escape(detail))
    out.print(table)


def _grouped_summary(title: str, outcomes: Sequence[Outcome], colours: dict[str, str]) -> None:
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        table = Table(title=f"{title}: failures", title_justify="left")
        for column in ("subscriber", "attempts", "reason"):
            table.add_column(column, overflow="fold")
        for o in failed[:SUMMARY_ROWS]:
            table.add_row(o.subscriber, str(o.attempts), escape(o.detail))
        out.print(table)
        if len(failed) > SUMMARY_ROWS:
            out.print(f"… and {len(failed) - SUMMARY_ROWS} more failures (see the log or the ledger)")
    groups: Counter[tuple[str, str]] = Counter(
        (o.status, "" if o.status in ("sent", "previewed") else o.detail) for o in outcomes if o.status != "failed"
    )
    table = Table(title=title, title_justify="left")
    for column in ("status", "subscribers", "reason"):
        table.add_column(column, overflow="fold")
    for (status, reason), count in groups.most_common():
        table.add_row(f"[{colours[status]}]{status}[/]", str(count), escape(reason))
    out.print(table)


@app.command()
def preview(
    subscriber: SubscriberOption = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder for the rendered files [default: NEWSLETTER_PREVIEW_DIR or ./preview].")
    ] = None,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the first digest in a browser.")] = False,
) -> None:
    """Dry run: ingest new dumps, then render each subscriber's next digest to files.

    Writes .html, .txt and .eml per subscriber; sends nothing and records no delivery.
    """
    settings = _settings()
    chosen = _subscribers(settings, subscriber)
    target = out_dir or settings.preview_dir
    _writable_folder(target, "--out" if out_dir else "NEWSLETTER_PREVIEW_DIR")
    with _operator_errors():
        runtime = Runtime(settings)
        _ingest(runtime)
        outcomes = pipeline.preview(
            runtime.store, chosen, runtime.sender, target, semantic_model=semantic_model(settings)
        )
    _summary(f"Preview in {target}/", outcomes)
    rendered = [o.detail for o in outcomes if o.status == "previewed"]
    out.print(f"Open {escape(rendered[0])} in a browser to read it." if rendered else "Nothing to preview.")
    if open_browser and rendered:
        webbrowser.open(Path(rendered[0]).resolve().as_uri())


def _writable_folder(path: Path, named_by: str) -> None:
    """Create `path` if needed and check a file can be written there, else one Error line."""
    if path.exists() and not path.is_dir():
        _fail(f"{path} ({named_by}) is a file, not a folder; name a folder for the rendered files")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".newsletter-write-check-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        _fail(
            f"cannot write to the folder {path} ({named_by}): {exc.strerror or exc}; "
            f"choose a folder you can write to"
        )


@app.command()
def send(
    subscriber: SubscriberOption = None,
    to: Annotated[
        str | None,
        typer.Option("--to", help="Send one test copy to this address instead: no ledger, no suppression."),
    ] = None,
) -> None:
    """Ingest what is new, then deliver today's digests now.

    Uses SMTP when NEWSLETTER_SMTP_HOST is set, else writes .eml files to NEWSLETTER_OUTBOX_DIR.
    Safe to repeat: nobody gets a second digest for the same day. Exits 1 if any delivery
    failed or the run stopped early. With --to, sends the digest of --subscriber (default: the
    first active one) to that address as a "[test]" copy and records nothing.
    """
    settings = _settings()
    if to is not None:
        _send_test(settings, to, subscriber)
        return
    chosen = _subscribers(settings, subscriber)
    with _operator_errors():
        runtime = Runtime(settings)
        _ingest(runtime)
        report = _with_progress("Sending…", lambda p: dispatch.run_day(runtime, chosen, progress=p))
    _summary("Delivery", report.outcomes)
    out.print(report.summary(), highlight=False, soft_wrap=True, markup=False)
    if not report.ok:
        raise typer.Exit(1)


def _send_test(settings: Settings, to: str, only: str | None) -> None:
    try:
        address = validate_email(to, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        _fail(f"--to {to!r} is not an email address: {exc}")
    candidates = [s for s in _subscribers(settings, only) if only or s.active]
    if not candidates:
        _fail(f"no active subscriber in {settings.subscribers_file} to take the digest from; name one with --subscriber")
    with _operator_errors():
        runtime = Runtime(settings)
        _ingest(runtime)
        outcome = send_copy(
            runtime.store, candidates[0], runtime.sender, runtime.transport(),
            to_address=address, semantic_model=semantic_model(settings),
        )
    out.print(
        f"Sent {candidates[0].email}'s digest ({outcome.papers} papers) to {address} "
        f"via {'SMTP' if settings.uses_smtp else 'the outbox ' + str(settings.outbox_dir)}: {outcome.subject}",
        highlight=False, soft_wrap=True, markup=False,
    )


@app.command()
def resend(
    subscriber: Annotated[str, typer.Option("--subscriber", help="Whose digest (their email address).")],
    day: Annotated[
        str | None, typer.Option("--day", help="The digest's day, YYYY-MM-DD (default: today in their time zone).")
    ] = None,
) -> None:
    """Send a day's digest to its subscriber again, deliberately: the same papers, a new
    Message-ID. For a digest that was lost on the way; it counts one more round in the ledger."""
    settings = _settings()
    try:
        chosen_day = date.fromisoformat(day) if day else None
    except ValueError:
        _fail(f"--day {day!r} is not a date (YYYY-MM-DD)")
    [entry] = _subscribers(settings, subscriber)
    with _operator_errors():
        runtime = Runtime(settings)
        outcome = send_copy(
            runtime.store, entry, runtime.sender, runtime.transport(), day=chosen_day,
            semantic_model=semantic_model(settings),
        )
    out.print(
        f"Resent {entry.email}'s digest ({outcome.papers} papers) via {runtime.transport_label}: "
        f"{outcome.subject} ({outcome.detail})",
        highlight=False, soft_wrap=True, markup=False,
    )


@app.command()
def suppressed(
    clear: Annotated[
        str | None, typer.Option("--clear", help="Mail this address again: forget its failures.")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Also list addresses with failures below the threshold.")] = False,
) -> None:
    """List addresses that are no longer mailed after repeated permanent failures."""
    settings = _settings()
    with _operator_errors():
        store = Store(settings.database_url)
        if clear is not None:
            if not store.clear_suppression(clear):
                _fail(f"{clear} is not on the suppression list")
            out.print(f"Cleared {clear}: it will be mailed again from the next run.", highlight=False, markup=False)
            return
        rows = store.suppressions(include_pending=all_)
    if not rows:
        out.print("No suppressed addresses.")
        return
    table = Table(
        title=f"Suppressed after {settings.suppress_after} permanent failures in a row "
        "(clear one with --clear ADDRESS)",
        title_justify="left",
    )
    for column in ("address", "failures", "since", "last error"):
        table.add_column(column, overflow="fold")
    for row in rows:
        since = f"{row.suppressed_at:%Y-%m-%d %H:%M}" if row.suppressed_at else "(not yet)"
        table.add_row(row.address, str(row.failures), since, escape(row.last_error or ""))
    out.print(table)


@app.command()
def ingest(
    path: Annotated[
        Path | None, typer.Argument(help="A dump file or folder [default: NEWSLETTER_DUMPS_DIR].")
    ] = None,
) -> None:
    """Ingest dumps now: new or changed files are parsed and their papers stored."""
    settings = _settings()
    with _operator_errors():
        report = _ingest(Runtime(settings), path)
    if report.rejected:
        raise typer.Exit(1)


@app.command()
def rank(
    dumps: Annotated[Path, typer.Option("--dumps", help="A dump file or a folder of dumps.")],
    keyword: Annotated[list[str], typer.Option("--keyword", "-k", help="A keyword; repeat for more.")],
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="Never pick papers matching this.")] = None,
    top: Annotated[int, typer.Option("--top", min=1, help="How many would be mailed (max_papers).")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array in rank order.")] = False,
) -> None:
    """Rank every paper in a dump file or folder for an ad-hoc profile. Touches no state."""
    set_aside: list[DumpError] = []
    with _operator_errors():
        encoder = semantic_encoder(_settings())
        ranked = pipeline.rank_dump_path(
            dumps, keyword, top=top, exclude=exclude or (), encoder=encoder, set_aside=set_aside
        )
    for error in set_aside:
        console.print(f"[red]Set aside:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
    if as_json:
        items = [
            {
                "id": r.paper.paper_id,
                "title": r.paper.title,
                "score": round(r.score, 4),
                "matched": [{"keyword": m.keyword, "fields": list(m.fields)} for m in r.matched],
                "picked": r.picked,
                "link": r.paper.link,
            }
            for r in ranked
        ]
        sys.stdout.write(json.dumps(items, ensure_ascii=False, indent=2) + "\n")
        return
    table = Table(title=f"{plural(len(ranked), 'matching paper')}", title_justify="left")
    for column in ("#", "score", "picked", "title", "matched"):
        table.add_column(column, overflow="fold")
    for position, r in enumerate(ranked, start=1):
        matched = ", ".join(f"{m.keyword} ({'+'.join(m.fields)})" for m in r.matched)
        table.add_row(str(position), f"{r.score:.2f}", "yes" if r.picked else "", escape(r.paper.title), escape(matched))
    out.print(table)


@app.command()
def parse(
    path: Annotated[Path, typer.Argument(help="A dump file or a folder of dumps.")],
    as_json: Annotated[
        bool, typer.Option("--json", help='Print {"papers": [...], "rejected": [...]}.')
    ] = False,
) -> None:
    """Show what a dump file or folder yields: format and every paper. Touches no state.

    Exit 1 when a file cannot be parsed (it is listed under "rejected"), 0 otherwise.
    """
    with _operator_errors():
        report = ingesting.parse_path(path)
    papers = [
        {**_paper_json(paper), "format": dump.format, "source_file": str(file)}
        for file, dump in report.parsed
        for paper in dump.papers
    ]
    skipped = [
        {"file": str(file), "line": issue.line, "reason": issue.reason}
        for file, dump in report.parsed
        for issue in dump.issues
    ]
    rejected = [{"file": e.path, "line": e.line, "reason": e.reason} for e in report.rejected]
    if as_json:
        document = {"papers": papers, "rejected": rejected, "skipped": skipped}
        sys.stdout.write(json.dumps(document, ensure_ascii=False, indent=2) + "\n")
    else:
        _print_parsed(report, skipped)
    if report.rejected:
        raise typer.Exit(1)


def _paper_json(paper: Paper) -> dict[str, object]:
    return {
        "id": paper.paper_id,
        "title": paper.title,
        "arxiv_id": paper.arxiv_id,
        "authors": list(paper.authors),
        "author_count": paper.author_count,
        "organization": paper.organization,
        "published": paper.published.isoformat() if paper.published else None,
        "upvotes": paper.upvotes,
        "url": paper.url,
        "abstract": paper.abstract,
    }


def _print_parsed(report: ingesting.ParseReport, skipped: list[dict[str, object]]) -> None:
    distinct: set[str] = set()
    for file, dump in report.parsed:
        table = Table(
            title=f"{file}: {dump.format}, {len(dump.papers)} papers"
            + (f", listing {dump.listing_date}" if dump.listing_date else ""),
            title_justify="left",
        )
        for column in ("id", "title", "arXiv id", "authors", "date", "upvotes"):
            table.add_column(column, overflow="fold")
        for paper in dump.papers:
            distinct.add(paper.paper_id)
            table.add_row(
                paper.paper_id, escape(paper.title), paper.arxiv_id or "", escape(paper.byline),
                paper.published.isoformat() if paper.published else "",
                "" if paper.upvotes is None else str(paper.upvotes),
            )
        out.print(table)
    for entry in skipped:
        console.print(
            f"[yellow]Skipped entry:[/] {escape(str(entry['file']))}:{entry['line']}: "
            f"{escape(str(entry['reason']))}", highlight=False, soft_wrap=True,
        )
    for error in report.rejected:
        console.print(f"[red]Set aside:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
    out.print(
        f"{len(report.parsed)} files parsed, {len(report.rejected)} set aside; "
        f"{len(distinct)} distinct papers.", highlight=False,
    )


@app.command()
def check(
    smtp: Annotated[
        bool, typer.Option("--smtp", help="Also connect to the SMTP server: TLS, login, quit; sends nothing.")
    ] = False,
) -> None:
    """Validate settings, the subscribers file and the dumps; exit 1 on any problem."""
    settings = _settings()
    out.print("Settings: ok")
    out.print(f"Transport: {escape(_transport(settings))}", highlight=False, soft_wrap=True)
    failed = not _check_database(settings)
    try:
        chosen = _subscribers(settings, None, strict=True)
        out.print(f"Subscribers: {len(chosen)} valid in {settings.subscribers_file}{_unsubscribed_note(settings, chosen)}")
    except typer.Exit:
        failed = True
    files = ingesting.dump_files(settings.dumps_dir)
    if not settings.dumps_dir.exists():
        _problem("Dumps", f"folder {settings.dumps_dir} does not exist (NEWSLETTER_DUMPS_DIR)")
        failed = True
    for file in files:
        try:
            parsed = ingesting.read_dump(file)
        except NewsletterError as exc:
            _problem("Dump", str(exc))
            failed = True
            continue
        for issue in parsed.issues:
            console.print(f"[yellow]Dump:[/] {escape(str(file))}:{issue.line}: {escape(issue.reason)}", highlight=False)
    out.print(f"Dumps: {plural(len(files), 'file')} in {settings.dumps_dir}")
    failed = not _check_ranking(settings) or failed
    if smtp:
        failed = not _check_smtp(settings) or failed
    if failed:
        raise typer.Exit(1)
    out.print("All good.")


def _problem(label: str, message: str) -> None:
    """A failed check: a red `Label: message` line, or an error event in JSON log mode."""
    if isinstance(sys.stderr, StderrToLog):
        logging.getLogger(CLI_LOGGER).error(message, extra=fields(check=label.lower()))
        return
    console.print(f"[red]{label}:[/] {escape(message)}", highlight=False, soft_wrap=True)


def _transport(settings: Settings) -> str:
    """Which way digests will go, in words."""
    if settings.uses_smtp:
        login = f", as {settings.smtp_username}" if settings.smtp_username else ""
        return f"SMTP {settings.smtp_host}:{settings.smtp_port} ({settings.smtp_security}{login})"
    return (
        f"outbox folder {settings.outbox_dir} (.eml files; nothing is mailed until "
        "NEWSLETTER_SMTP_HOST is set)"
    )


def _unsubscribed_note(settings: Settings, chosen: list[Subscriber]) -> str:
    """", N skipped: unsubscribed (...)" for entries whose address unsubscribed itself."""
    try:
        store = Store(settings.database_url)
        try:
            gone = store.unsubscribed_addresses()
        finally:
            store.close()
    except NewsletterError:
        return ""  # the database check below reports it
    skipped = [s.email for s in chosen if s.email.casefold() in gone]
    if not skipped:
        return ""
    shown = ", ".join(skipped[:3]) + (f" and {len(skipped) - 3} more" if len(skipped) > 3 else "")
    return f"; {plural(len(skipped), 'entry', 'entries')} skipped: unsubscribed ({shown})"


def _check_database(settings: Settings) -> bool:
    """Open the database (which creates or migrates its schema), say what serves it, and
    check a write would succeed."""
    try:
        store = Store(settings.database_url)
        try:
            store.check_writable()
            version, schema = store.server_version(), store.migration.describe()
        finally:
            store.close()
    except NewsletterError as exc:
        _problem("Error", str(exc))  # an operator mistake: one Error: line, as every command gives it
        return False
    out.print(
        f"Database: ok ({version} at {escape(shown_url(settings.database_url))}, writable; schema {schema})",
        highlight=False, soft_wrap=True,
    )
    return True


def _check_ranking(settings: Settings) -> bool:
    """Say how digests will be ranked; load the semantic model when it is on, so that a
    broken NEWSLETTER_SEMANTIC_MODEL shows here and not as a lexical run in the log."""
    encoder = semantic_encoder(settings)
    if encoder is None:
        why = "NEWSLETTER_SEMANTIC_MODEL is off" if semantic.installed() else "the semantic extra is not installed"
        out.print(f"Ranking: lexical ({why})")
        return True
    try:
        dimensions = encoder.dimension
    except ConfigError as exc:
        _problem("Ranking", str(exc))
        return False
    out.print(f"Ranking: hybrid (model {escape(encoder.model)} loaded, {dimensions} dimensions)")
    return True


def _check_smtp(settings: Settings) -> bool:
    if not settings.uses_smtp:
        _problem("SMTP", "NEWSLETTER_SMTP_HOST is not set; digests go to the outbox folder")
        return False
    steps = asyncio.run(check_smtp(settings))
    for step in steps:
        mark = "[green]ok[/]  " if step.ok else "[red]FAIL[/]"
        out.print(f"SMTP {mark} {step.name:<8} {escape(step.detail)} ({step.seconds * 1000:.0f} ms)", highlight=False, soft_wrap=True)
    return bool(steps) and all(step.ok for step in steps)


@app.command()
def migrate() -> None:
    """Upgrade the database to this version's schema, keeping every row (commands that open
    the database do it too; run it on its own to upgrade before starting the service)."""
    settings = _settings()
    with _operator_errors():
        store = Store(settings.database_url)
    try:
        out.print(
            f"Database {escape(safe_url(settings.database_url))} ({store.server_version()}): "
            f"{store.migration.describe()}.",
            highlight=False, soft_wrap=True,
        )
    finally:
        store.close()


@app.command()
def run() -> None:
    """Run the scheduler until SIGINT/SIGTERM: ingest new dumps every NEWSLETTER_POLL_SECONDS
    and send each subscriber's digest at their send_at in their time zone."""
    from newsletter.scheduler import run_service

    settings = _settings()
    with _operator_errors():
        run_service(settings)


@app.command()
def worker(
    loglevel: Annotated[str, typer.Option("--loglevel", help="Celery's log level (DEBUG, INFO, WARNING).")] = "INFO",
) -> None:
    """Take shards of the day's sends from NEWSLETTER_BROKER_URL (Redis or RabbitMQ) and deliver
    them, one at a time, until SIGTERM/SIGINT (the shard in hand is finished first). Run one per
    core, on as many machines as you like, all with the same settings and subscribers file."""
    settings = _settings()
    if settings.broker is None:
        _fail("NEWSLETTER_BROKER_URL is not set: a worker takes shards from a Redis or RabbitMQ broker, "
              "e.g. NEWSLETTER_BROKER_URL=redis://127.0.0.1:6379/0")
    try:
        from newsletter.workers import run_worker
    except ImportError as exc:
        _fail(f"newsletter worker needs Celery ({exc.name} is not installed): pip install 'newsletter[celery]'")
    with _operator_errors():
        run_worker(settings, loglevel=loglevel.upper())


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option("--host", help="Address to listen on [default: NEWSLETTER_SERVE_HOST or 127.0.0.1].")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", min=0, max=65535, help="Port [default: NEWSLETTER_SERVE_PORT or 8000].")
    ] = None,
) -> None:
    """Answer the links in the digests: one-click unsubscribe, view in browser, feedback.

    Runs until SIGINT/SIGTERM. Digests link here when NEWSLETTER_PUBLIC_URL is set (behind a TLS
    reverse proxy); `GET /healthz` answers 200 while the store is reachable.
    """
    from newsletter.web.server import serve as serve_web

    settings = _settings()
    host = host or settings.serve_host
    port = settings.serve_port if port is None else port
    if not settings.public_url:
        console.print(
            "[yellow]Warning:[/] NEWSLETTER_PUBLIC_URL is not set, so digests do not link here; "
            "set it (and NEWSLETTER_SECRET_KEY) to the URL where this service is reachable",
            highlight=False, soft_wrap=True,
        )
    console.print(f"Serving on http://{host}:{port} (stop with Ctrl-C)", highlight=False, markup=False)
    with _operator_errors():
        serve_web(settings, host=host, port=port)


def _address(value: str) -> str:
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        _fail(f"{value!r} is not an email address: {exc}")


@app.command()
def unsubscribe(email: Annotated[str, typer.Argument(help="The address to stop mailing.")]) -> None:
    """Stop mailing EMAIL, as its unsubscribe link would (wins over `active: true` in the file)."""
    settings = _settings()
    address = _address(email)
    with _operator_errors():
        changed = Store(settings.database_url).unsubscribe(address, source="cli")
    state = "is now unsubscribed" if changed else "was already unsubscribed"
    out.print(f"{address} {state}: no more digests until `newsletter resubscribe {address}`.", highlight=False, markup=False)


@app.command()
def resubscribe(email: Annotated[str, typer.Argument(help="The address to mail again.")]) -> None:
    """Mail EMAIL again after it unsubscribed (its entry in the subscribers file still decides the rest)."""
    settings = _settings()
    address = _address(email)
    with _operator_errors():
        changed = Store(settings.database_url).resubscribe(address)
    if changed:
        out.print(f"{address} is subscribed again: it gets the next digest.", highlight=False, markup=False)
    else:
        out.print(f"{address} had not unsubscribed; nothing changed.", highlight=False, markup=False)


# `status` and `history` live in their own module; importing it registers them on `app`.
from newsletter import cli_reports  # noqa: E402,F401
