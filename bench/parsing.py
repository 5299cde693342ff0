"""Benchmark dump parsing: every capture fixture, the real dumps, and one large capture.

The large capture is the Firecrawl fixture's cards repeated with fresh arXiv ids until it holds
`--cards` cards (a busy Trending or search page), so detection and the card finder run over a
file of the size operators drop in. Each figure is the median of REPEATS runs. Run from the
repository root:

    python bench/parsing.py [--cards 300]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from datetime import date
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from newsletter.sources import hf_markdown, parse_dump  # noqa: E402

WILD = REPO_ROOT / "tests" / "fixtures" / "wild"
SHARED_DUMPS = REPO_ROOT.parent / "shared" / "dumps"
REPEATS = 5
FALLBACK = date(2026, 4, 20)
CARD_START = "[88](https://huggingface.co/login"


def median_seconds(text: str) -> tuple[float, int]:
    times, count = [], 0
    for _ in range(REPEATS):
        hf_markdown._blocks.cache_clear()  # each run parses from scratch, as a new file does
        started = time.perf_counter()
        count = len(parse_dump(text, source_name="bench", fallback_date=FALLBACK).papers)
        times.append(time.perf_counter() - started)
    return statistics.median(times), count


def large_capture(cards: int) -> str:
    text = (WILD / "firecrawl_front_matter.md").read_text(encoding="utf-8")
    head, listing = text.split(CARD_START, 1)
    listing = CARD_START + listing
    per_copy = len(parse_dump(text, source_name="x", fallback_date=FALLBACK).papers)
    copies = []
    for copy in range(max(1, cards // per_copy)):
        copies.append(re.sub(r"\b(26|25|24)(0[0-9])\.(\d{5})\b",
                             lambda m: f"{m.group(1)}{m.group(2)}.{(int(m.group(3)) + copy * 7) % 99999:05d}",
                             listing))
    return head + "\n\n".join(copies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cards", type=int, default=300)
    args = parser.parse_args()
    rows = [(path.name, path.read_text(encoding="utf-8")) for path in sorted(WILD.iterdir())
            if path.name != "no_cards.md"]
    if SHARED_DUMPS.is_dir():
        rows += [(path.name, path.read_text(encoding="utf-8")) for path in sorted(SHARED_DUMPS.glob("*.txt"))]
    rows.append((f"large capture ({args.cards} cards)", large_capture(args.cards)))
    print(f"{'file':44} {'KB':>6} {'papers':>7} {'ms':>8}")
    for name, text in rows:
        seconds, count = median_seconds(text)
        print(f"{name:44} {len(text.encode()) / 1024:6.1f} {count:7d} {seconds * 1000:8.1f}")


if __name__ == "__main__":
    main()
