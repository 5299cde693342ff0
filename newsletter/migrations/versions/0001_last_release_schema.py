"""The schema of the last release before migrations (0.1.0, git 661a1ce), as its create_all made it.

A database written by that release has these tables and no alembic_version table: the store
recognises it and stamps this revision before upgrading (`newsletter.store.migrate`).

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "digests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber", sa.String(length=320), nullable=False),
        sa.Column("digest_day", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("paper_count", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("subscriber", "digest_day"),
    )
    op.create_table(
        "dumps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("format", sa.String(length=32), nullable=True),
        sa.Column("listing_date", sa.Date(), nullable=True),
        sa.Column("paper_count", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sha256"),
    )
    op.create_table(
        "papers",
        sa.Column("paper_id", sa.String(length=80), nullable=False),
        sa.Column("arxiv_id", sa.String(length=40), nullable=True),
        sa.Column("title_key", sa.String(length=80), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("abstract", sa.Text(), nullable=False),
        sa.Column("authors", sa.Text(), nullable=False),
        sa.Column("author_count", sa.Integer(), nullable=True),
        sa.Column("organization", sa.Text(), nullable=True),
        sa.Column("published", sa.Date(), nullable=True),
        sa.Column("upvotes", sa.Integer(), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("paper_id"),
    )
    op.create_index(op.f("ix_papers_arxiv_id"), "papers", ["arxiv_id"], unique=False)
    op.create_index(op.f("ix_papers_title_key"), "papers", ["title_key"], unique=False)
    op.create_table(
        "suppressions",
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("suppressed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("address"),
    )
    op.create_table(
        "digest_papers",
        sa.Column("digest_id", sa.Integer(), nullable=False),
        sa.Column("paper_id", sa.String(length=80), nullable=False),
        sa.Column("subscriber", sa.String(length=320), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["digest_id"], ["digests.id"]),
        sa.ForeignKeyConstraint(["paper_id"], ["papers.paper_id"]),
        sa.PrimaryKeyConstraint("digest_id", "paper_id"),
        sa.UniqueConstraint("subscriber", "paper_id"),
    )
    op.create_table(
        "dump_papers",
        sa.Column("dump_id", sa.Integer(), nullable=False),
        sa.Column("paper_id", sa.String(length=80), nullable=False),
        sa.ForeignKeyConstraint(["dump_id"], ["dumps.id"]),
        sa.ForeignKeyConstraint(["paper_id"], ["papers.paper_id"]),
        sa.PrimaryKeyConstraint("dump_id", "paper_id"),
    )
    op.create_table(
        "paper_embeddings",
        sa.Column("paper_id", sa.String(length=80), nullable=False),
        sa.Column("model", sa.String(length=255), nullable=False),
        sa.Column("dimension", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["paper_id"], ["papers.paper_id"]),
        sa.PrimaryKeyConstraint("paper_id", "model"),
    )


def downgrade() -> None:
    for table in ("paper_embeddings", "dump_papers", "digest_papers", "suppressions"):
        op.drop_table(table)
    op.drop_index(op.f("ix_papers_title_key"), table_name="papers")
    op.drop_index(op.f("ix_papers_arxiv_id"), table_name="papers")
    for table in ("papers", "dumps", "digests"):
        op.drop_table(table)
