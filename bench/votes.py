"""Do votes help? A simulation on the judged set in bench/eval (issue 15).

A subscriber votes on the digest of one day: of the papers the hybrid ranker shows them that
day (its top `--shown`), those judged 2 get "more like this", those judged 0 "less like
this". The ranking of the papers of every *other* day is then scored with and without those
votes (`Profile(liked=..., disliked=...)`), against the same judgments. The dumps are one day
each; a paper seen in two dumps belongs to the first. Run from the repository root with the
`semantic` extra installed (votes act on the embeddings):

    python bench/votes.py [--shown 10] [--max-papers 10]

It prints nDCG@5, nDCG@10 and mailed F1, averaged over (profile, voting day) pairs where the
subscriber voted at all, with and without the votes, and per kind of profile.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from statistics import mean

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from relevance import (  # noqa: E402
    CACHE_DB, EVAL_DIR, SHARED_DUMPS, EvalProfile, Outcome, load_profiles, scores,
)

from newsletter import semantic  # noqa: E402
from newsletter.ingest import dump_files, ingest_dumps, read_dump  # noqa: E402
from newsletter.models import Paper  # noqa: E402
from newsletter.pipeline import semantic_for  # noqa: E402
from newsletter.ranking import PaperIndex, Profile, Semantic, rank  # noqa: E402
from newsletter.store import Store  # noqa: E402

METRICS = ("nDCG@5", "nDCG@10", "mailedF1")


def papers_by_day(dumps: Path) -> list[list[Paper]]:
    """The distinct papers of each dump, each paper under the first dump it appears in."""
    seen: set[str] = set()
    days = []
    for file in dump_files(dumps):
        day = []
        for paper in read_dump(file).papers:
            if paper.title_key not in seen:
                seen.add(paper.title_key)
                day.append(paper)
        days.append(day)
    return days


def outcome(index: PaperIndex, profile: Profile, max_papers: int) -> Outcome:
    ranked = rank(index, profile, max_papers=max_papers)
    return Outcome([r.paper.paper_id for r in ranked], [r.paper.paper_id for r in ranked if r.picked])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shown", type=int, default=10, help="papers of the voting day the subscriber sees")
    parser.add_argument("--max-papers", type=int, default=10)
    parser.add_argument("--eval-dir", type=Path, default=EVAL_DIR)
    args = parser.parse_args()
    encoder = semantic.encoder_for(semantic.DEFAULT_MODEL)
    if encoder is None:
        raise SystemExit("votes act on embeddings: install the semantic extra")
    days = papers_by_day(SHARED_DUMPS)
    everything = [paper for day in days for paper in day]
    CACHE_DB.parent.mkdir(parents=True, exist_ok=True)
    store = Store(f"sqlite:///{CACHE_DB}")
    ingest_dumps(store, SHARED_DUMPS)
    vectors = semantic_for(store, encoder, everything)
    if vectors is None:
        raise SystemExit("the semantic model could not be loaded")
    profiles: list[EvalProfile] = load_profiles(args.eval_dir)
    # One hybrid index per day; every paper's vector is known to each (votes come from other days).
    indexes = [PaperIndex.build(day, Semantic(vectors.paper_vectors, vectors.encode)) for day in days]
    results: dict[str, list[dict[str, float]]] = defaultdict(list)
    kinds: dict[str, dict[str, list[dict[str, float]]]] = defaultdict(lambda: defaultdict(list))
    votes_cast = []
    for profile in profiles:
        plain = Profile(profile.keywords, profile.exclude)
        for voting_day, index in enumerate(indexes):
            shown = [r.paper.paper_id for r in rank(index, plain, max_papers=args.shown)[: args.shown]]
            liked = frozenset(pid for pid in shown if profile.grades.get(pid, 0) == 2)
            disliked = frozenset(pid for pid in shown if profile.grades.get(pid, 0) == 0)
            if not liked and not disliked:
                continue
            votes_cast.append(len(liked) + len(disliked))
            voted = Profile(profile.keywords, profile.exclude, liked=liked, disliked=disliked)
            for day, other in enumerate(indexes):
                if day == voting_day:
                    continue
                ids = {paper.paper_id for paper in days[day]}
                grades = {pid: grade for pid, grade in profile.grades.items() if pid in ids}
                if not any(grades.values()):
                    continue  # nothing relevant that day: every system scores 1
                for label, used in (("without votes", plain), ("with votes", voted)):
                    row = scores(outcome(other, used, args.max_papers), grades, args.max_papers)
                    results[label].append(row)
                    for kind in profile.kinds:
                        kinds[kind][label].append(row)
    print(f"days: {len(days)} ({', '.join(str(len(day)) for day in days)} papers); profiles: {len(profiles)}; "
          f"(profile, voting day) pairs with votes: {len(votes_cast)}, "
          f"{mean(votes_cast):.1f} votes each; evaluations on other days: {len(results['with votes'])}\n")
    print("| ranking | " + " | ".join(METRICS) + " |\n|---|" + "---:|" * len(METRICS))
    for label, rows in results.items():
        print(f"| hybrid, {label} | " + " | ".join(f"{mean(r[m] for r in rows):.3f}" for m in METRICS) + " |")
    print("\nBy kind of profile (nDCG@10 without -> with votes)\n")
    print("| kind | evaluations | without | with |\n|---|---:|---:|---:|")
    for kind, by_label in sorted(kinds.items()):
        without = mean(r["nDCG@10"] for r in by_label["without votes"])
        with_votes = mean(r["nDCG@10"] for r in by_label["with votes"])
        print(f"| {kind} | {len(by_label['with votes'])} | {without:.3f} | {with_votes:.3f} |")


if __name__ == "__main__":
    main()
