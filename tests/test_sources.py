"""Dump parsing: the real HF captures in ../shared/dumps, hand-made fixtures, and properties."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.errors import DumpError
from newsletter.models import DumpIssue, Paper, ParsedDump
from newsletter.sources import (
    detect_format,
    fallback_date_for,
    listing_year_hint,
    parse_dump,
    resolve_yearless,
)

FIXTURES = Path(__file__).parent / "fixtures"
FALLBACK = date(2026, 11, 23)
REAL_COUNTS = {"000": 45, "001": 92, "002": 47, "004": 56}
HEADER = (
    "new\n\nGet trending papers in your email inbox!\n\nSubscribe\n\nDaily Papers\n\n"
    "byAK and the research community\n\n"
)


def parse_file(path: Path, fallback_date: date = FALLBACK) -> ParsedDump:
    return parse_dump(
        path.read_text(encoding="utf-8"), source_name=path.name, fallback_date=fallback_date
    )


def by_title(dump: ParsedDump) -> dict[str, Paper]:
    return {paper.title: paper for paper in dump.papers}


@pytest.fixture
def real_dumps(shared_dumps: Path) -> dict[str, ParsedDump]:
    return {path.name[:3]: parse_file(path) for path in sorted(shared_dumps.glob("*.txt"))}


# --- the real captures -------------------------------------------------------------------


def test_real_dumps_all_parse_as_hf_text_without_issues(real_dumps: dict[str, ParsedDump]) -> None:
    assert {name: len(dump.papers) for name, dump in real_dumps.items()} == REAL_COUNTS
    assert {dump.format for dump in real_dumps.values()} == {"hf-text"}
    assert all(dump.issues == () for dump in real_dumps.values())


def test_real_dumps_hold_229_distinct_papers_11_of_them_twice(
    real_dumps: dict[str, ParsedDump],
) -> None:
    seen = Counter(paper.paper_id for dump in real_dumps.values() for paper in dump.papers)
    assert sum(seen.values()) == 240
    assert len(seen) == 229
    assert sorted(Counter(seen.values()).items()) == [(1, 218), (2, 11)]


def test_real_listing_dates_take_the_fallback_year(real_dumps: dict[str, ParsedDump]) -> None:
    assert {name: dump.listing_date for name, dump in real_dumps.items()} == {
        "000": date(2026, 4, 15),
        "001": date(2026, 8, 13),
        "002": date(2026, 1, 6),
        "004": date(2026, 3, 6),
    }


def test_real_metadata_counts(real_dumps: dict[str, ParsedDump]) -> None:
    papers = [paper for dump in real_dumps.values() for paper in dump.papers]
    assert sum(paper.published is None for paper in papers) == 96
    assert sum(paper.author_count is not None for paper in papers) == 138
    assert sum(paper.organization is not None for paper in papers) == 6
    assert sum(paper.upvotes is not None for paper in papers) == 37
    assert all(paper.arxiv_id is None and paper.abstract for paper in papers)


def test_real_author_count_entry_with_yearless_date(real_dumps: dict[str, ParsedDump]) -> None:
    paper = by_title(real_dumps["000"])[
        "Speaking to Silicon: Neural Communication with Bitcoin Mining ASICs"
    ]
    assert (paper.author_count, paper.organization) == (3, None)
    assert (paper.published, paper.upvotes) == (date(2026, 1, 17), None)
    assert paper.abstract.startswith("This definitive research memoria presents")
    assert paper.abstract.endswith("exploitable computational information.")


def test_real_entries_with_years_and_upvotes(real_dumps: dict[str, ParsedDump]) -> None:
    papers = by_title(real_dumps["000"])
    compositional = papers[
        "Compositional Generalization Requires Linear, Orthogonal Representations "
        "in Vision Embedding Models"
    ]
    assert (compositional.published, compositional.upvotes) == (date(2026, 2, 27), 3)
    assert compositional.author_count == 3
    calculus = papers["The Functional Machine Calculus III: Control"]
    assert (calculus.published, calculus.upvotes, calculus.author_count) == (
        date(2025, 10, 9),
        None,
        1,
    )
    bigcode = next(paper for paper in papers.values() if paper.title.startswith("BigCodeBench"))
    assert (bigcode.organization, bigcode.published, bigcode.upvotes) == (
        "BigCode",
        date(2024, 6, 22),
        8,
    )


def test_real_organisation_entries(real_dumps: dict[str, ParsedDump]) -> None:
    meta = by_title(real_dumps["000"])["The Art of Scaling Reinforcement Learning Compute for LLMs"]
    assert (meta.organization, meta.author_count) == ("AI at Meta", None)
    assert (meta.published, meta.upvotes) == (date(2025, 10, 15), 2)
    teaching = by_title(real_dumps["004"])[
        "Teaching Models to Teach Themselves: Reasoning at the Edge of Learnability"
    ]
    assert (teaching.organization, teaching.published, teaching.upvotes) == (
        "AI at Meta",
        date(2026, 1, 26),
        3,
    )
    organisations = sorted(
        paper.organization
        for dump in real_dumps.values()
        for paper in dump.papers
        if paper.organization
    )
    assert organisations == [
        "AI at Meta", "AI at Meta", "BigCode", "DeepSeek", "Salesforce", "Tencent"
    ]  # fmt: skip


def test_real_dump_without_any_metadata(real_dumps: dict[str, ParsedDump]) -> None:
    dump = real_dumps["001"]
    assert len(dump.papers) == 92
    for paper in dump.papers:
        assert paper.author_count is None and paper.organization is None
        assert paper.published is None and paper.upvotes is None
    assert dump.papers[0].title == (
        "Disentangling Shape and Pose for Object-Centric Deep Active Inference Models"
    )
    assert dump.papers[-1].title == (
        "AssertionBench: A Benchmark to Evaluate Large-Language Models for Assertion Generation"
    )


def test_real_year_comes_from_fallback_date(shared_dumps: Path) -> None:
    # Apr 15 is after Apr 1, 2026, so the listing is Apr 15, 2025, and Jan 17 follows it.
    dump = parse_file(next(shared_dumps.glob("000_*.txt")), fallback_date=date(2026, 4, 1))
    assert dump.listing_date == date(2025, 4, 15)
    silicon = by_title(dump)["Speaking to Silicon: Neural Communication with Bitcoin Mining ASICs"]
    assert silicon.published == date(2025, 1, 17)


# --- hand-made fixtures ------------------------------------------------------------------


def test_small_text_fixture() -> None:
    dump = parse_file(FIXTURES / "hf_text_small.txt")
    assert (dump.format, dump.listing_date, dump.issues) == ("hf-text", date(2026, 3, 2), ())
    assert [(p.author_count, p.organization, p.published, p.upvotes) for p in dump.papers] == [
        (3, None, date(2026, 1, 17), None),
        (None, "DeepSeek", date(2026, 2, 27), 3),
        (1, None, date(2025, 10, 9), None),
        (None, None, None, None),
        (12, None, date(2025, 12, 30), 41),  # Dec 30 of 2026 would follow the Mar 2 listing
    ]


def test_malformed_entries_become_issues_and_the_rest_survives() -> None:
    dump = parse_file(FIXTURES / "hf_text_malformed.txt")
    assert [paper.title for paper in dump.papers] == [
        "A Good Paper Before the Trouble",
        "Orphaned Title Followed by a Real Entry",
        "The Last Good Paper",
    ]
    assert dump.papers[1].abstract.startswith("This abstract belongs to the orphaned title")
    assert (dump.papers[1].author_count, dump.papers[1].upvotes) == (5, 2)
    assert dump.issues == (
        DumpIssue(21, "title 'Title Whose Abstract Went Missing' has no abstract"),
        DumpIssue(27, "title 'Another Title Without Abstract' has no abstract"),
        DumpIssue(
            41,
            "unreadable date line 'Smarch 40' in metadata block; "
            "entry 'Entry With a Broken Date' skipped",
        ),
        DumpIssue(45, "stray '·' line outside a metadata block"),
    )


def test_json_dump_named_txt_is_detected_by_content() -> None:
    path = FIXTURES / "daily_papers_2026-03-02.txt"
    assert detect_format(path.read_text(encoding="utf-8")) == "hf-json"
    dump = parse_file(path)
    assert dump.format == "hf-json"
    assert dump.listing_date == date(2026, 3, 2)
    first, second, by_title_only = dump.papers
    assert first == Paper(
        title="Lean Agents: Proving Theorems with Tools",
        abstract="We give an agent a proof assistant and measure what it proves.",
        arxiv_id="2603.01234",
        authors=("Ada Lovelace", "Alan Turing"),
        author_count=2,
        organization="DeepSeek",
        published=date(2026, 2, 27),
        upvotes=42,
    )
    assert first.paper_id == "arxiv:2603.01234"
    assert (second.paper_id, second.upvotes) == ("arxiv:2602.09876", 0)  # version dropped
    assert by_title_only.paper_id.startswith("title:")
    assert (by_title_only.upvotes, by_title_only.published) == (None, None)
    assert dump.issues == (
        DumpIssue(3, "item 3: no title; skipped"),
        DumpIssue(4, "item 4: expected an object, found a string; skipped"),
    )


def test_markdown_fixture() -> None:
    dump = parse_file(FIXTURES / "hf_markdown_small.md")
    assert (dump.format, dump.listing_date) == ("hf-markdown", date(2026, 3, 2))
    first, second, third = dump.papers
    assert first.title == "Proof Search with Tiny Language Models"
    assert first.abstract == (
        "We train small models to find proofs in Lean [and Coq] and report what they solve."
    )
    assert (first.paper_id, first.author_count, first.upvotes) == ("arxiv:2603.00001", 3, 101)
    assert (second.paper_id, second.author_count, second.upvotes, second.published) == (
        "arxiv:2602.00002",
        1,
        7,
        date(2026, 2, 27),
    )
    # A card that links its paper is a paper even when the capture shows no abstract.
    assert (third.title, third.abstract, third.paper_id) == (
        "A Heading Without Abstract", "", "arxiv:2603.00003"
    )
    assert (third.author_count, third.upvotes, dump.issues) == (2, 3, ())


def test_crlf_and_byte_order_mark_keep_line_numbers() -> None:
    text = (FIXTURES / "hf_text_malformed.txt").read_text(encoding="utf-8")
    dump = parse_dump(
        "\ufeff" + text.replace("\n", "\r\n"), source_name="crlf.txt", fallback_date=FALLBACK
    )
    assert dump == parse_file(FIXTURES / "hf_text_malformed.txt")


# --- whole-file errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "shown"),
    [
        ("# newsletter\n\nTurns dumps into digests.\n", 1, "'# newsletter'"),
        ("\n\nid,title,score\n1,Attention,0.9\n", 3, "'id,title,score'"),
        ("[![build](https://ci.example.org/badge.svg)](https://ci.example.org)\n", 1, None),
    ],
)
def test_non_dump_text_is_refused_naming_its_first_line(
    text: str, line: int, shown: str | None
) -> None:
    with pytest.raises(DumpError) as caught:
        parse_dump(text, source_name="notes.txt", fallback_date=FALLBACK)
    first = text.strip().split("\n")[0]
    assert caught.value.reason == (
        "not a recognised dump: no paper card found (expected an HF papers capture as text, "
        "Markdown, HTML or JSON, or an arXiv feed); "
        f"first line was {shown or repr(first)}"
    )
    assert (caught.value.path, caught.value.line) == ("notes.txt", line)
    assert str(caught.value).startswith(f"notes.txt:{line}: not a recognised dump")


def test_empty_file_is_refused() -> None:
    with pytest.raises(DumpError, match=r"^empty\.txt: not a recognised dump: the file is empty$"):
        parse_dump("  \n\n", source_name="empty.txt", fallback_date=FALLBACK)


def test_header_without_papers_is_an_error() -> None:
    with pytest.raises(DumpError) as caught:
        parse_dump(HEADER + "Apr 15\n", source_name="hollow.txt", fallback_date=FALLBACK)
    assert caught.value.reason == "no papers found after the Daily Papers header"
    assert caught.value.line == 9  # the header's last line


def test_header_with_only_broken_entries_names_the_first_problem() -> None:
    text = HEADER + "Apr 15\n\nA Lonely Title\n\n  • 2 authors\n·\nJan 3\n"
    with pytest.raises(DumpError) as caught:
        parse_dump(text, source_name="broken.txt", fallback_date=FALLBACK)
    assert caught.value.reason == (
        "no papers found after the Daily Papers header; "
        "first problem at line 13: title 'A Lonely Title' has no abstract"
    )


@pytest.mark.parametrize(
    ("text", "reason", "line"),
    [
        ('[\n  {"paper": {"title": "x"}},\n  oops\n]',
         "invalid JSON: Expecting value (column 3)", 3),
        ('{"papers": []}', "expected a JSON list of daily-paper objects, found an object", 1),
        ('[{"paper": {"summary": "no title"}}]', "no usable paper in the JSON list; "
         "item 1: no title; skipped", 1),
    ],
)  # fmt: skip
def test_json_errors(text: str, reason: str, line: int) -> None:
    with pytest.raises(DumpError) as caught:
        parse_dump(text, source_name="api.json", fallback_date=FALLBACK)
    assert (caught.value.reason, caught.value.line, caught.value.path) == (reason, line, "api.json")


def test_empty_json_list_is_a_day_without_papers() -> None:
    dump = parse_dump("[]", source_name="api.json", fallback_date=FALLBACK)
    assert (dump.format, dump.papers, dump.issues, dump.listing_date) == ("hf-json", (), (), None)


# --- dates -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("hf-2026-04-15.txt", date(2026, 4, 15)),
        ("2025-12-31_daily.md", date(2025, 12, 31)),
        ("dump-2026-02-30.txt", None),
        ("000_99b441e38967e2e4.txt", None),
        ("x12026-04-15.txt", None),
    ],
)
def test_listing_year_hint(name: str, expected: date | None) -> None:
    assert listing_year_hint(name) == expected


def test_fallback_date_prefers_the_file_name() -> None:
    assert fallback_date_for("hf-2026-04-15.txt", date(2026, 11, 23)) == date(2026, 4, 15)
    assert fallback_date_for("000_abc.txt", date(2026, 11, 23)) == date(2026, 11, 23)


@pytest.mark.parametrize(
    ("month", "day", "listing", "expected"),
    [
        (1, 17, date(2026, 4, 15), date(2026, 1, 17)),
        (4, 15, date(2026, 4, 15), date(2026, 4, 15)),
        (4, 16, date(2026, 4, 15), date(2025, 4, 16)),
        (2, 29, date(2026, 3, 1), date(2024, 2, 29)),
        (2, 30, date(2026, 3, 1), None),
        (13, 1, date(2026, 3, 1), None),
    ],
)
def test_resolve_yearless(month: int, day: int, listing: date, expected: date | None) -> None:
    assert resolve_yearless(month, day, listing) == expected


# --- properties --------------------------------------------------------------------------

LINE_PIECES = st.sampled_from(
    ["", "·", "  • 3 authors", "Jan 17", "Feb 27 3", "Oct 9, 2025", "Feb 30",
     "deepseek-ai DeepSeek", "A Title", "An abstract sentence.", "### [T](https://huggingface.co/papers/2401.00001)",
     "[x](https://huggingface.co/papers/2401.00001)", "[5](https://x)", "- 2 authors", "\\", "["]
)  # fmt: skip
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


def parses_or_refuses(text: str) -> None:
    try:
        dump = parse_dump(text, source_name="fuzz.txt", fallback_date=FALLBACK)
    except DumpError as exc:
        assert exc.path == "fuzz.txt"
        return
    assert all(paper.title for paper in dump.papers)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_arbitrary_text_parses_or_raises_dump_error(text: str) -> None:
    parses_or_refuses(text)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(LINE_PIECES | st.text(max_size=30), max_size=40), st.sampled_from(["", HEADER]))
def test_dump_shaped_text_parses_or_raises_dump_error(lines: list[str], header: str) -> None:
    parses_or_refuses(header + "\n".join(lines))


@settings(max_examples=200)
@given(JSON_VALUES)
def test_arbitrary_json_parses_or_raises_dump_error(value: object) -> None:
    parses_or_refuses(json.dumps(value))
    parses_or_refuses(json.dumps([{"paper": value}, value]))
