"""How good are the picks? The ranker against baselines on the judged set in bench/eval.

bench/eval holds interest profiles (profiles.yaml: name, kind, keywords, exclude, intent, split)
and, per profile, a 0/1/2 judgment of every distinct paper of ../shared/dumps
(judged/<profile>.json: {"judgments": {paper_id: 0|1|2}, ...}), with the judges' agreement
(agreement.json); how they were judged: bench/eval/README.md. A profile's `split` says whether
the ranker's constants were tuned on it (`tune`) or not (`held-out`): means are printed per
split, and the per-kind table on the held-out profiles alone.
This script ranks those papers for each profile with every system below, in one run, and
prints nDCG@5, precision@5, recall@10, nDCG@10 and the F1 of the set that would be mailed, per
profile, per kind of profile and on average. Run from the repository root:

    python bench/relevance.py [--max-papers 10] [--eval-dir bench/eval [bench/eval-dev]] [--lopo]
                              [--splits tune,dev] [--set NAME=VALUE ...]

While designing a rule, `--splits tune,dev` (with `--eval-dir bench/eval bench/eval-dev`)
keeps every held-out figure off the screen, and `--set` tries a constant without editing code.

Systems
- substring: case-insensitive substring hits of the keywords in title + abstract, counted; the
  mailed set is the first `max_papers` papers with a hit.
- bm25: bm25s over title + abstract as one text (its own tokeniser, English stopwords and
  stemmer), all keywords as one query: no phrases, no fields, no floor.
- embedding: cosine similarity of the paper's embedding to each keyword's, averaged over the
  keywords (the approach of zotero-arxiv-daily, keywords standing in for the library); the
  mailed set is the first `max_papers`. Needs the `semantic` extra.
- lexical: the project's ranker without the extra; mailed set = its picks.
- hybrid: the project's ranker with sentence embeddings (needs the `semantic` extra).
Baselines honour `exclude` as a case-insensitive substring filter, so that the comparison is
about ranking, not about who reads `exclude`.

Metrics (graded judgments: 2 squarely on the profile, 1 related, 0 not)
- nDCG@k with gain 2^grade - 1 over the system's order; the ideal order is all judged papers.
- precision@5 and recall@10 count grade >= 1 as relevant.
- mailed F1: precision of the mailed set (empty set: 1 when nothing is relevant, else 0) and
  recall against min(relevant, max_papers), the most a digest can hold.
--lopo re-tunes the floor fraction and words weight of the lexical ranker (and the floor and
semantic weight of the hybrid) with each profile held out in turn and reports the held-out
scores: how far the defaults, tuned on this set, are fitted to it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import bm25s  # noqa: E402
import numpy as np  # noqa: E402
import Stemmer  # noqa: E402

from newsletter import ranking, semantic  # noqa: E402
from newsletter.ranking import field as field_module, fusion, index as index_module, scoring  # noqa: E402
from newsletter.models import Paper  # noqa: E402
from newsletter.ingest import dump_files, ingest_dumps, read_dump  # noqa: E402
from newsletter.pipeline import semantic_for  # noqa: E402
from newsletter.store import Store  # noqa: E402

SHARED_DUMPS = REPO_ROOT.parent / "shared" / "dumps"
EVAL_DIR = REPO_ROOT / "bench" / "eval"
CACHE_DB = REPO_ROOT / "bench" / ".cache" / "embeddings.db"
METRICS = ("nDCG@5", "P@5", "R@10", "nDCG@10", "mailedF1")
FLOOR_GRID = (0.1, 0.2, 0.3, 0.4, 0.5)
WORDS_GRID = (0.0, 0.25, 0.5, 1.0)
SEMANTIC_GRID = (0.5, 1.0, 1.5, 2.0)


@dataclass(frozen=True)
class EvalProfile:
    name: str
    kinds: tuple[str, ...]
    keywords: tuple[str, ...]
    exclude: tuple[str, ...]
    grades: dict[str, int]  # paper id -> 0, 1 or 2
    split: str = "tune"  # "tune": the constants were tuned on it; "held-out": never


@dataclass(frozen=True)
class Outcome:
    order: list[str]  # paper ids, best first (papers the system does not list are left out)
    mailed: list[str]


System = Callable[[EvalProfile], Outcome]


@dataclass
class Table:
    rows: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # system/profile/metric


def load_papers(dumps: Path) -> list[Paper]:
    """The distinct papers of the dumps, as `newsletter rank` sees them."""
    unique: dict[str, Paper] = {}
    for file in dump_files(dumps):
        for paper in read_dump(file).papers:
            known = unique.get(paper.title_key)
            if known is None or (known.arxiv_id is None and paper.arxiv_id):
                unique[paper.title_key] = paper
    return list(unique.values())


def load_profiles(eval_dir: Path) -> list[EvalProfile]:
    entries = yaml.safe_load((eval_dir / "profiles.yaml").read_text(encoding="utf-8"))
    profiles = []
    for entry in entries:
        judged = eval_dir / "judged" / f"{entry['name']}.json"
        if not judged.is_file():
            print(f"skipping {entry['name']}: no {judged}", file=sys.stderr)
            continue
        grades = json.loads(judged.read_text(encoding="utf-8"))["judgments"]
        profiles.append(
            EvalProfile(
                name=entry["name"],
                kinds=tuple(kind.strip() for kind in entry.get("kind", "other").split(",")),
                keywords=tuple(entry["keywords"]),
                exclude=tuple(entry.get("exclude") or ()),
                grades={paper_id: int(grade) for paper_id, grade in grades.items()},
                split=str(entry.get("split", "tune")),
            )
        )
    return profiles


# metrics --------------------------------------------------------------------------------
def dcg(gains: Sequence[int], k: int) -> float:
    return sum((2**grade - 1) / math.log2(rank + 2) for rank, grade in enumerate(gains[:k]))


def ndcg(order: Sequence[str], grades: dict[str, int], k: int) -> float:
    ideal = dcg(sorted(grades.values(), reverse=True), k)
    return dcg([grades.get(paper_id, 0) for paper_id in order], k) / ideal if ideal else 1.0


def scores(outcome: Outcome, grades: dict[str, int], max_papers: int) -> dict[str, float]:
    relevant = {paper_id for paper_id, grade in grades.items() if grade >= 1}
    top5, top10 = outcome.order[:5], outcome.order[:10]
    hits = len(relevant & set(outcome.mailed))
    precision = hits / len(outcome.mailed) if outcome.mailed else float(not relevant)
    recall = hits / min(len(relevant), max_papers) if relevant else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "nDCG@5": ndcg(outcome.order, grades, 5),
        "P@5": len(relevant & set(top5)) / 5,
        "R@10": len(relevant & set(top10)) / len(relevant) if relevant else 1.0,
        "nDCG@10": ndcg(outcome.order, grades, 10),
        "mailedF1": f1,
    }


# systems --------------------------------------------------------------------------------
def _excluded(paper: Paper, exclude: Sequence[str]) -> bool:
    text = f"{paper.title} {paper.abstract}".lower()
    return any(word.lower() in text for word in exclude)


def substring_system(papers: Sequence[Paper], max_papers: int) -> System:
    def run(profile: EvalProfile) -> Outcome:
        counted = []
        for paper in papers:
            text = f"{paper.title} {paper.abstract}".lower()
            hits = sum(text.count(keyword.lower()) for keyword in profile.keywords)
            if hits and not _excluded(paper, profile.exclude):
                counted.append((-hits, paper.paper_id))
        order = [paper_id for _, paper_id in sorted(counted)]
        return Outcome(order, order[:max_papers])

    return run


def bm25_system(papers: Sequence[Paper], max_papers: int) -> System:
    stemmer = Stemmer.Stemmer("english")
    corpus = [f"{paper.title} {paper.abstract}" for paper in papers]
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(corpus, stopwords="en", stemmer=stemmer, show_progress=False),
                    show_progress=False)

    def run(profile: EvalProfile) -> Outcome:
        query = bm25s.tokenize([" ".join(profile.keywords)], stopwords="en", stemmer=stemmer,
                               show_progress=False, return_ids=False)[0]
        found = retriever.get_scores(query) if query else np.zeros(len(papers))
        ranked = sorted(
            (-score, paper.paper_id)
            for score, paper in zip(found.tolist(), papers)
            if score > 0 and not _excluded(paper, profile.exclude)
        )
        order = [paper_id for _, paper_id in ranked]
        return Outcome(order, order[:max_papers])

    return run


def embedding_system(papers: Sequence[Paper], vectors: np.ndarray, encode: Callable[[Sequence[str]], np.ndarray], max_papers: int) -> System:
    def run(profile: EvalProfile) -> Outcome:
        similarity = (vectors @ encode(profile.keywords).T).mean(axis=1)
        ranked = sorted(
            (-score, paper.paper_id)
            for score, paper in zip(similarity.tolist(), papers)
            if not _excluded(paper, profile.exclude)
        )
        order = [paper_id for _, paper_id in ranked]
        return Outcome(order, order[:max_papers])

    return run


def ranker_system(index: ranking.PaperIndex, max_papers: int) -> System:
    def run(profile: EvalProfile) -> Outcome:
        ranked = ranking.rank(index, ranking.Profile(profile.keywords, profile.exclude),
                              max_papers=max_papers)
        order = [item.paper.paper_id for item in ranked]
        return Outcome(order, [item.paper.paper_id for item in ranked if item.picked])

    return run


# running and printing -------------------------------------------------------------------
def evaluate(systems: dict[str, System], profiles: Sequence[EvalProfile], max_papers: int) -> Table:
    table = Table()
    for name, system in systems.items():
        table.rows[name] = {p.name: scores(system(p), p.grades, max_papers) for p in profiles}
    return table


def averaged(table: Table, system: str, names: Sequence[str]) -> dict[str, float]:
    rows = table.rows[system]
    return {metric: mean(rows[name][metric] for name in names) for metric in METRICS}


def print_table(table: Table, profiles: Sequence[EvalProfile]) -> None:
    systems = list(table.rows)
    header = "| profile | system | " + " | ".join(METRICS) + " |"
    rule = "|---|---|" + "---:|" * len(METRICS)

    def line(label: str, system: str, values: dict[str, float]) -> str:
        return f"| {label} | {system} | " + " | ".join(f"{values[m]:.3f}" for m in METRICS) + " |"

    print(f"\nMean over {len(profiles)} profiles\n\n{header}\n{rule}")
    for system in systems:
        print(line("**mean**", system, averaged(table, system, [p.name for p in profiles])))
    splits = sorted({p.split for p in profiles}, key=lambda split: split != "held-out")
    if len(splits) > 1:
        print(f"\nBy split (tune: the constants were tuned on these; held-out: never)\n\n{header}\n{rule}")
        for split in splits:
            names = [p.name for p in profiles if p.split == split]
            for system in systems:
                print(line(f"**{split}** ({len(names)})", system, averaged(table, system, names)))
        held_out = [p for p in profiles if p.split == "held-out"]
        if held_out:
            print_kinds(table, held_out, "held-out profiles only", header, rule, line)
    print_kinds(table, profiles, "all profiles", header, rule, line)
    print(f"\nPer profile\n\n{header}\n{rule}")
    for profile in profiles:
        for system in systems:
            print(line(profile.name, system, table.rows[system][profile.name]))


def print_kinds(
    table: Table, profiles: Sequence[EvalProfile], label: str, header: str, rule: str,
    line: Callable[[str, str, dict[str, float]], str],
) -> None:
    kinds = sorted({kind for p in profiles for kind in p.kinds})
    print(f"\nBy kind of profile, {label} (a profile counts under each of its kinds)\n\n{header}\n{rule}")
    for kind in kinds:
        names = [p.name for p in profiles if kind in p.kinds]
        for system in table.rows:
            print(line(f"{kind} ({len(names)})", system, averaged(table, system, names)))


def print_agreement(eval_dir: Path, profiles: Sequence[EvalProfile]) -> None:
    """Inter-judge agreement (agreement.json: per profile, two judges' raw agreement, Cohen's
    kappa, and how many disagreements a third judge settled)."""
    path = eval_dir / "agreement.json"
    if not path.is_file():
        return
    figures = json.loads(path.read_text(encoding="utf-8"))
    rows = [figures[p.name] for p in profiles if p.name in figures]
    if not rows:
        return
    settled = sum(int(row.get("settled_by_third", 0)) for row in rows)
    print(f"judges: two per profile on {len(rows)} profiles; mean raw agreement "
          f"{mean(float(r['agreement']) for r in rows):.4f}, mean Cohen's kappa "
          f"{mean(float(r['kappa']) for r in rows):.3f} (lowest {min(float(r['kappa']) for r in rows):.3f}); "
          f"{settled} disagreements settled by a third judge")


@contextmanager
def ranker_settings(**values: float) -> Iterator[None]:
    """Temporarily set the ranker's module constants (for tuning only)."""
    saved = {name: getattr(constant_home(name), name) for name in values}
    for name, value in values.items():
        setattr(constant_home(name), name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(constant_home(name), name, value)


def constant_home(name: str) -> object:
    """The module of the ranking package that defines the constant `name`."""
    for module in (scoring, fusion, index_module, field_module):
        if hasattr(module, name):
            return module
    raise AttributeError(f"no ranking constant {name}")


def objective(values: dict[str, float]) -> float:
    return (values["nDCG@5"] + values["nDCG@10"] + values["mailedF1"]) / 3


LEXICAL_GRID = {"FLOOR_FRACTION": FLOOR_GRID, "WORDS_WEIGHT": WORDS_GRID}
HYBRID_GRID = {"HYBRID_FLOOR_FRACTION": FLOOR_GRID, "SEMANTIC_WEIGHT": SEMANTIC_GRID}


def leave_one_profile_out(
    label: str, index: ranking.PaperIndex, grid: dict[str, tuple[float, ...]],
    profiles: Sequence[EvalProfile], max_papers: int,
) -> None:
    """Tune the `grid` constants on all profiles but one, score the one held out; repeat."""
    names = list(grid)
    results: dict[tuple[float, ...], dict[str, dict[str, float]]] = {}
    for values in itertools.product(*grid.values()):
        with ranker_settings(**dict(zip(names, values))):
            system = ranker_system(index, max_papers)
            results[values] = {p.name: scores(system(p), p.grades, max_papers) for p in profiles}
    held_out: dict[str, dict[str, float]] = {}
    chosen = []
    for profile in profiles:
        others = [p.name for p in profiles if p is not profile]
        best = max(results, key=lambda key: mean(objective(results[key][n]) for n in others))
        chosen.append(best)
        held_out[profile.name] = results[best][profile.name]
    defaults = tuple(getattr(constant_home(name), name) for name in names)
    in_sample = max(results, key=lambda key: mean(objective(results[key][p.name]) for p in profiles))

    def setting(values: tuple[float, ...]) -> str:
        return ", ".join(f"{name} {value}" for name, value in zip(names, values))

    print(f"\nLeave-one-profile-out, {label} ({' x '.join(names)} tuned on the other profiles)\n")
    print("| setting | " + " | ".join(METRICS) + " |\n|---|" + "---:|" * len(METRICS))
    for row_label, rows in (
        (f"defaults ({setting(defaults)})", results.get(defaults)),
        (f"best on all profiles ({setting(in_sample)})", results[in_sample]),
        ("held out, tuned on the others", held_out),
    ):
        if rows is None:
            continue
        values = {m: mean(rows[p.name][m] for p in profiles) for m in METRICS}
        print(f"| {row_label} | " + " | ".join(f"{values[m]:.3f}" for m in METRICS) + " |")
    print(f"\nsettings chosen per fold: {sorted(set(chosen))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-papers", type=int, default=10)
    parser.add_argument("--eval-dir", type=Path, nargs="+", default=[EVAL_DIR],
                        help="one or more judged sets (e.g. bench/eval bench/eval-dev)")
    parser.add_argument("--dumps", type=Path, default=SHARED_DUMPS)
    parser.add_argument("--lopo", action="store_true", help="leave-one-profile-out tuning check")
    parser.add_argument("--splits", default="",
                        help="only profiles of these splits, comma-separated (e.g. tune,dev: design "
                             "without ever printing a held-out figure)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a ranker constant for this run (repeatable), e.g. --set SEMANTIC_WEIGHT=0.5")
    args = parser.parse_args()
    papers = load_papers(args.dumps)
    profiles = [profile for eval_dir in args.eval_dir for profile in load_profiles(eval_dir)]
    if args.splits:
        wanted = {split.strip() for split in args.splits.split(",")}
        profiles = [profile for profile in profiles if profile.split in wanted]
    if not profiles:
        raise SystemExit(f"no judged profiles in {', '.join(map(str, args.eval_dir))}")
    settings = dict(parse_setting(text) for text in args.set)
    with ranker_settings(**settings):
        run(args, papers, profiles)


def parse_setting(text: str) -> tuple[str, float]:
    """NAME=VALUE of --set, checked against the ranking package's constants."""
    name, _, value = text.partition("=")
    try:
        constant_home(name.strip())
        return name.strip(), float(value)
    except (AttributeError, ValueError):
        raise SystemExit(f"Error: --set {text!r}: expected NAME=NUMBER with NAME a ranking constant "
                         "(e.g. FLOOR_FRACTION=0.3)") from None


def run(args: argparse.Namespace, papers: list[Paper], profiles: list[EvalProfile]) -> None:
    """Score every system on `profiles` and print the tables (and --lopo)."""
    known = {paper.paper_id for paper in papers}
    unknown = {pid for p in profiles for pid in p.grades} - known
    if unknown:
        print(f"warning: {len(unknown)} judged ids are not among the {len(papers)} papers",
              file=sys.stderr)

    systems: dict[str, System] = {
        "substring": substring_system(papers, args.max_papers),
        "bm25": bm25_system(papers, args.max_papers),
    }
    ranker_systems, indexes = semantic_systems(papers, args.max_papers)
    systems.update(ranker_systems)
    print(f"papers: {len(papers)}; profiles: {len(profiles)}; max_papers: {args.max_papers}")
    for eval_dir in args.eval_dir:
        print_agreement(eval_dir, profiles)
    print_table(evaluate(systems, profiles, args.max_papers), profiles)
    if args.lopo:
        grids = {"lexical": LEXICAL_GRID, "hybrid": HYBRID_GRID}
        for name, index in indexes.items():
            leave_one_profile_out(name, index, grids[name], profiles, args.max_papers)


def semantic_systems(
    papers: Sequence[Paper], max_papers: int
) -> tuple[dict[str, System], dict[str, ranking.PaperIndex]]:
    """The lexical ranker, and with the `semantic` extra the embedding baseline and hybrid;
    with the indexes of the project's rankers (for --lopo).

    Paper embeddings go through the project's own path: the dumps are ingested into a store
    under bench/.cache and `semantic_for` encodes each paper once, then reads it from there.
    """
    indexes = {"lexical": ranking.PaperIndex.build(papers)}
    systems = {"lexical": ranker_system(indexes["lexical"], max_papers)}
    encoder = semantic.encoder_for(semantic.DEFAULT_MODEL)
    if encoder is None:
        print("semantic extra not installed: no embedding baseline, no hybrid", file=sys.stderr)
        return systems, indexes
    CACHE_DB.parent.mkdir(parents=True, exist_ok=True)
    store = Store(f"sqlite:///{CACHE_DB}")
    ingest_dumps(store, SHARED_DUMPS)
    started = time.perf_counter()
    vectors = semantic_for(store, encoder, papers)
    print(f"paper embeddings ready in {time.perf_counter() - started:.1f} s "
          f"(encoded once, then read from {CACHE_DB.relative_to(REPO_ROOT)})", file=sys.stderr)
    if vectors is None:
        raise SystemExit("the semantic model could not be loaded")
    matrix = np.stack([vectors.paper_vectors[paper.paper_id] for paper in papers])
    systems["embedding"] = embedding_system(papers, matrix, encoder.encode, max_papers)
    indexes["hybrid"] = ranking.PaperIndex.build(papers, vectors)
    systems["hybrid"] = ranker_system(indexes["hybrid"], max_papers)
    return systems, indexes


if __name__ == "__main__":
    main()
