"""Claims on digests, so that several workers share a day without sending one twice.

- `digests.claimed_by`: the process (host:pid, and the Celery task) that took the digest to send it;
- `digests.claimed_until`: until when a `sending` digest stays that process's (a lease); null when
  one process sends the day, whose next run may take the row at once, as before.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("digests") as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("digests") as batch_op:
        batch_op.drop_column("claimed_until")
        batch_op.drop_column("claimed_by")
