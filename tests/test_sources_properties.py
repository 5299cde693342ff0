"""Property tests for the card finder (issue 13): page chrome, repeated cards, line endings and
Unicode normalisation never change which papers a capture yields."""

from __future__ import annotations

import unicodedata
from datetime import date

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.errors import DumpError
from newsletter.models import Paper
from newsletter.sources import parse_dump

FALLBACK = date(2026, 4, 20)

# Cards as Firecrawl writes them (see tests/fixtures/wild/firecrawl_front_matter.md); the
# titles carry accents, Greek and a dash so that normalisation has something to change.
MARKDOWN_CARDS = [
    "[31](https://huggingface.co/login?next=%2Fpapers%2F2604.20001)\n\n"
    "### [Schrödinger Bridges for Unpaired Translation — Revisited](https://huggingface.co/papers/2604.20001)\n\n"
    "[We revisit Schrödinger bridges for unpaired image translation and show that a learned "
    "reference process halves the transport cost.](https://huggingface.co/papers/2604.20001)\n\n"
    "[- 4 authors](https://huggingface.co/papers/2604.20001)\n\n·\n\nApr 12",
    "[-](https://huggingface.co/login?next=%2Fpapers%2F2604.20002)\n\n"
    "### [β-VAEs Disentangle Less Than Reported\\  on Real Images](https://huggingface.co/papers/2604.20002)\n\n"
    "[Re-running β-VAE disentanglement studies on real photographs, we find the reported\\\\\n"
    "gains shrink to within noise.](https://huggingface.co/papers/2604.20002)\n\n"
    "[![org](https://cdn-avatars.huggingface.co/o.png)Université Paris Cité](https://huggingface.co/upc)\n\n·\n\nMar 3",
    "### [Café-Bench: Agents That Order Coffee](https://github.com/cafe-bench/cafe-bench)\n\n"
    "A benchmark where web agents order coffee on real shop sites, testing forms, payment "
    "pages and error recovery.\n\n- 3 authors\n\n· Published on Apr 2, 2026",
]
MARKDOWN_CHROME = [
    "[Models](https://huggingface.co/models)",
    "* [Log In](https://huggingface.co/login)",
    "# Daily Papers",
    "## by [AK](https://huggingface.co/akhaliq) and the research community",
    "## Papers with Code",
    "Papers with Code is now part of Hugging Face: browse trending papers with their code.",
    "[Trending Papers](https://huggingface.co/papers/trending)",
    "### [acme/vision-7b](https://huggingface.co/acme/vision-7b)",
    "Image-Text-to-Text • 7B • Updated 2 days ago • 12.4k • 210",
    "### [Reading list](https://huggingface.co/collections/nora/reading-list-6611)",
    "System theme",
    "[TOS](https://huggingface.co/terms-of-service) [Privacy](https://huggingface.co/privacy)",
    "---",
    "Title: Daily Papers - Hugging Face",
    "URL Source: https://huggingface.co/papers",
    "Markdown Content:",
]
SEEDS_HEADER = (
    "new\n\nGet trending papers in your email inbox!\n\nSubscribe\n\nDaily Papers\n\n"
    "byAK and the research community\n\nApr 15"
)
SEEDS_CARDS = [
    "Schrödinger Bridges for Unpaired Translation — Revisited\n\nWe revisit Schrödinger bridges "
    "for unpaired image translation and show that a learned reference process halves the "
    "transport cost.\n\n  • 4 authors\n·\nApr 12",
    "β-VAEs Disentangle Less Than Reported on Real Images\n\nRe-running β-VAE disentanglement "
    "studies on real photographs, we find the reported gains shrink to within noise.\n\n"
    "  upc Université Paris Cité\n·\nMar 3 7",
]
SEEDS_NAVIGATION = ["Hugging Face", "Models", "Datasets", "Spaces", "Docs", "Log In", "Sign Up"]
SEEDS_FOOTER = ["Previous", "Next", "System theme", "Company", "TOS", "Privacy", "About", "Jobs"]

WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ,!?", min_size=1, max_size=60).filter(
    lambda text: any(ch.isalpha() for ch in text)
)
NEWLINES = st.sampled_from(["\n", "\r\n", "\r"])
FORMS = st.sampled_from(["NFC", "NFD"])


def papers_of(text: str) -> list[Paper]:
    return list(parse_dump(text, source_name="capture.md", fallback_date=FALLBACK).papers)


def variant(chunks: list[str], newline: str, form: str) -> str:
    text = "\n\n".join(chunks).replace("\n", newline)
    return unicodedata.normalize(form, text)  # type: ignore[arg-type]


BASE_MARKDOWN = papers_of("\n\n".join(MARKDOWN_CARDS))
BASE_SEEDS = papers_of(SEEDS_HEADER + "\n\n" + "\n\n".join(SEEDS_CARDS))


def test_the_base_listings_are_read_in_full() -> None:
    assert [(paper.arxiv_id, paper.title) for paper in BASE_MARKDOWN] == [
        ("2604.20001", "Schrödinger Bridges for Unpaired Translation — Revisited"),
        ("2604.20002", "β-VAEs Disentangle Less Than Reported on Real Images"),
        (None, "Café-Bench: Agents That Order Coffee"),
    ]
    assert (BASE_MARKDOWN[0].upvotes, BASE_MARKDOWN[1].organization) == (31, "Université Paris Cité")
    assert [(paper.title, paper.upvotes) for paper in BASE_SEEDS] == [
        ("Schrödinger Bridges for Unpaired Translation — Revisited", None),
        ("β-VAEs Disentangle Less Than Reported on Real Images", 7),
    ]


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    before=st.lists(st.sampled_from(MARKDOWN_CHROME) | WORDS, max_size=8),
    after=st.lists(st.sampled_from(MARKDOWN_CHROME) | WORDS, max_size=8),
    repeats=st.lists(st.integers(min_value=1, max_value=2), min_size=3, max_size=3),
    newline=NEWLINES,
    form=FORMS,
)
def test_markdown_chrome_repeats_newlines_and_normalisation_change_nothing(
    before: list[str], after: list[str], repeats: list[int], newline: str, form: str
) -> None:
    cards = [card for card, times in zip(MARKDOWN_CARDS, repeats) for _ in range(times)]
    assert papers_of(variant([*before, *cards, *after], newline, form)) == BASE_MARKDOWN


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    before=st.lists(st.sampled_from(SEEDS_NAVIGATION) | WORDS, max_size=8),
    after=st.lists(st.sampled_from(SEEDS_FOOTER), max_size=8),
    newline=NEWLINES,
    form=FORMS,
)
def test_seeds_form_after_navigation_and_before_a_footer(
    before: list[str], after: list[str], newline: str, form: str
) -> None:
    text = variant([*before, SEEDS_HEADER, *SEEDS_CARDS, *after], newline, form)
    assert papers_of(text) == BASE_SEEDS


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(chrome=st.lists(st.sampled_from(MARKDOWN_CHROME) | WORDS, min_size=1, max_size=20))
def test_page_chrome_alone_never_becomes_a_paper(chrome: list[str]) -> None:
    text = "\n\n".join(chrome)
    try:
        papers = papers_of(text)
    except DumpError as exc:
        assert exc.reason.startswith("not a recognised dump")
        return
    raise AssertionError(f"chrome read as papers: {papers}")
