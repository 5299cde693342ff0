"""The `newsletter` command: parses arguments, calls the pipeline, prints the outcome.

No logic of its own. Every operator mistake arrives as a `NewsletterError` and is printed as
one `Error: ...` line with exit code 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import logging
import sys
import webbrowser
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from newsletter import pipeline
from newsletter.delivery import make_transport
from newsletter.errors import NewsletterError
from newsletter.settings import Settings, load_settings
from newsletter.store import Store
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
    console.print(f"[bold red]Error:[/] {message}", highlight=False, soft_wrap=True)
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
        console.print(f"[yellow]Skipped:[/] {problem}", highlight=False, soft_wrap=True)
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


def _ingest(store: Store, settings: Settings, path: Path | None = None) -> pipeline.IngestReport:
    target = path or settings.dumps_dir
    if not target.exists():
        _fail(f"dumps folder {target} does not exist; create it or set NEWSLETTER_DUMPS_DIR")
    report = _with_progress("Ingesting dumps…", lambda p: pipeline.ingest_dumps(store, target, p))
    for line in report.rejected:
        console.print(f"[red]Set aside:[/] {line}", highlight=False, soft_wrap=True)
    for line in report.warnings:
        console.print(f"[yellow]Warning:[/] {line}", highlight=False, soft_wrap=True)
    console.print(
        f"Dumps: {len(report.ingested)} ingested, {report.unchanged} unchanged, "
        f"{len(report.rejected)} set aside; {report.new_papers} new papers "
        f"({store.paper_count()} stored).",
        highlight=False,
    )
    return report


def _summary(title: str, outcomes: list[pipeline.Outcome]) -> None:
    table = Table(title=title, title_justify="left")
    for column in ("subscriber", "status", "papers", "detail"):
        table.add_column(column, overflow="fold")
    colours = {"sent": "green", "previewed": "green", "failed": "red", "skipped": "yellow"}
    for o in outcomes:
        detail = o.subject if o.status in ("sent", "previewed") else o.detail
        table.add_row(o.subscriber, f"[{colours[o.status]}]{o.status}[/]", str(o.papers), detail)
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
    out.print(f"Open {rendered[0]} in a browser to read it." if rendered else "Nothing to preview.")
    if open_browser and rendered:
        webbrowser.open(Path(rendered[0]).resolve().as_uri())


@app.command()
def send(subscriber: SubscriberOption = None) -> None:
    """Ingest what is new, then deliver today's digests now.

    Uses SMTP when NEWSLETTER_SMTP_HOST is set, else writes .eml files to NEWSLETTER_OUTBOX_DIR.
    Safe to repeat: nobody gets a second digest for the same day. Exits 1 if any delivery failed.
    """
    settings = _settings()
    chosen = _subscribers(settings, subscriber)
    with _operator_errors():
        store = Store(settings.database_url)
        _ingest(store, settings)
        outcomes = _with_progress(
            "Sending…",
            lambda p: pipeline.send_digests(store, chosen, settings, make_transport(settings), progress=p),
        )
    _summary("Delivery", outcomes)
    counts = {s: sum(o.status == s for o in outcomes) for s in ("sent", "skipped", "failed")}
    out.print(f"{counts['sent']} sent, {counts['skipped']} skipped, {counts['failed']} failed.")
    if counts["failed"]:
        raise typer.Exit(1)


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
        table.add_row(str(position), f"{r.score:.2f}", "yes" if r.picked else "", r.paper.title, matched)
    out.print(table)


@app.command()
def check() -> None:
    """Validate settings, the subscribers file and the dumps; exit 1 on any problem."""
    settings = _settings()
    out.print(f"Settings: ok (transport: {'SMTP ' + str(settings.smtp_host) if settings.uses_smtp else 'outbox ' + str(settings.outbox_dir)})")
    failed = False
    try:
        chosen = _subscribers(settings, None, strict=True)
        out.print(f"Subscribers: {len(chosen)} valid in {settings.subscribers_file}")
    except typer.Exit:
        failed = True
    files = pipeline.dump_files(settings.dumps_dir)
    if not settings.dumps_dir.exists():
        console.print(f"[red]Dumps:[/] folder {settings.dumps_dir} does not exist (NEWSLETTER_DUMPS_DIR)")
        failed = True
    for file in files:
        try:
            parsed = pipeline.read_dump(file)
        except NewsletterError as exc:
            console.print(f"[red]Dump:[/] {exc}", highlight=False, soft_wrap=True)
            failed = True
            continue
        for issue in parsed.issues:
            console.print(f"[yellow]Dump:[/] {file}:{issue.line}: {issue.reason}", highlight=False)
    out.print(f"Dumps: {len(files)} files in {settings.dumps_dir}")
    if failed:
        raise typer.Exit(1)
    out.print("All good.")


@app.command()
def run() -> None:
    """Run the scheduler until SIGINT/SIGTERM: ingest new dumps every NEWSLETTER_POLL_SECONDS
    and send each subscriber's digest at their send_at in their time zone."""
    from newsletter.scheduler import run_service

    settings = _settings()
    with _operator_errors():
        run_service(settings)
