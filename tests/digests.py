"""Digests for the rendering checks: a realistic one from the bundled example dumps, and
hostile ones built to break layout and markup. Shared by test_render and test_browser."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from newsletter.models import KeywordMatch, Paper, Ranked
from newsletter.pipeline import rank_dump_path
from newsletter.render import Recipient, RenderedDigest, render_digest

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_DUMPS = REPO_ROOT / "examples" / "dumps"
DAY = date(2026, 11, 23)
KEYWORDS = ("language model", "reasoning", "theorem proving", "Lean")
READER = Recipient("ada@example.org", "Ada", KEYWORDS)
UNSUBSCRIBE = "https://news.example/unsubscribe?address=ada%40example.org&token=" + "0f" * 32
KEYWORDS_LINK = "mailto:digest@news.example?subject=Change%20my%20keywords"

LONG_WORD = "Supercalifragilistic" * 15  # 300 characters, no break opportunity
URL_TITLE = "https://example.org/" + "/".join(["a-very-long-path-segment"] * 12) + "?q=" + "x" * 80
HOSTILE_TEXTS = (
    f"{LONG_WORD} theorem proving",
    URL_TITLE,
    'Attack <script>alert(1)</script> & {{ 7*7 }} {% raw %} "quoted" \'single\' </mj-text>',
    "\u202eReversed title\u202c with Lean — שלום עולם and مرحبا بالعالم 🚀🧪",
)


def render(picks: list[Ranked], recipient: Recipient = READER) -> RenderedDigest:
    return render_digest(
        recipient=recipient, day=DAY, picks=picks,
        unsubscribe_link=UNSUBSCRIBE, keywords_link=KEYWORDS_LINK,
    )


def example_picks(count: int = 10) -> list[Ranked]:
    """The top `count` papers of the example dumps for READER's keywords (real ranker)."""
    ranked = rank_dump_path(EXAMPLE_DUMPS, KEYWORDS, top=count)
    return ranked[:count]


def hostile_pick(title: str, abstract: str, *, keywords: tuple[str, ...] = ("theorem proving", "Lean")) -> Ranked:
    paper = Paper(
        title=title, abstract=abstract, organization="Org " + LONG_WORD[:60],
        published=date(2026, 11, 20), upvotes=999999,
    )
    matched = tuple(KeywordMatch(k, ("title", "abstract")) for k in keywords)
    return Ranked(paper, 9.9, matched, picked=True)


def hostile_picks() -> list[Ranked]:
    abstract = (
        f"We study theorem proving in Lean. {LONG_WORD} is a word. See {URL_TITLE} for code. "
        "Lean Lean Lean theorem proving theorem proving. " * 3
    )
    return [hostile_pick(title, abstract) for title in HOSTILE_TEXTS]


def heavy_picks(count: int = 10) -> list[Ranked]:
    """Worst case for size: long titles, long abstracts, a highlight on every other word."""
    title = "Lean theorem proving with " + " ".join(["Lean reasoning"] * 20)
    sentence = "Theorem proving in Lean meets reasoning with language model provers. "
    return [
        hostile_pick(f"{n}. {title}", sentence * 40, keywords=KEYWORDS) for n in range(count)
    ]
