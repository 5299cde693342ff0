"""The rank stage alone, as `bench/day.py --stages-only` times it, repeated: snapshot + plan.

    python bench/rank_stage.py [--subscribers 10000] [--papers 500] [--repeats 7]
                               [--work DIR] [--dump plans.tsv] [--profile out.prof]
                               [--semantic-model off]

Sets up the same store and subscribers as bench/day.py (same seed: the dump of `--papers`
papers, `newsletter ingest` in a child process, `--subscribers` subscribers with 1-6 keywords
from about 200 topics) once, in `--work` (kept and reused when given) or a temporary folder,
then times `make_planner(setup, store)` + `list(planner.plan(subscribers))` (the figure
`rank_seconds` of bench/day.py) `--repeats` times and prints the median, each run with the
process's memos emptied as in the first run of a process (`--warm` keeps them), with a breakdown
timed inside the same runs (median of each): the snapshot read, the index build (with the
embeddings, hybrid), `rank_many` as the planner calls it, and the rest (the planner's
bookkeeping: local days, Message-IDs, profiles, trending, the Plan objects).

`--dump FILE` writes every plan as one line (email, day, message id, reason, then paper id and
score of each pick, in order) to compare two versions of the code: the plans must not change.
`--profile FILE` runs one more rank stage under cProfile and prints the top functions.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from day import write_dump, write_subscribers  # noqa: E402

NOW = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)  # fixed, so that two runs plan the same day


def prepare(work: Path, subscribers: int, papers: int, seed: int, env: dict[str, str]) -> None:
    """The store and subscribers file of bench/day.py, made once per folder."""
    if (work / "newsletter.db").exists() and (work / "subscribers.yaml").exists():
        return
    rng = random.Random(seed)
    (work / "dumps").mkdir(parents=True, exist_ok=True)
    write_dump(work / "dumps" / "daily-2026-11-29.json", papers, rng)
    write_subscribers(work / "subscribers.yaml", subscribers, rng)
    result = subprocess.run([sys.executable, "-m", "newsletter", "ingest"], cwd=work, env=env,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(result.stderr[-2000:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--papers", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work", type=Path, default=None, help="folder for the store (kept; reused when set up)")
    parser.add_argument("--dump", type=Path, default=None, help="write every plan here, one per line")
    parser.add_argument("--profile", type=Path, default=None, help="cProfile one more run into this file")
    parser.add_argument("--semantic-model", default="off")
    parser.add_argument("--warm", action="store_true", help="keep the memos of earlier runs (default: each run cold)")
    args = parser.parse_args()

    temporary = None
    if args.work is None:
        temporary = tempfile.TemporaryDirectory(prefix="bench-rank-")
        work = Path(temporary.name)
    else:
        work = args.work.resolve()
        work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(NEWSLETTER_DUMPS_DIR=str(work / "dumps"), NEWSLETTER_FROM_ADDRESS="digest@news.example",
               NEWSLETTER_SEMANTIC_MODEL=args.semantic_model)
    prepare(work, args.subscribers, args.papers, args.seed, env)
    os.environ.update({k: v for k, v in env.items() if k.startswith("NEWSLETTER_")})
    os.chdir(work)
    try:
        run(args)
    finally:
        os.chdir(REPO_ROOT)
        if temporary is not None:
            temporary.cleanup()


def run(args: argparse.Namespace) -> None:
    from newsletter.planning import Retry, local_day
    from newsletter.preparing import PrepareSetup, make_planner
    from newsletter.runtime import Runtime, semantic_model
    from newsletter.settings import load_settings

    settings = load_settings()
    runtime = Runtime(settings)
    subscribers = list(runtime.subscribers().subscribers)[: args.subscribers]
    model = semantic_model(settings)
    if model:  # as a send does first: every keyword's vector in the store
        runtime.embed_keywords(subscribers)
    setup = PrepareSetup(runtime.store.url, (local_day(subscribers[0], NOW),), runtime.sender, NOW, Retry(),
                         semantic_model=model)
    store = runtime.store

    def stage() -> list:
        planner = make_planner(setup, store)
        return [plan for _, plan in planner.plan(subscribers)]

    # The breakdown, timed inside the stage itself: the snapshot read, the index build and
    # rank_many as the planner calls them (same collector state, same caches).
    from newsletter import planning

    spent: dict[str, float] = {}

    def timing(name: str, function):  # noqa: ANN001, ANN202 - a bench's wrapper
        def timed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - started
        return timed

    store.day_snapshot = timing("snapshot", store.day_snapshot)  # type: ignore[method-assign]
    planning.Planner._index = timing("index", planning.Planner._index)  # type: ignore[method-assign]
    planning.rank_many = timing("rank_many", planning.rank_many)

    def forget() -> None:
        """Empty the process's memos (functools caches of newsletter modules: keywords,
        explanations, ...), so that each run is timed like the first of a process, as
        bench/day.py times it; imports and the model stay loaded."""
        for name, module in list(sys.modules.items()):
            if name == "newsletter" or name.startswith("newsletter."):
                for value in vars(module).values():
                    if callable(getattr(value, "cache_clear", None)):
                        value.cache_clear()

    plans = stage()  # warm up: imports, the model
    totals, cpus, snapshots, builds, ranks = [], [], [], [], []
    for _ in range(args.repeats):
        spent.clear()
        if not args.warm:
            forget()
        started, cpu = time.perf_counter(), time.process_time()
        stage()
        totals.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
        snapshots.append(spent["snapshot"])
        builds.append(spent["index"])
        ranks.append(spent["rank_many"])

    rests = [t - a - b - c for t, a, b, c in zip(totals, snapshots, builds, ranks)]
    total, snap, build, ranked, rest = (statistics.median(v) for v in (totals, snapshots, builds, ranks, rests))
    sendable = sum(1 for plan in plans if plan.sendable)
    print(f"rank stage: {len(subscribers):,} subscribers ({Path(planning.__file__).parents[1].name}), "
          f"{sendable:,} digests planned; ranking: {model or 'lexical'}; load {os.getloadavg()[0]:.2f}")
    print(f"{'make_planner + plan (rank_seconds)':36} {total:7.3f} s  median of {args.repeats}{' warm' if args.warm else ''} "
          f"(min {min(totals):.3f}, max {max(totals):.3f}); CPU {statistics.median(cpus):.3f} s")
    for label, seconds in (
        ("  snapshot (day_snapshot)", snap), ("  index build (Planner._index)", build),
        ("  rank_many, everyone", ranked), ("  the rest (planner bookkeeping)", rest),
    ):
        print(f"{label:36} {seconds:7.3f} s")

    if args.dump is not None:
        lines = []
        for plan in plans:
            picks = " ".join(f"{r.paper.paper_id}:{r.score!r}" for r in plan.picks)
            matched = " ".join("|".join(f"{m.keyword}@{'+'.join(m.fields)}" for m in r.matched) for r in plan.picks)
            hot = " ".join(p.paper_id for p in plan.trending.papers) if plan.trending else ""
            lines.append("\t".join([plan.subscriber.email, plan.day.isoformat(), plan.message_id, plan.reason,
                                    picks, matched, hot]))
        path = args.dump if args.dump.is_absolute() else REPO_ROOT / args.dump
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"plans written to {path}")

    if args.profile is not None:
        import cProfile
        import pstats

        path = args.profile if args.profile.is_absolute() else REPO_ROOT / args.profile
        if not args.warm:
            forget()
        cProfile.runctx("stage()", globals(), {"stage": stage}, str(path))
        pstats.Stats(str(path)).sort_stats("cumulative").print_stats(35)
        pstats.Stats(str(path)).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
