"""Captures from the wild (issue 13): one hand-written fixture per tool's rendering.

Each fixture imitates what one tool writes (tests/fixtures/README.md says which). The table
below is what a reader sees on the page: every paper card once, its title exactly as shown and
its arXiv id wherever the capture links one. Nothing else in the file may become a paper.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from newsletter.errors import DumpError
from newsletter.models import Paper, ParsedDump
from newsletter.sources import detect_format, parse_dump

WILD = Path(__file__).parent / "fixtures" / "wild"
FALLBACK = date(2026, 4, 20)

# fixture -> (format, [(arXiv id or None, title as shown)])
EXPECTED: dict[str, tuple[str, list[tuple[str | None, str]]]] = {
    "firecrawl_front_matter.md": ("hf-markdown", [
        ("2604.10211", "Sparse Routers Learn to Share: Expert Reuse in Mixture-of-Experts Pretraining"),
        ("2502.20581", "The Noisy Path from Source to Citation: Measuring How Scholars Engage with Past Research"),
        ("2604.09876", "Calibrated Abstention for Retrieval-Augmented Question Answering"),
        ("2402.03003", "[Re] Dataset Citations in Medical Imaging Papers, Counted Again"),
    ]),
    "jina_reader.md": ("hf-markdown", [
        ("2604.11002", "Long-Context Retrieval Without Positional Drift"),
        ("2604.10555", "Tokenizer-Free Speech Models at Scale"),
    ]),
    "web_source_reference_links.md": ("hf-markdown", [
        ("2604.10777", "Graph Transformers Without Message Passing"),
        ("2604.10888", "Counting Objects in Cluttered Scenes with Vision-Language Models"),
        (None, "Self-Play Fine-Tuning for Code Review Comments"),  # its definition is missing
    ]),
    "web_source_fenced.md": ("hf-markdown", [  # reference links whose definitions were cut off
        (None, "Streaming Speech Recognition with Chunked Attention Sinks"),
        (None, "Whisper Goes Long: Hour-Scale Transcription Without Chunking"),
        (None, "Code-Switching Benchmarks for Low-Resource Speech"),
        (None, "Selecting Training Utterances for Long-Form Speech Recognition by Homologous "
               "Model Agreement and Acoustic Difficulty"),  # title continued on a second heading
        (None, "Phoneme-Level Confidence for Speech Recognisers"),  # cut off mid-abstract
    ]),
    "papers_with_code_trending.md": ("hf-markdown", [
        (None, "Orbit: An Agent Harness That Trains Any Agent with Reinforcement Learning"),
        (None, "MeshFromPhone: 3D Shapes from Casual Phone Captures"),
        (None, "TinyDoc: A 200M Vision-Language Model for End-to-End Document Conversion"),
    ]),
    "notebook_export_plain.txt": ("hf-markdown", [
        ("2604.10123", "Draft Trees Beat Draft Chains in Speculative Decoding"),
        ("2302.01318", "Accelerating Large Language Model Decoding with Speculative Sampling"),
        ("2604.08888", "Verifier-Free Speculative Decoding for Diffusion Language Models"),
    ]),
    "crawl4ai.md": ("hf-markdown", [
        ("2604.10400", "Reward Models That Explain Themselves: Rationales as Auxiliary Targets"),
        ("2604.10500", "Muon at Scale: Orthogonalised Updates for Trillion-Token Pretraining"),
    ]),
    "markdownload.md": ("hf-markdown", [
        ("2604.10999", "Quantised KV Caches That Survive Long Contexts"),
    ]),
    "trending_structured.md": ("hf-markdown", [
        ("2604.07001", "Streaming Video World Models with Bounded Memory"),
        ("2309.06180", "Efficient Memory Management for Large Language Model Serving with PagedAttention"),
        (None, "OpenHands Lite: A Small Agent Harness for Repository Tasks"),
    ]),
    "seeds_with_chrome.txt": ("hf-text", [
        (None, "Adaptive Computation Time for Vision Transformers Revisited"),
        (None, "Where Do Multilingual Models Store Facts?"),
        (None, "Evaluating Unit Tests Written by Language Models"),
    ]),
    "saved_page.html": ("hf-html", [
        ("2604.10311", "Diffusion Policies with Contact-Aware Guidance for Dexterous Manipulation"),
        ("2604.10322", "Scaling Laws for Data Mixtures & Their Limits"),
    ]),
    "chrome_single_file.mhtml": ("hf-html", [
        ("2604.10602", "Gödel Agents Revisited: Self-Referential Improvement Under a Budget"),
    ]),
    "hf_api.json": ("hf-json", [
        ("2604.10211", "Sparse Routers Learn to Share: Expert Reuse in Mixture-of-Experts Pretraining"),
        ("2604.09876", "Calibrated Abstention for Retrieval-Augmented Question Answering"),
    ]),
    "arxiv_api.atom": ("arxiv-feed", [
        ("2604.10123", "Draft Trees Beat Draft Chains in Speculative Decoding"),
        ("2302.01318", "Accelerating Large Language Model Decoding with Speculative Sampling"),
        ("hep-th/9901001", "Decoding Boundary States in a Toy String Model"),
    ]),
    "arxiv_listing.rss": ("arxiv-feed", [
        ("2604.10123", "Draft Trees Beat Draft Chains in Speculative Decoding"),
        ("2604.10888", "Counting Objects in Cluttered Scenes with Vision-Language Models"),
    ]),
    "arxiv_listing_rdf.xml": ("arxiv-feed", [
        ("2310.07001", "Listwise Reranking Is Order-Sensitive: Shuffling Helps Language Models"),
        ("2310.07002", "Tokenisers Across 100 Languages: A Fairness Audit"),
    ]),
    "arxiv_listing.atom": ("arxiv-feed", [
        ("2604.10211", "Sparse Routers Learn to Share: Expert Reuse in Mixture-of-Experts Pretraining"),
        ("2604.09876", "Calibrated Abstention for Retrieval-Augmented Question Answering"),
    ]),
}  # fmt: skip


def parse_wild(name: str) -> ParsedDump:
    path = WILD / name
    return parse_dump(path.read_text(encoding="utf-8"), source_name=name, fallback_date=FALLBACK)


def by_title(dump: ParsedDump) -> dict[str, Paper]:
    return {paper.title: paper for paper in dump.papers}


def test_every_fixture_is_in_the_table() -> None:
    assert sorted([*EXPECTED, "no_cards.md"]) == sorted(path.name for path in WILD.iterdir())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_card_once_with_exact_title_and_arxiv_id(name: str) -> None:
    dump = parse_wild(name)
    expected_format, expected = EXPECTED[name]
    assert dump.format == expected_format
    assert detect_format((WILD / name).read_text(encoding="utf-8")) == expected_format
    assert [(paper.arxiv_id, paper.title) for paper in dump.papers] == expected
    assert all(paper.abstract for paper in dump.papers)
    assert dump.issues == ()


def test_firecrawl_metadata_and_line_break_backslashes() -> None:
    papers = by_title(parse_wild("firecrawl_front_matter.md"))
    sparse = papers["Sparse Routers Learn to Share: Expert Reuse in Mixture-of-Experts Pretraining"]
    # the upvote button comes before the heading; the `4` after the date counts comments
    assert (sparse.upvotes, sparse.published, sparse.organization) == (
        88, date(2026, 4, 13), "Acme AI Research"
    )
    noisy = papers[
        "The Noisy Path from Source to Citation: Measuring How Scholars Engage with Past Research"
    ]
    assert "\\" not in noisy.abstract and "tracing knowledge flows." in noisy.abstract
    assert (noisy.author_count, noisy.published, noisy.upvotes) == (3, date(2025, 2, 27), None)


def test_jina_reader_organisation_and_authors() -> None:
    dump = parse_wild("jina_reader.md")
    drift, speech = dump.papers
    assert (drift.author_count, drift.upvotes, drift.published) == (7, 41, date(2026, 4, 14))
    assert (speech.organization, speech.upvotes) == ("AI at Meta", 9)
    assert dump.listing_date == date(2026, 4, 15)


def test_reference_links_with_and_without_definitions() -> None:
    graph, counting, self_play = parse_wild("web_source_reference_links.md").papers
    assert (graph.upvotes, graph.author_count, graph.published) == (23, 4, date(2026, 4, 12))
    assert counting.arxiv_id == "2604.10888"  # `arxiv.org/abs/<id>v2`: version dropped
    assert (self_play.url, self_play.author_count) == (None, 6)


def test_page_fenced_as_text_with_upvotes_before_each_title() -> None:
    dump = parse_wild("web_source_fenced.md")
    assert dump.listing_date == date(2026, 4, 15)
    sinks, whisper, switching, selecting, _ = dump.papers
    # each upvote box stands before the title it counts (the first one too, right after the
    # listing date); `[ 5][19]` after a date counts comments
    assert [paper.upvotes for paper in dump.papers] == [12, 41, 2, 7, None]
    assert (selecting.author_count, selecting.published) == (10, date(2024, 10, 21))
    assert (sinks.author_count, sinks.published) == (3, date(2026, 4, 2))
    assert (whisper.organization, whisper.published) == ("Acme Speech Lab", date(2026, 3, 20))
    assert (switching.author_count, switching.published) == (12, date(2026, 1, 9))


def test_unlinked_headings_with_only_a_github_link() -> None:
    orbit, mesh, tiny = parse_wild("papers_with_code_trending.md").papers
    assert (orbit.author_count, orbit.url) == (9, "https://github.com/orbit-rl/orbit")
    assert mesh.abstract.endswith("rectified-flow shape prior.")  # not the GitHub line
    assert tiny.url == "https://github.com/tinydoc/tinydoc"


def test_plain_text_with_urls_on_their_own_lines() -> None:
    trees, sampling, verifier = parse_wild("notebook_export_plain.txt").papers
    assert (trees.upvotes, trees.author_count, trees.published) == (3, 5, date(2026, 4, 9))
    assert (sampling.organization, sampling.upvotes) == ("Google DeepMind", None)
    assert (verifier.upvotes, verifier.published) == (12, date(2026, 4, 8))


def test_trending_cards_twice_and_a_github_only_card() -> None:
    dump = parse_wild("trending_structured.md")
    world, paged, harness = dump.papers
    assert (world.upvotes, world.organization, world.published) == (
        212, "Acme Robotics", date(2026, 4, 3)
    )
    assert (paged.author_count, paged.upvotes) == (9, 76)
    assert (harness.arxiv_id, harness.url) == (
        None, "https://github.com/openhands-lite/openhands-lite"
    )
    assert (harness.upvotes, harness.author_count) == (57, 5)


def test_saved_html_page() -> None:
    contact, mixtures = parse_wild("saved_page.html").papers
    assert (contact.upvotes, contact.author_count, contact.published) == (64, 6, date(2026, 4, 13))
    assert (mixtures.organization, mixtures.upvotes, mixtures.published) == (
        "Google DeepMind", None, date(2026, 2, 27)
    )


def test_mhtml_from_chrome() -> None:
    (paper,) = parse_wild("chrome_single_file.mhtml").papers
    assert (paper.upvotes, paper.author_count, paper.published) == (19, 4, date(2026, 4, 14))


def test_arxiv_feeds_keep_authors_and_drop_the_announcement() -> None:
    api = parse_wild("arxiv_api.atom").papers
    assert api[0].authors == ("Lena Fischer", "Omar Haddad")
    assert api[0].abstract.startswith("Speculative decoding drafts")
    rss = parse_wild("arxiv_listing.rss").papers
    assert rss[1].authors == ("Mei Lin", "Tomasz Nowak", "Priya Raman")
    assert rss[1].abstract.startswith("Vision-language models miscount")
    assert parse_wild("arxiv_listing.atom").papers[0].published == date(2026, 4, 15)
    old = parse_wild("arxiv_listing_rdf.xml").papers
    assert old[0].authors == ("Chidi Okafor", "Emma Lind")
    assert old[0].abstract.startswith("Language models that rerank") and "<p>" not in old[0].abstract


def test_a_file_without_paper_cards_is_refused_with_the_reason() -> None:
    with pytest.raises(DumpError) as caught:
        parse_wild("no_cards.md")
    assert caught.value.reason.startswith("not a recognised dump: no paper card found")
    assert caught.value.line == 1


def test_the_same_paper_in_several_formats_has_one_id() -> None:
    ids: dict[str, set[str]] = {}
    for name in EXPECTED:
        for paper in parse_wild(name).papers:
            ids.setdefault(paper.title, set()).add(paper.paper_id)
    assert ids["Draft Trees Beat Draft Chains in Speculative Decoding"] == {"arxiv:2604.10123"}
    assert ids[
        "Sparse Routers Learn to Share: Expert Reuse in Mixture-of-Experts Pretraining"
    ] == {"arxiv:2604.10211"}
    assert all(len(found) == 1 for found in ids.values())


def test_a_tag_like_word_in_a_title_is_text_and_a_heading_may_end_with_a_full_stop() -> None:
    text = (
        "### [Thinking Inside <think> Tags Is Not Enough.](https://huggingface.co/papers/2604.30001)"
        "\n\n[Reasoning traces inside think tags rarely change the answer; we measure how rarely."
        "](https://huggingface.co/papers/2604.30001)\n\n[- 2 authors](https://huggingface.co/papers/"
        "2604.30001)\n\n·\n\nApr 2\n"
    )
    (paper,) = parse_dump(text, source_name="t.md", fallback_date=FALLBACK).papers
    assert (paper.title, paper.arxiv_id) == (
        "Thinking Inside <think> Tags Is Not Enough.", "2604.30001"
    )


def test_a_short_summary_linking_the_same_paper_is_not_a_second_title() -> None:
    text = (
        "Apr 15\n\n [-] 4\n\nhttps://huggingface.co/login?next=%2Fpapers%2F2604.50001\n\n"
        "Tiny Recursive Models Solve Sudoku\n\nhttps://huggingface.co/papers/2604.50001\n\n"
        "A two-layer network applied recursively solves hard Sudoku puzzles without search\n\n"
        "https://huggingface.co/papers/2604.50001\n\n[\n\n2 authors](https://huggingface.co/"
        "papers/2604.50001)\n\n·\n\nApr 9\n"
    )
    (paper,) = parse_dump(text, source_name="t.txt", fallback_date=FALLBACK).papers
    assert (paper.title, paper.upvotes, paper.author_count) == (
        "Tiny Recursive Models Solve Sudoku", 4, 2
    )
    assert paper.abstract.startswith("A two-layer network")


def test_a_heading_with_a_pdf_link_beside_its_title_keeps_the_title() -> None:
    text = (
        "### [Sparse Attention at Scale](https://huggingface.co/papers/2604.11111) "
        "[PDF](https://arxiv.org/pdf/2604.11111)\n\n"
        "We show that sparse attention scales to long inputs with a learned router per head.\n\n"
        "- 3 authors\n\n· Apr 3\n"
    )
    (paper,) = parse_dump(text, source_name="t.md", fallback_date=FALLBACK).papers
    assert (paper.title, paper.arxiv_id, paper.author_count) == (
        "Sparse Attention at Scale", "2604.11111", 3
    )


def test_an_arxiv_api_error_entry_is_no_paper() -> None:
    feed = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">\n'
        "  <title>ArXiv Query: id_list=2604.1</title>\n"
        "  <id>http://arxiv.org/api/0Hn1F7vZ</id>\n  <updated>2026-04-15T00:00:00-04:00</updated>\n"
        "  <entry>\n    <id>http://arxiv.org/api/errors#incorrect_id_format_for_2604.1</id>\n"
        "    <title>Error</title>\n    <summary>incorrect id format for 2604.1</summary>\n"
        "    <updated>2026-04-15T00:00:00-04:00</updated>\n  </entry>\n</feed>\n"
    )
    with pytest.raises(DumpError) as caught:
        parse_dump(feed, source_name="api.atom", fallback_date=FALLBACK)
    assert caught.value.reason == (
        "no usable entry in the feed; entry 1: the arXiv API reported an error: "
        "incorrect id format for 2604.1; fix the query and fetch again"
    )


def test_plain_titles_whose_author_line_links_the_paper_and_one_without_any_link() -> None:
    text = (WILD / "notebook_export_plain.txt").read_text(encoding="utf-8")
    # The same export with every bare URL line dropped: titles lose their links, the
    # `[5 authors](.../papers/<id>)` lines keep theirs, one card keeps no link at all.
    stripped = "\n".join(
        line for line in text.split("\n") if not line.startswith("https://")
    )
    dump = parse_dump(stripped, source_name="t.txt", fallback_date=FALLBACK)
    assert [(paper.arxiv_id, paper.title) for paper in dump.papers] == [
        ("2604.10123", "Draft Trees Beat Draft Chains in Speculative Decoding"),
        (None, "Accelerating Large Language Model Decoding with Speculative Sampling"),
        ("2604.08888", "Verifier-Free Speculative Decoding for Diffusion Language Models"),
    ]
    assert (dump.papers[0].author_count, dump.papers[1].published) == (5, date(2023, 2, 2))
