"""Watching the dumps folder (issue 13): half-written files wait, bad files are set aside into
rejected/ with an error file and come back when fixed, the same paper in any two formats is one
paper. Real SQLite files under tmp_path; the clock is injected, never read."""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path

import pytest

from newsletter.ingest import ERROR_SUFFIX, REJECTED_DIR, ingest_dumps
from newsletter.store import Store

WILD = Path(__file__).parent / "fixtures" / "wild"
MTIME = 1_776_240_000.0  # 2026-04-15, set on every file written here
BROKEN_JSON = '[{"paper": {"id": "2604.10211", "title": "Sparse Routers"'


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'data' / 'newsletter.db'}")


@pytest.fixture
def dumps(tmp_path: Path) -> Path:
    folder = tmp_path / "dumps"
    folder.mkdir()
    return folder


def put(folder: Path, name: str, content: str | None = None, *, source: str | None = None) -> Path:
    """Write a dump (from text or a wild fixture) with a fixed modification time."""
    path = folder / name
    if source is not None:
        shutil.copyfile(WILD / source, path)
    else:
        path.write_text(content or "", encoding="utf-8")
    os.utime(path, (MTIME, MTIME))
    return path


def clock(at: float):  # type: ignore[no-untyped-def]
    return lambda: at


def test_a_file_modified_moments_ago_waits_for_the_next_poll(store: Store, dumps: Path) -> None:
    put(dumps, "capture.md", source="firecrawl_front_matter.md")
    early = ingest_dumps(store, dumps, settle_seconds=5, now=clock(MTIME + 2))
    assert (early.ingested, early.pending, store.paper_count()) == (
        [], [f"{dumps / 'capture.md'}: modified under 5 s ago"], 0
    )
    later = ingest_dumps(store, dumps, settle_seconds=5, now=clock(MTIME + 6))
    assert (later.pending, later.new_papers, store.paper_count()) == ([], 4, 4)


def test_a_download_in_progress_is_not_read(store: Store, dumps: Path) -> None:
    put(dumps, "papers.html.crdownload", "<html><body><h3>Half a page")
    report = ingest_dumps(store, dumps, settle_seconds=5, now=clock(MTIME + 60))
    assert report.pending == [f"{dumps / 'papers.html.crdownload'}: still being downloaded"]
    assert (report.rejected, list((dumps).iterdir())) == ([], [dumps / "papers.html.crdownload"])


def test_a_bad_dump_moves_to_rejected_with_its_error_file_and_the_rest_goes_on(
    store: Store, dumps: Path
) -> None:
    put(dumps, "a-broken.json", BROKEN_JSON)
    put(dumps, "b-good.md", source="jina_reader.md")
    report = ingest_dumps(store, dumps, settle_seconds=5, now=clock(MTIME + 60))
    assert [Path(path).name for path, _, _ in report.ingested] == ["b-good.md"]
    assert store.paper_count() == 2
    assert report.moved == [str(dumps / REJECTED_DIR / "a-broken.json")]
    assert report.rejected == [
        f"{dumps / 'a-broken.json'}:1: invalid JSON: Expecting ',' delimiter (column 58) "
        f"(moved to {dumps / REJECTED_DIR / 'a-broken.json'}; the reason is in "
        "a-broken.json.error.txt)"
    ]
    assert sorted(path.name for path in dumps.iterdir()) == ["b-good.md", REJECTED_DIR]
    error = (dumps / REJECTED_DIR / f"a-broken.json{ERROR_SUFFIX}").read_text(encoding="utf-8")
    assert error.splitlines()[:3] == [
        "file: a-broken.json",
        "line: 1",
        "problem: invalid JSON: Expecting ',' delimiter (column 58)",
    ]
    assert error.splitlines()[3].startswith("what to do: Fix the capture")
    assert error.splitlines()[4] == "set aside: 2026-04-15T08:01:00+00:00"
    again = ingest_dumps(store, dumps, settle_seconds=5, now=clock(MTIME + 120))
    assert (again.rejected, again.unchanged, again.moved) == ([], 1, [])


