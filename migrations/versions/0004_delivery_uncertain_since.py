"""delivery uncertain_since

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 15:00:00.000000

``deliveries.uncertain_since``: when an attempt of this delivery may have
reached the platform without our knowing (an ambiguous answer, or a crash
while ``sending``). An idempotent publisher's key is honoured only for a
while (Mastodon: one hour); past that, the delivery service looks the post up
on the platform before it sends again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('uncertain_since', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_column('uncertain_since')
