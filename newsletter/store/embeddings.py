"""Sentence embeddings of papers and keywords, per model: written when papers are ingested and
when the subscribers file changes, read by the ranker at send time (so a send needs no model)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.sql.schema import Table

from newsletter.models import Paper
from newsletter.store.base import StoreBase
from newsletter.store.base import now as _now
from newsletter.store.papers import paper_from_row
from newsletter.store.schema import EMBEDDING_DTYPE, keyword_embeddings, paper_embeddings, papers

_IN_LIST = 500  # bound the IN lists


class EmbeddingStore(StoreBase):
    # papers --------------------------------------------------------------------------------
    def paper_embeddings(self, model: str, paper_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors of these papers for `model` (papers without one are left out)."""
        return self._vectors(paper_embeddings, paper_embeddings.c.paper_id, model, paper_ids)

    def save_paper_embeddings(self, model: str, vectors: dict[str, np.ndarray]) -> None:
        """Store vectors for `model`; a paper that already has one keeps it."""
        self._save(paper_embeddings, "paper_id", model, vectors)

    def papers_without_embedding(self, model: str) -> list[Paper]:
        """The stored papers that have no vector for `model` yet."""
        embedded = select(paper_embeddings.c.paper_id).where(paper_embeddings.c.model == model)
        with self._tx() as db:
            rows = db.execute(select(papers).where(papers.c.paper_id.not_in(embedded)))
            return [paper_from_row(row._mapping) for row in rows]

    # keywords ------------------------------------------------------------------------------
    def keyword_embeddings(self, model: str, texts: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """The stored vectors of these keyword texts for `model` (all of them for None)."""
        if texts is None:
            with self._tx() as db:
                rows = db.execute(
                    select(keyword_embeddings.c.keyword, keyword_embeddings.c.vector).where(
                        keyword_embeddings.c.model == model
                    )
                )
                return {text: np.frombuffer(vector, dtype=EMBEDDING_DTYPE) for text, vector in rows}
        return self._vectors(keyword_embeddings, keyword_embeddings.c.keyword, model, list(texts))

    def save_keyword_embeddings(self, model: str, vectors: dict[str, np.ndarray]) -> None:
        """Store keyword vectors for `model`; a text that already has one keeps it."""
        self._save(keyword_embeddings, "keyword", model, vectors)

    # shared --------------------------------------------------------------------------------
    def _vectors(self, table: Table, key: object, model: str, wanted: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        wanted = list(dict.fromkeys(wanted))
        with self._tx() as db:
            for start in range(0, len(wanted), _IN_LIST):
                rows = db.execute(
                    select(key, table.c.vector).where(  # type: ignore[call-overload]
                        table.c.model == model, key.in_(wanted[start : start + _IN_LIST])  # type: ignore[attr-defined]
                    )
                )
                for name, vector in rows:
                    found[name] = np.frombuffer(vector, dtype=EMBEDDING_DTYPE)
        return found

    def _save(self, table: Table, key: str, model: str, vectors: dict[str, np.ndarray]) -> None:
        if not vectors:
            return
        now = _now()
        with self._tx() as db:
            known: set[str] = set()
            names = list(vectors)
            for start in range(0, len(names), _IN_LIST):
                known.update(
                    db.execute(
                        select(table.c[key]).where(
                            table.c.model == model, table.c[key].in_(names[start : start + _IN_LIST])
                        )
                    ).scalars()
                )
            rows = [
                {
                    key: name,
                    "model": model,
                    "dimension": int(vector.shape[0]),
                    "vector": np.ascontiguousarray(vector, dtype=EMBEDDING_DTYPE).tobytes(),
                    "created_at": now,
                }
                for name, vector in vectors.items()
                if name not in known
            ]
            if rows:
                db.execute(table.insert(), rows)
