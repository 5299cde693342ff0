"""Ingest: new or changed files in the dumps folder -> papers in the store.

    dump_files     the files a dumps path names
    read_dump      read and parse one file (format detected from the content)
    parse_path     every file under a path parsed, nothing stored (`newsletter parse`, `rank`)
    ingest_dumps   every new or changed file under a path, stored; bad files set aside

Watching (issue 13): a file still being written is not read half-way. With `settle_seconds`
(the service passes `WATCH_SETTLE_SECONDS`) a file modified less than that long ago waits for
the next poll; and a file whose size or mtime changes while it is read always does. A file
that cannot be parsed is moved into `rejected/` inside the dumps folder with `NAME.error.txt`
beside it (file, line, what was wrong, what to do); the other files go on. It is not recorded
in the store, so a file put back into the folder (fixed, or for a newer parser) is read again.
The clock (`now`) is injectable.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from newsletter import semantic
from newsletter.errors import DumpError
from newsletter.logs import fields
from newsletter.models import ParsedDump
from newsletter.sources import fallback_date_for, parse_dump
from newsletter.sources.dates import capture_date
from newsletter.store import Store

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
Clock = Callable[[], float]

REJECTED_DIR = "rejected"
ERROR_SUFFIX = ".error.txt"
WATCH_SETTLE_SECONDS = 5.0  # unchanged this long, a dump is complete (browsers, crawlers, cp)
# Names download tools give a file while they are still writing it.
PARTIAL_SUFFIXES = (".part", ".partial", ".crdownload", ".download", ".tmp", ".swp")
WHAT_TO_DO = (
    "Fix the capture (or capture the page again) and put the file back into the dumps folder: "
    "it is read again then. `newsletter parse FILE` shows what a file yields before you drop "
    "it in."
)


@dataclass
class IngestReport:
    files: int = 0
    ingested: list[tuple[str, int, int]] = field(default_factory=list)  # path, papers, new
    embedded: int = 0  # papers embedded for hybrid ranking
    unchanged: int = 0
    rejected: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # still being written: next poll
    moved: list[str] = field(default_factory=list)  # where rejected files went

    @property
    def new_papers(self) -> int:
        return sum(new for _, _, new in self.ingested)


@dataclass
class ParseReport:
    """What every file under a path yields, touching no state."""

    parsed: list[tuple[Path, ParsedDump]] = field(default_factory=list)
    rejected: list[DumpError] = field(default_factory=list)


def dump_files(path: Path) -> list[Path]:
    """The files a dumps path names: the file itself, or the visible files of a folder.

    `rejected/` is a folder, so what was set aside is never listed again.
    """
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))


def read_dump(path: Path, content: bytes | None = None) -> ParsedDump:
    """Read and parse one dump file; raises DumpError naming the file."""
    try:
        raw = path.read_bytes() if content is None else content
        text = raw.decode("utf-8-sig")
    except OSError as exc:
        raise DumpError(f"cannot read the file: {exc.strerror}", path=str(path)) from None
    except UnicodeDecodeError as exc:
        raise DumpError(
            f"not UTF-8 text (byte {exc.start}); save the capture as UTF-8", path=str(path)
        ) from None
    # The listing's year: the file name's date, else the capture date the tool wrote in the
    # file's header, else the file's modification time.
    modified = capture_date(text) or date.fromtimestamp(path.stat().st_mtime)
    fallback = fallback_date_for(path.name, modified)
    try:
        return parse_dump(text, source_name=str(path), fallback_date=fallback)
    except DumpError as exc:
        raise exc.at(str(path)) from None


def parse_path(path: Path) -> ParseReport:
    """Parse every file under `path`; a file that cannot be parsed is reported, not fatal."""
    files = dump_files(path)
    if not files:
        what = "no dump files here" if path.is_dir() else "no such file or folder"
        raise DumpError(what, path=str(path))
    report = ParseReport()
    for file in files:
        try:
            report.parsed.append((file, read_dump(file)))
        except DumpError as exc:
            report.rejected.append(exc)
    return report


def ingest_dumps(
    store: Store,
    path: Path,
    progress: Progress | None = None,
    *,
    settle_seconds: float = 0.0,
    now: Clock = time.time,
    encoder: semantic.Encoder | None = None,
) -> IngestReport:
    """Ingest every new or changed file under `path`. Unchanged files cost one hash.

    When `path` is a folder, files that cannot be parsed are moved to `path/rejected/`. With
    an `encoder` (hybrid ranking), papers without a vector are embedded and stored now, not at
    the first send.
    """
    report = IngestReport()
    watched = path.is_dir()
    for file in dump_files(path):
        report.files += 1
        if file.name.endswith(PARTIAL_SUFFIXES):
            report.pending.append(f"{file}: still being downloaded")
            continue
        content = _settled_content(file, settle_seconds, now, report)
        if content is None:
            continue
        digest = hashlib.sha256(content).hexdigest()
        if store.dump_seen(digest):
            report.unchanged += 1
            continue
        if progress:
            progress(f"ingesting {file.name}")
        try:
            parsed = read_dump(file, content)
        except DumpError as exc:
            log.error("dump set aside", extra=fields(path=str(file), why=exc.reason, line=exc.line))
            report.rejected.append(_put_aside(store, file, digest, exc, watched, now(), report))
            continue
        for issue in parsed.issues:
            report.warnings.append(f"{file}:{issue.line}: skipped entry: {issue.reason}")
        new = store.add_dump(
            path=str(file),
            sha256=digest,
            format=parsed.format,
            listing_date=parsed.listing_date,
            dump_papers_=parsed.papers,
        )
        if watched:  # a file set aside earlier came back fixed: its error file is stale
            (file.parent / REJECTED_DIR / f"{file.name}{ERROR_SUFFIX}").unlink(missing_ok=True)
        report.ingested.append((str(file), len(parsed.papers), new))
        log.info("dump ingested", extra=fields(path=str(file), format=parsed.format, papers=len(parsed.papers), new=new))
    for waiting in report.pending:
        log.info("next poll: %s", waiting)
    if encoder is not None:
        report.embedded = semantic.embed_new_papers(store, encoder)
    return report


def _put_aside(
    store: Store,
    file: Path,
    digest: str,
    error: DumpError,
    watched: bool,
    at: float,
    report: IngestReport,
) -> str:
    """Move a bad dump out of a watched folder, else record it; returns the line to report."""
    note = ""
    if watched:
        try:
            moved = set_aside(file, error, at)
        except OSError as move_error:  # a read-only folder: say so and record it instead
            note = f" (could not move it to {REJECTED_DIR}/: {move_error.strerror})"
        else:
            report.moved.append(str(moved))
            return f"{error} (moved to {moved}; the reason is in {moved.name}{ERROR_SUFFIX})"
    # Not moved: recorded by content hash, so the same bytes are not read again every poll.
    store.record_rejected_dump(path=str(file), sha256=digest, error=str(error))
    return f"{error}{note}"


def _settled_content(
    file: Path, settle_seconds: float, now: Clock, report: IngestReport
) -> bytes | None:
    """The file's bytes if it is complete; None (noted in `report`) while it is written."""
    try:
        before = file.stat()
        # A file dated in the future (another machine's clock) would wait forever: read it.
        if 0 <= now() - before.st_mtime < settle_seconds:
            report.pending.append(f"{file}: modified under {settle_seconds:g} s ago")
            return None
        content = file.read_bytes()
        after = file.stat()
    except OSError as exc:  # vanished or unreadable now; not recorded, so tried again next time
        report.rejected.append(f"{file}: cannot read the file: {exc.strerror}")
        return None
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or len(
        content
    ) != after.st_size:
        report.pending.append(f"{file}: changed while being read")
        return None
    return content


def set_aside(file: Path, error: DumpError, at: float) -> Path:
    """Move `file` into `rejected/` beside it and write `NAME.error.txt`; returns the new path."""
    folder = file.parent / REJECTED_DIR
    folder.mkdir(exist_ok=True)
    target = folder / file.name
    if target.exists():  # an earlier copy of the same name: keep both
        stamp = datetime.fromtimestamp(at, UTC).strftime("%Y%m%dT%H%M%S")
        target = folder / f"{file.stem}.{stamp}{file.suffix}"
    file.replace(target)
    (folder / f"{target.name}{ERROR_SUFFIX}").write_text(
        error_report(target.name, error, at), encoding="utf-8"
    )
    return target


def error_report(name: str, error: DumpError, at: float) -> str:
    """The text of `NAME.error.txt`: file, line, what was wrong, what to do."""
    when = datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")
    return (
        f"file: {name}\n"
        f"line: {error.line if error.line is not None else '-'}\n"
        f"problem: {error.reason}\n"
        f"what to do: {WHAT_TO_DO}\n"
        f"set aside: {when}\n"
    )
