"""The store: the only package that speaks SQL (SQLAlchemy 2 Core; SQLite by default).

One `Store` object over one database, assembled from parts that each own a job:
`schema` (every table), `base` (opening the database, transactions), `papers` (dumps, papers),
`embeddings` (paper and keyword vectors), `ledger` (the delivery ledger), `suppressions` (addresses no longer mailed).
"""

from __future__ import annotations

from newsletter.store.embeddings import EmbeddingStore
from newsletter.store.ledger import DigestRecord, LedgerStore
from newsletter.store.papers import PaperStore
from newsletter.store.schema import EMBEDDING_DTYPE, metadata
from newsletter.store.suppressions import Suppression, SuppressionStore

__all__ = ["EMBEDDING_DTYPE", "DigestRecord", "Store", "Suppression", "metadata"]


class Store(PaperStore, EmbeddingStore, LedgerStore, SuppressionStore):
    """Papers, dumps, the delivery ledger and suppressions in one database."""
