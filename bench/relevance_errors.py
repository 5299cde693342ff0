"""Where does the ranker go wrong? An error analysis on the judged set in bench/eval.

For each profile of the chosen splits: its scores, the ranker's top ten (grade, picked, score,
why it matched) and the relevant papers it left below the tenth place, with the rank the
embedding alone gives them. Then, over those profiles:
- the top-ten papers by the strongest evidence that put them there: a keyword in the title, in
  phrase in the abstract, its words apart in the abstract, most words of a long keyword, close
  in meaning only, some words only; each split into judged relevant (1 or 2) or not (0);
- the relevant papers missed (not in the top ten): not ranked at all, ranked lower with a
  keyword whole, ranked lower on some words or meaning only;
- mailed F1 of the picks, of always mailing the top ten, and of the best cut of the ranking
  for each profile (an oracle: how much a better floor could give at most).
bench/eval/ANALYSIS.md is what it showed for issue 15. Run from the repository root:

    python bench/relevance_errors.py [--splits tune,dev] [--profile NAME ...] [--lexical]
                                     [--eval-dir bench/eval [bench/eval-dev]] [--summary]

The default splits keep held-out grades off the screen; `--splits held-out` shows them.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from statistics import mean

sys.path.insert(0, str(Path(__file__).resolve().parent))

import relevance  # noqa: E402  (bench/relevance.py: papers, profiles, metrics)

from newsletter import ranking  # noqa: E402
from newsletter.models import Ranked  # noqa: E402

EVIDENCE = ("title", "phrase in abstract", "words apart in abstract", "most words", "meaning only", "some words")


def evidence(index: ranking.PaperIndex, item: Ranked) -> str:
    """The strongest reason `item` ranks where it does (one of EVIDENCE)."""
    fields = {field for match in item.matched for field in match.fields}
    if "title" in fields:
        return "title"
    if "abstract" in fields:
        at = index.papers.index(item.paper)
        for match in item.matched:
            if "abstract" in match.fields and any(
                index._abstract.keyword_scores(terms)[2][at] for terms, _ in index.spellings(match.keyword)
            ):
                return "phrase in abstract"
        return "words apart in abstract"
    if "most words" in fields:
        return "most words"
    if "similar meaning" in fields:
        return "meaning only"
    return "some words"


def explain(item: Ranked) -> str:
    return "; ".join(f"{match.keyword}: {'/'.join(match.fields)}" for match in item.matched)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-dir", type=Path, nargs="+", default=[relevance.EVAL_DIR])
    parser.add_argument("--splits", default="tune,dev", help="comma-separated (held-out only when asked)")
    parser.add_argument("--profile", nargs="*", default=[], help="only these profiles")
    parser.add_argument("--lexical", action="store_true", help="the lexical ranker (default: hybrid)")
    parser.add_argument("--summary", action="store_true", help="the totals only, no profile")
    parser.add_argument("--max-papers", type=int, default=10)
    args = parser.parse_args()
    splits = {split.strip() for split in args.splits.split(",")}
    profiles = [
        profile
        for eval_dir in args.eval_dir
        for profile in relevance.load_profiles(eval_dir)
        if profile.split in splits and (not args.profile or profile.name in args.profile)
    ]
    if not profiles:
        raise SystemExit("no judged profile in those splits")
    papers = relevance.load_papers(relevance.SHARED_DUMPS)
    systems, indexes = relevance.semantic_systems(papers, args.max_papers)
    name = "lexical" if args.lexical or "hybrid" not in indexes else "hybrid"
    index = indexes[name]
    embedding = systems.get("embedding")
    top = args.max_papers
    in_top: dict[bool, Counter[str]] = {True: Counter(), False: Counter()}
    missed: Counter[str] = Counter()
    mailed: dict[str, list[float]] = {"picks": [], "always the top ten": [], "best cut (oracle)": []}
    for profile in profiles:
        ranked = ranking.rank(index, ranking.Profile(profile.keywords, profile.exclude), max_papers=top)
        order = [item.paper.paper_id for item in ranked]
        picks = [item.paper.paper_id for item in ranked if item.picked]
        found = relevance.scores(relevance.Outcome(order, picks), profile.grades, top)
        mailed["picks"].append(found["mailedF1"])
        cut = [relevance.scores(relevance.Outcome(order, order[:k]), profile.grades, top)["mailedF1"]
               for k in range(top + 1)]
        mailed["always the top ten"].append(cut[top])
        mailed["best cut (oracle)"].append(max(cut))
        meaning_rank = (
            {paper_id: at for at, paper_id in enumerate(embedding(profile).order)} if embedding else {}
        )
        position = {paper_id: at for at, paper_id in enumerate(order)}
        lines = []
        for at, item in enumerate(ranked[:top]):
            grade = profile.grades.get(item.paper.paper_id, 0)
            in_top[grade > 0][evidence(index, item)] += 1
            lines.append(f"  {at + 1:2d} g{grade} {'P' if item.picked else ' '} {item.score:.3f} "
                         f"{item.paper.title[:70]} [{explain(item)}]")
        lost = sorted(
            (paper_id for paper_id, grade in profile.grades.items()
             if grade > 0 and position.get(paper_id, top) >= top),
            key=lambda paper_id: (-profile.grades[paper_id], position.get(paper_id, len(papers))),
        )
        for paper_id in lost:
            at = position.get(paper_id)
            if at is None:
                missed["not ranked at all"] += 1
            elif {"title", "abstract"} & {f for match in ranked[at].matched for f in match.fields}:
                missed["ranked lower, a keyword whole"] += 1
            else:
                missed["ranked lower, some words or meaning only"] += 1
        if args.summary:
            continue
        print(f"\n## {profile.name} ({', '.join(profile.kinds)}; {profile.split}): keywords "
              f"{list(profile.keywords)}" + (f", exclude {list(profile.exclude)}" if profile.exclude else ""))
        print("   " + ", ".join(f"{metric} {value:.3f}" for metric, value in found.items()))
        print("\n".join(lines))
        for paper_id in lost[:12]:
            at = position.get(paper_id)
            title = next(paper.title for paper in papers if paper.paper_id == paper_id)
            print(f"  missed g{profile.grades[paper_id]} rank {'-' if at is None else at + 1:>3} "
                  f"(embedding alone: {meaning_rank.get(paper_id, -1) + 1:>3}) {title[:70]}"
                  + (f" [{explain(ranked[at])}]" if at is not None else ""))
    print(f"\n# {name} ranker, {len(profiles)} profiles ({', '.join(sorted({p.split for p in profiles}))})\n")
    print("| top-ten papers, strongest evidence | judged relevant | judged not | share not |\n|---|---:|---:|---:|")
    for kind in EVIDENCE:
        good, bad = in_top[True][kind], in_top[False][kind]
        share = f"{bad / (good + bad):.2f}" if good + bad else "-"
        print(f"| {kind} | {good} | {bad} | {share} |")
    print("\n| relevant papers below the tenth place | count |\n|---|---:|")
    for kind, count in missed.most_common():
        print(f"| {kind} | {count} |")
    print("\n| mailed set | mailed F1 |\n|---|---:|")
    for kind, values in mailed.items():
        print(f"| {kind} | {mean(values):.3f} |")


if __name__ == "__main__":
    main()
