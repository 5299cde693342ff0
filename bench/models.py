"""Compare sentence models on the judged set: the packaged all-MiniLM-L6-v2 against other small
models given as ONNX files (issue 15: "compare all-MiniLM-L6-v2 with other small models").

    python bench/models.py [--onnx NAME=PATH ...] [--max-papers 10]

An ONNX file must take `input_ids` and `attention_mask` (int64, batch x width) and give the last
hidden states (batch x width x dimension) among its outputs; texts are split into word pieces
with the default model's tokenizer (the BERT uncased vocabulary the MiniLM family shares), mean
pooled and normalised as for the default. For each model: time to embed the 229 papers, then
nDCG@5 / nDCG@10 / mailed F1 of the embedding-only baseline and of the hybrid ranker, per split
of bench/eval. Nothing here is used by the service.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from statistics import mean

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from relevance import (  # noqa: E402
    EVAL_DIR, SHARED_DUMPS, embedding_system, load_papers, load_profiles, ranker_system, scores,
)

from newsletter import semantic  # noqa: E402
from newsletter.minilm import MAX_TOKENS  # noqa: E402
from newsletter.ranking import PaperIndex, Semantic  # noqa: E402

METRICS = ("nDCG@5", "nDCG@10", "mailedF1")
Encode = Callable[[Sequence[str]], np.ndarray]


def onnx_encoder(path: Path) -> Encode:
    import onnxruntime
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(semantic.resolve_model(semantic.DEFAULT_MODEL) / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    hidden_name = next(o.name for o in session.get_outputs() if len(o.shape) == 3)

    def encode(texts: Sequence[str]) -> np.ndarray:
        rows = []
        for start in range(0, len(texts), 16):
            ids = [e.ids for e in tokenizer.encode_batch(list(texts[start : start + 16]))]
            width = max(map(len, ids))
            batch = np.zeros((len(ids), width), dtype=np.int64)
            mask = np.zeros((len(ids), width), dtype=np.int64)
            for row, seq in enumerate(ids):
                batch[row, : len(seq)], mask[row, : len(seq)] = seq, 1
            (hidden,) = session.run([hidden_name], {"input_ids": batch, "attention_mask": mask})
            pooled = (hidden * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
            rows.append(pooled / np.linalg.norm(pooled, axis=1, keepdims=True))
        return np.concatenate(rows).astype(np.float32)

    return encode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", action="append", default=[], help="NAME=PATH of an ONNX model")
    parser.add_argument("--max-papers", type=int, default=10)
    args = parser.parse_args()
    default = semantic.encoder_for(semantic.DEFAULT_MODEL)
    if default is None:
        raise SystemExit("install the semantic extra")
    models: dict[str, Encode] = {semantic.DEFAULT_MODEL: default.encode}
    for item in args.onnx:
        name, _, path = item.partition("=")
        models[name] = onnx_encoder(Path(path))
    papers = load_papers(SHARED_DUMPS)
    profiles = load_profiles(EVAL_DIR)
    splits = {split: [p for p in profiles if p.split == split] for split in ("held-out", "tune")}
    print(f"papers: {len(papers)}; profiles: {len(profiles)}\n")
    print("| model | embed 229 papers | system | " + " | ".join(f"{s} ({len(g)})" for s, g in splits.items()) + " |")
    print("|---|---:|---|" + "---|" * len(splits))
    for name, encode in models.items():
        encode(["warm up"])
        started = time.perf_counter()
        matrix = encode([semantic.paper_text(paper) for paper in papers])
        elapsed = time.perf_counter() - started
        vectors = {paper.paper_id: row for paper, row in zip(papers, matrix)}
        systems = {
            "embedding": embedding_system(papers, matrix, encode, args.max_papers),
            "hybrid": ranker_system(PaperIndex.build(papers, Semantic(vectors, encode)), args.max_papers),
        }
        for system_name, system in systems.items():
            cells = []
            for group in splits.values():
                rows = [scores(system(p), p.grades, args.max_papers) for p in group]
                cells.append(" / ".join(f"{mean(r[m] for r in rows):.3f}" for m in METRICS))
            print(f"| {name} | {elapsed:.1f} s | {system_name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
