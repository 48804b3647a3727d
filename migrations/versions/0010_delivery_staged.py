"""delivery staged

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-20 10:00:00.000000

``deliveries.staged``: what a two-step publisher staged on the platform for this
delivery before publishing it (Threads: the media container's id), written and
committed BEFORE the publishing request leaves. After a lost answer or a crash,
the next attempt asks the platform what became of the staged post (Threads: the
container's ``status``) instead of posting again. Existing rows get NULL
(nothing staged).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('staged', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_column('staged')
