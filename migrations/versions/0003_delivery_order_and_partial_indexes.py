"""delivery order column and partial indexes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 09:30:00.000000

``deliveries.post_at`` copies the post's date (first seen if undated) onto the
delivery, so the per-channel "oldest post first" claim walks a partial index
over the waiting rows instead of sorting every waiting row of the channel on
each claim. ``ix_subscriptions_backfill`` keeps the per-poll backfill check
from scanning every subscription.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

PENDING = "status IN ('queued', 'failed')"


def upgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('post_at', sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE deliveries SET post_at = (SELECT COALESCE(posts.published_at, posts.first_seen_at) "
               "FROM posts WHERE posts.id = deliveries.post_id)")
    op.create_index('ix_deliveries_pending', 'deliveries', ['channel_id', 'post_at', 'id'], unique=False,
                    sqlite_where=sa.text(PENDING), postgresql_where=sa.text(PENDING))
    op.create_index('ix_subscriptions_backfill', 'subscriptions', ['backfill'], unique=False,
                    sqlite_where=sa.text('backfill > 0'), postgresql_where=sa.text('backfill > 0'))


def downgrade() -> None:
    op.drop_index('ix_subscriptions_backfill', table_name='subscriptions')
    op.drop_index('ix_deliveries_pending', table_name='deliveries')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_column('post_at')
