"""Ingest: new or changed files in the dumps folder -> papers in the store.

    dump_files     the files a dumps path names
    read_dump      read and parse one file (format detected from the content)
    ingest_dumps   every new or changed file under a path, stored; bad files set aside
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from newsletter import semantic
from newsletter.errors import DumpError
from newsletter.models import ParsedDump
from newsletter.sources import fallback_date_for, parse_dump
from newsletter.store import Store

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass
class IngestReport:
    files: int = 0
    ingested: list[tuple[str, int, int]] = field(default_factory=list)  # path, papers, new
    embedded: int = 0  # papers embedded for hybrid ranking
    unchanged: int = 0
    rejected: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def new_papers(self) -> int:
        return sum(new for _, _, new in self.ingested)


def dump_files(path: Path) -> list[Path]:
    """The files a dumps path names: the file itself, or the visible files of a folder."""
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
    fallback = fallback_date_for(path.name, date.fromtimestamp(path.stat().st_mtime))
    try:
        return parse_dump(text, source_name=str(path), fallback_date=fallback)
    except DumpError as exc:
        raise exc.at(str(path)) from None


def ingest_dumps(
    store: Store, path: Path, progress: Progress | None = None, encoder: semantic.Encoder | None = None
) -> IngestReport:
    """Ingest every new or changed file under `path`. Unchanged files cost one hash. With an
    `encoder` (hybrid ranking), papers without a vector are embedded and stored now, not at the
    first send."""
    report = IngestReport()
    for file in dump_files(path):
        report.files += 1
        try:
            content = file.read_bytes()
        except OSError as exc:  # unreadable now; not recorded, so it is tried again next time
            report.rejected.append(f"{file}: cannot read the file: {exc.strerror}")
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
            log.error("dump set aside: %s", exc)
            report.rejected.append(str(exc))
            store.record_rejected_dump(path=str(file), sha256=digest, error=str(exc))
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
        report.ingested.append((str(file), len(parsed.papers), new))
        log.info("ingested %s: %d papers, %d new", file, len(parsed.papers), new)
    if encoder is not None:
        report.embedded = semantic.embed_new_papers(store, encoder)
    return report