def test_a_fixed_file_put_back_is_ingested_and_its_error_file_goes(
    store: Store, dumps: Path
) -> None:
    put(dumps, "api.json", BROKEN_JSON)
    ingest_dumps(store, dumps, now=clock(MTIME + 60))
    assert (dumps / REJECTED_DIR / "api.json").exists()
    (dumps / REJECTED_DIR / "api.json").unlink()
    put(dumps, "api.json", source="hf_api.json")  # the operator saved the response again
    report = ingest_dumps(store, dumps, now=clock(MTIME + 120))
    assert (report.new_papers, report.rejected) == (2, [])
    assert list((dumps / REJECTED_DIR).iterdir()) == []


def test_the_same_file_put_back_unchanged_is_tried_again(store: Store, dumps: Path) -> None:
    put(dumps, "notes.md", "# Notes\n\nNothing to see.\n")
    ingest_dumps(store, dumps, now=clock(MTIME + 60))
    (dumps / REJECTED_DIR / "notes.md").replace(dumps / "notes.md")
    report = ingest_dumps(store, dumps, now=clock(MTIME + 120))
    assert len(report.rejected) == 1 and report.unchanged == 0
    assert (dumps / REJECTED_DIR / "notes.md").exists()


def test_the_same_paper_in_several_formats_is_one_paper(store: Store, dumps: Path) -> None:
    put(dumps, "1-firecrawl.md", source="firecrawl_front_matter.md")  # 10211, 20581, 09876, 03003
    put(dumps, "2-api.json", source="hf_api.json")  # 10211, 09876
    put(dumps, "3-listing.atom", source="arxiv_listing.atom")  # 10211, 09876
    put(dumps, "4-notebook.txt", source="notebook_export_plain.txt")  # 10123, 01318, 08888
    put(dumps, "5-api.atom", source="arxiv_api.atom")  # 10123, 01318, hep-th/9901001
    put(
        dumps,
        "6-seeds-2026-04-15.txt",  # no arXiv id: matched by its title
        "Daily Papers\n\nbyAK and the research community\n\nApr 15\n\n"
        "Draft Trees Beat Draft Chains in Speculative Decoding\n\n"
        "Speculative decoding drafts several tokens with a small model and verifies them.\n",
    )
    report = ingest_dumps(store, dumps, now=clock(MTIME + 60))
    assert (len(report.ingested), report.rejected) == (6, [])
    assert store.paper_count() == 8


def test_the_capture_date_in_a_tools_header_gives_the_listing_year(dumps: Path) -> None:
    from newsletter.ingest import read_dump

    path = put(dumps, "capture.md", source="firecrawl_front_matter.md")  # `retrieved: 2026-04-15`
    os.utime(path, (0, 0))  # a copied file: its mtime (1970) says nothing about the listing
    dump = read_dump(path)
    assert dump.listing_date == date(2026, 4, 15)
    assert dump.papers[0].published == date(2026, 4, 13)  # `Apr 13`, no year on the page


def test_a_bad_dump_in_a_read_only_folder_is_recorded_and_not_read_again(
    store: Store, dumps: Path
) -> None:
    put(dumps, "notes.md", "# Notes\n\nNothing to see.\n")
    (dumps / REJECTED_DIR).write_text("a file where the folder should be")  # mkdir fails
    first = ingest_dumps(store, dumps, now=clock(MTIME + 60))
    # both files are set aside (`rejected` itself is no dump) and neither can move
    assert len(first.rejected) == 2
    assert all("(could not move it to rejected/: File exists)" in line for line in first.rejected)
    assert (dumps / "notes.md").exists() and first.moved == []
    again = ingest_dumps(store, dumps, now=clock(MTIME + 120))
    assert (again.rejected, again.unchanged) == ([], 2)


def test_a_file_dated_in_the_future_is_read(store: Store, dumps: Path) -> None:
    put(dumps, "capture.md", source="jina_reader.md")
    report = ingest_dumps(store, dumps, settle_seconds=5, now=clock(MTIME - 3600))
    assert (report.pending, report.new_papers) == ([], 2)
