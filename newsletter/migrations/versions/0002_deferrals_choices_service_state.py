"""Deferred delivery, keyword embeddings, subscribers' own choices and the service's state.

- `digests.next_attempt_at` (a deferred digest's next try) and `digests.sent_at`;
- `keyword_embeddings` (the hybrid ranker's keyword vectors, once per model and keyword);
- `unsubscribes` and `votes` (what subscribers chose through links or the CLI);
- `service_state` (the scheduler's heartbeat and last send per slot).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "keyword_embeddings",
        sa.Column("model", sa.String(length=255), nullable=False),
        sa.Column("keyword", sa.String(length=512), nullable=False),
        sa.Column("dimension", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model", "keyword"),
    )
    op.create_table(
        "service_state",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "unsubscribes",
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("unsubscribed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("address"),
    )
    op.create_table(
        "votes",
        sa.Column("subscriber", sa.String(length=320), nullable=False),
        sa.Column("paper_id", sa.String(length=80), nullable=False),
        sa.Column("vote", sa.SmallInteger(), nullable=False),
        sa.Column("voted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("subscriber", "paper_id"),
    )
    with op.batch_alter_table("digests") as batch_op:
        batch_op.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("digests") as batch_op:
        batch_op.drop_column("sent_at")
        batch_op.drop_column("next_attempt_at")
    for table in ("votes", "unsubscribes", "service_state", "keyword_embeddings"):
        op.drop_table(table)
