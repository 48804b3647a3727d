"""a post's whole life: edit and delete deliveries, content hashes, unpublishing

Revision ID: 0011
Revises: 0012
Create Date: 2026-12-20 10:00:00.000000

``deliveries.kind`` says what a delivery does on its channel: ``post`` (the
message itself, every row before this revision), ``edit`` (update the message
to the post's current content) or ``delete`` (remove it). A (post, channel)
pair has at most one delivery of each kind, so the unique constraint becomes
(post_id, channel_id, kind). ``deliveries.rendered_hash`` is the hash of what
the channel's message shows (the rendering that was sent or last edited in):
an edit whose new rendering hashes the same sends nothing.
``ix_deliveries_channel_sent`` finds a channel's recently sent messages (the
posts whose unpublishing is watched) without reading its history.

``posts.content_hash`` is the hash of what a rendering can show (title, link,
excerpt, image, author): a known post seen again with another hash was edited
(NULL for existing rows: the next poll records it, and nothing is edited for
it). ``posts.missing_since`` is when the post's URL first answered 404/410
(a second answer some minutes later confirms the unpublishing);
``posts.unpublished_at`` when it was confirmed.

On SQLite a unique constraint declared with its table can only change by
rebuilding the table: ``deliveries`` is copied into a new one (no other table
refers to it, so nothing cascades), in this migration's one transaction. Its
partial index is dropped first and made again after, with its predicate.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0012'
branch_labels = None
depends_on = None

PENDING = "status IN ('queued', 'failed')"


def upgrade() -> None:
    op.add_column('posts', sa.Column('content_hash', sa.String(length=64), nullable=True))
    op.add_column('posts', sa.Column('missing_since', sa.DateTime(timezone=True), nullable=True))
    op.add_column('posts', sa.Column('unpublished_at', sa.DateTime(timezone=True), nullable=True))
    op.drop_index('ix_deliveries_pending', table_name='deliveries')
    with op.batch_alter_table('deliveries', schema=None, recreate='auto') as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=8), server_default=sa.text("'post'"),
                                      nullable=False))
        batch_op.add_column(sa.Column('rendered_hash', sa.String(length=64), nullable=True))
        batch_op.drop_constraint('uq_deliveries_post_id_channel_id', type_='unique')
        batch_op.create_unique_constraint('uq_deliveries_post_id_channel_id_kind', ['post_id', 'channel_id', 'kind'])
        batch_op.create_index('ix_deliveries_channel_sent', ['channel_id', 'sent_at'], unique=False)
    op.create_index('ix_deliveries_pending', 'deliveries', ['channel_id', 'post_at', 'id'], unique=False,
                    sqlite_where=sa.text(PENDING), postgresql_where=sa.text(PENDING))


def downgrade() -> None:
    op.execute("DELETE FROM deliveries WHERE kind <> 'post'")
    op.drop_index('ix_deliveries_pending', table_name='deliveries')
    with op.batch_alter_table('deliveries', schema=None, recreate='auto') as batch_op:
        batch_op.drop_index('ix_deliveries_channel_sent')
        batch_op.drop_constraint('uq_deliveries_post_id_channel_id_kind', type_='unique')
        batch_op.create_unique_constraint('uq_deliveries_post_id_channel_id', ['post_id', 'channel_id'])
        batch_op.drop_column('rendered_hash')
        batch_op.drop_column('kind')
    op.create_index('ix_deliveries_pending', 'deliveries', ['channel_id', 'post_at', 'id'], unique=False,
                    sqlite_where=sa.text(PENDING), postgresql_where=sa.text(PENDING))
    for name in ('unpublished_at', 'missing_since', 'content_hash'):
        op.drop_column('posts', name)
