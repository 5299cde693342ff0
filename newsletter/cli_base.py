"""The command line's frame: the Typer app, its consoles, the `-v` and `--version` options,
and the one way operator mistakes end (one `Error:` line, exit 1). The commands live in
`cli.py` and `cli_reports.py`, which both build on this.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version as package_version
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from newsletter.errors import NewsletterError
from newsletter.logs import configure_logging
from newsletter.settings import Settings, load_settings, requested_log_format

VERBOSE_FLAGS = ("-v", "--verbose")


class _VerboseAnywhere(TyperGroup):
    """Accept `-v` after the subcommand too (`newsletter send -v`), as a newcomer types it."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        end = args.index("--") if "--" in args else len(args)
        flags = [a for a in args[:end] if a in VERBOSE_FLAGS]
        rest = [a for a in args[:end] if a not in VERBOSE_FLAGS]
        return super().parse_args(ctx, flags + rest + args[end:])


app = typer.Typer(
    cls=_VerboseAnywhere,
    help="Turn daily dumps of research-paper listings into a personal email digest per subscriber.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: Rich markup ate "[test]" and "[default: ...]" and showed flags as <bool>.
    rich_markup_mode=None,
)
# soft_wrap: a line is never folded at 80 columns when stderr is a file or a pipe.
console = Console(stderr=True, soft_wrap=True)
out = Console()


def _fail(message: str) -> NoReturn:
    console.print(f"[bold red]Error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@contextmanager
def _operator_errors() -> Iterator[None]:
    try:
        yield
    except NewsletterError as exc:
        _fail(str(exc))


def _print_version(wanted: bool) -> None:
    if wanted:
        out.print(f"newsletter {package_version('newsletter')}", highlight=False)
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log each step, and the libraries' own messages.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_print_version, is_eager=True)
    ] = False,
) -> None:
    configure_logging(verbose=verbose, log_format=requested_log_format())  # type: ignore[arg-type]


def _settings() -> Settings:
    try:
        return load_settings()
    except NewsletterError as exc:
        _fail(str(exc))


