"""retention: when a post was last listed, when its content was pruned, when a source last listed

Revision ID: 0013
Revises: 0014
Create Date: 2026-12-06 01:00:00.000000

``posts.last_seen_at``: the last successful listing that showed the post (a poll refreshes it when
older than a day, or half the identity period); existing rows start at ``first_seen_at``.
``posts.pruned_at``: when its full content (``content_html``, ``summary_html``, ``image_alt``) was
dropped by retention: such a post is never backfilled. ``sources.listed_at``: the last 200 that
parsed (a 304 does not move it: it repeats that listing, whose posts were seen then); NULL for
existing sources until their next such poll, so no identity goes before the source has listed again.
``sources.retired_before``: the newest date (published, else first seen) of the posts whose identity
was removed; a dated post at or before it that comes back is recorded, not sent again.
Indexes for the prune pass: a source's posts by ``last_seen_at``, the unpruned posts by
``first_seen_at`` (partial), deliveries by ``updated_at``, rule drops by ``at``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0014'
branch_labels = None
depends_on = None

UNPRUNED = "pruned_at IS NULL"


def upgrade() -> None:
    op.add_column('posts', sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('posts', sa.Column('pruned_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('sources', sa.Column('listed_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('sources', sa.Column('retired_before', sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE posts SET last_seen_at = first_seen_at")
    op.create_index('ix_posts_source_seen', 'posts', ['source_id', 'last_seen_at'], unique=False)
    op.create_index('ix_posts_unpruned', 'posts', ['first_seen_at', 'id'], unique=False,
                    sqlite_where=sa.text(UNPRUNED), postgresql_where=sa.text(UNPRUNED))
    op.create_index('ix_deliveries_updated', 'deliveries', ['updated_at', 'id'], unique=False)
    op.create_index('ix_rule_drops_at', 'rule_drops', ['at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_rule_drops_at', table_name='rule_drops')
    op.drop_index('ix_deliveries_updated', table_name='deliveries')
    op.drop_index('ix_posts_unpruned', table_name='posts')
    op.drop_index('ix_posts_source_seen', table_name='posts')
    # plain ALTER TABLE … DROP COLUMN on both dialects (SQLite ≥ 3.35), as 0011 does: a batch rebuild of
    # ``posts`` would drop the table, and with foreign keys on that deletes its tags and deliveries
    for table, column in (('sources', 'retired_before'), ('sources', 'listed_at'), ('posts', 'pruned_at'),
                          ('posts', 'last_seen_at')):
        op.drop_column(table, column)
