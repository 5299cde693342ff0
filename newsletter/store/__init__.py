"""The store: the only package that speaks SQL (SQLAlchemy 2 Core; SQLite by default).

One `Store` object over one database (SQLite or PostgreSQL), assembled from parts that each own
a job: `schema` (every table), `base` (opening the database, transactions), `migrate` (bringing
its schema to this version's, with Alembic), `papers` (dumps, papers), `embeddings` (paper and keyword vectors), `ledger` (the
delivery ledger), `suppressions` (addresses no longer mailed), `state` (the service's named
values), `choices` (what subscribers chose: unsubscribes, votes), `reports` (what `status` and
`history` read, and the service's heartbeat).
"""

from __future__ import annotations

from newsletter.store.choices import ChoicesStore, Vote
from newsletter.store.embeddings import EmbeddingStore
from newsletter.store.claims import Claim, Lease
from newsletter.store.ledger import DayLedgerStore, DaySnapshot, DeliveryEvent, DigestRecord, LedgerRow
from newsletter.store.papers import PaperStore
from newsletter.store.reports import DigestReport, DumpCounts, ReportStore
from newsletter.store.schema import EMBEDDING_DTYPE, metadata
from newsletter.store.state import StateStore
from newsletter.store.suppressions import Suppression, SuppressionStore

__all__ = [
    "EMBEDDING_DTYPE", "Claim", "DaySnapshot", "Lease", "DeliveryEvent", "DigestRecord", "DigestReport", "DumpCounts", "LedgerRow",
    "Store", "Suppression", "Vote", "metadata",
]


class Store(PaperStore, EmbeddingStore, DayLedgerStore, SuppressionStore, StateStore, ChoicesStore, ReportStore):
    """Papers, embeddings, the delivery ledger, suppressions, choices and reports in one database."""
