"""The `newsletter` command: parses arguments, calls the pipeline, prints the outcome.

No logic of its own. Every operator mistake arrives as a `NewsletterError` and is printed as
one `Error: ...` line with exit code 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import webbrowser
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from email_validator import EmailNotValidError, validate_email

from newsletter import ingest as ingesting, pipeline, semantic, sending
from newsletter.delivery import make_transport
from newsletter.errors import ConfigError, NewsletterError
from newsletter.settings import Settings, load_settings
from newsletter.smtp_check import check_smtp
from newsletter.store import Store
from newsletter.store.base import safe_url
from newsletter.subscribers import Subscriber, SubscriberList, load_subscribers

app = typer.Typer(
    help="Turn daily dumps of research-paper listings into a personal email digest per subscriber.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()
T = TypeVar("T")

SubscriberOption = Annotated[
    str | None, typer.Option("--subscriber", help="Only this subscriber (their email address).")
]


def _fail(message: str) -> NoReturn:
    console.print(f"[bold red]Error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@contextmanager
def _operator_errors() -> Iterator[None]:
    try:
        yield
    except NewsletterError as exc:
        _fail(str(exc))


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each step.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, show_time=verbose)],
    )


def _settings() -> Settings:
    try:
        return load_settings()
    except NewsletterError as exc:
        _fail(str(exc))


def _subscribers(settings: Settings, only: str | None, *, strict: bool = False) -> list[Subscriber]:
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
        return list(loaded.subscribers)
    found = loaded.find(only)
    if found is None:
        _fail(f"{only} is not a valid entry in {settings.subscribers_file}")
    return [found]


def _with_progress(label: str, work: Callable[[Callable[[str], None]], T]) -> T:
    with console.status(label) as status:
        return work(lambda text: status.update(text))


def _ingest(store: Store, settings: Settings, path: Path | None = None) -> ingesting.IngestReport:
    target = path or settings.dumps_dir
    if not target.exists():
        _fail(f"dumps folder {target} does not exist; create it or set NEWSLETTER_DUMPS_DIR")
    report = _with_progress("Ingesting dumps…", lambda p: ingesting.ingest_dumps(store, target, p))
    for line in report.rejected:
        console.print(f"[red]Set aside:[/] {escape(line)}", highlight=False, soft_wrap=True)
    for line in report.warnings:
        console.print(f"[yellow]Warning:[/] {escape(line)}", highlight=False, soft_wrap=True)
    console.print(
        f"Dumps: {len(report.ingested)} ingested, {report.unchanged} unchanged, "
        f"{len(report.rejected)} set aside; {report.new_papers} new papers "
        f"({store.paper_count()} stored).",
        highlight=False,
    )
    return report


SUMMARY_ROWS = 50  # past this many subscribers, the table groups the outcomes by reason


def _summary(title: str, outcomes: list[pipeline.Outcome]) -> None:
    """One row per subscriber; for a long list, the failures alone and the rest by reason."""
    colours = {"sent": "green", "previewed": "green", "failed": "red", "skipped": "yellow"}
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


def _grouped_summary(title: str, outcomes: list[pipeline.Outcome], colours: dict[str, str]) -> None:
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
    with _operator_errors():
        store = Store(settings.database_url)
        _ingest(store, settings)
        outcomes = pipeline.preview(store, chosen, settings, target)
    _summary(f"Preview in {target}/", outcomes)
    rendered = [o.detail for o in outcomes if o.status == "previewed"]
    out.print(f"Open {escape(rendered[0])} in a browser to read it." if rendered else "Nothing to preview.")
    if open_browser and rendered:
        webbrowser.open(Path(rendered[0]).resolve().as_uri())


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
        store = Store(settings.database_url)
        _ingest(store, settings)
        report = _with_progress(
            "Sending…",
            lambda p: sending.send_digests(store, chosen, settings, make_transport(settings), progress=p),
        )
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
        store = Store(settings.database_url)
        _ingest(store, settings)
        outcome = sending.send_test(store, candidates[0], address, settings, make_transport(settings))
    out.print(
        f"Sent {candidates[0].email}'s digest ({outcome.papers} papers) to {address} "
        f"via {'SMTP' if settings.uses_smtp else 'the outbox ' + str(settings.outbox_dir)}: {outcome.subject}",
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
        report = _ingest(Store(settings.database_url), settings, path)
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
    with _operator_errors():
        encoder = pipeline.semantic_encoder(_settings())
        ranked = pipeline.rank_dump_path(
            dumps, keyword, top=top, exclude=exclude or (), encoder=encoder
        )
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
    table = Table(title=f"{len(ranked)} matching papers", title_justify="left")
    for column in ("#", "score", "picked", "title", "matched"):
        table.add_column(column, overflow="fold")
    for position, r in enumerate(ranked, start=1):
        matched = ", ".join(f"{m.keyword} ({'+'.join(m.fields)})" for m in r.matched)
        table.add_row(str(position), f"{r.score:.2f}", "yes" if r.picked else "", escape(r.paper.title), escape(matched))
    out.print(table)


@app.command()
def check(
    smtp: Annotated[
        bool, typer.Option("--smtp", help="Also connect to the SMTP server: TLS, login, quit; sends nothing.")
    ] = False,
) -> None:
    """Validate settings, the subscribers file and the dumps; exit 1 on any problem."""
    settings = _settings()
    out.print(f"Settings: ok (transport: {'SMTP ' + str(settings.smtp_host) if settings.uses_smtp else 'outbox ' + str(settings.outbox_dir)})")
    failed = False
    try:
        chosen = _subscribers(settings, None, strict=True)
        out.print(f"Subscribers: {len(chosen)} valid in {settings.subscribers_file}")
    except typer.Exit:
        failed = True
    files = ingesting.dump_files(settings.dumps_dir)
    if not settings.dumps_dir.exists():
        console.print(f"[red]Dumps:[/] folder {settings.dumps_dir} does not exist (NEWSLETTER_DUMPS_DIR)")
        failed = True
    for file in files:
        try:
            parsed = ingesting.read_dump(file)
        except NewsletterError as exc:
            console.print(f"[red]Dump:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            failed = True
            continue
        for issue in parsed.issues:
            console.print(f"[yellow]Dump:[/] {escape(str(file))}:{issue.line}: {escape(issue.reason)}", highlight=False)
    out.print(f"Dumps: {len(files)} files in {settings.dumps_dir}")
    failed = not _check_store(settings) or failed
    failed = not _check_ranking(settings) or failed
    if smtp:
        failed = not _check_smtp(settings) or failed
    if failed:
        raise typer.Exit(1)
    out.print("All good.")


def _check_store(settings: Settings) -> bool:
    """Open the database (which migrates it, as every command does) and say what serves it."""
    try:
        store = Store(settings.database_url)
    except NewsletterError as exc:
        console.print(f"[bold red]Error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return False
    try:
        out.print(
            f"Store: {store.server_version()} at {escape(safe_url(settings.database_url))}, "
            f"schema {store.migration.describe()}",
            highlight=False, soft_wrap=True,
        )
    finally:
        store.close()
    return True


def _check_ranking(settings: Settings) -> bool:
    """Say how digests will be ranked; load the semantic model when it is on, so that a
    broken NEWSLETTER_SEMANTIC_MODEL shows here and not as a lexical run in the log."""
    encoder = pipeline.semantic_encoder(settings)
    if encoder is None:
        why = "NEWSLETTER_SEMANTIC_MODEL is off" if semantic.installed() else "the semantic extra is not installed"
        out.print(f"Ranking: lexical ({why})")
        return True
    try:
        dimensions = encoder.dimension
    except ConfigError as exc:
        console.print(f"[red]Ranking:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return False
    out.print(f"Ranking: hybrid (model {escape(encoder.model)} loaded, {dimensions} dimensions)")
    return True


def _check_smtp(settings: Settings) -> bool:
    if not settings.uses_smtp:
        console.print("[red]SMTP:[/] NEWSLETTER_SMTP_HOST is not set; digests go to the outbox folder")
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
