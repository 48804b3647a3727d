"""post link identity, guid churn and burst counters

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 10:00:00.000000

``posts.link_key`` is the post's canonical link (``bot.domain.identity.link_key``):
a post whose guid changes between polls is recognised by it, through
``ix_posts_source_link`` (an index lookup per new item, not a scan of the history).
Existing rows are filled in here, in id order and in bounded batches.

``sources.guid_churn_last/guid_churn_total/guid_churn_at`` count the posts whose
guid changed for a known link (``status`` warns about them); ``sources.usual_new``
is the moving average of new posts per poll that ``status`` quotes next to a held
burst. Held bursts themselves are deliveries with status ``held`` (no schema change).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.domain.identity import link_key

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

BATCH = 1000


# Plain ADD/DROP COLUMN, never a batch "move and copy": on SQLite that drops and recreates the table,
# and dropping ``sources`` or ``posts`` with foreign keys on would cascade to every post and delivery.
# (SQLite has ALTER TABLE ... DROP COLUMN since 3.35.)


def upgrade() -> None:
    op.add_column('posts', sa.Column('link_key', sa.Text(), nullable=True))
    op.add_column('sources', sa.Column('guid_churn_last', sa.Integer(), server_default=sa.text('0'), nullable=False))
    op.add_column('sources', sa.Column('guid_churn_total', sa.Integer(), server_default=sa.text('0'), nullable=False))
    op.add_column('sources', sa.Column('guid_churn_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('sources', sa.Column('usual_new', sa.Float(), nullable=True))
    _fill_link_keys()
    op.create_index('ix_posts_source_link', 'posts', ['source_id', 'link_key'], unique=False)


def _fill_link_keys() -> None:
    conn = op.get_bind()
    posts = sa.table('posts', sa.column('id', sa.Integer()), sa.column('url', sa.Text()),
                     sa.column('link_key', sa.Text()))
    update = sa.update(posts).where(posts.c.id == sa.bindparam('b_id')).values(link_key=sa.bindparam('b_key'))
    last = 0
    while True:
        rows = conn.execute(sa.select(posts.c.id, posts.c.url).where(posts.c.id > last, posts.c.url.is_not(None))
                            .order_by(posts.c.id).limit(BATCH)).all()
        if not rows:
            return
        values = [{'b_id': r.id, 'b_key': key} for r in rows if (key := link_key(r.url)) is not None]
        if values:
            conn.execute(update, values)
        last = rows[-1].id


def downgrade() -> None:
    op.drop_index('ix_posts_source_link', table_name='posts')
    for name in ('usual_new', 'guid_churn_at', 'guid_churn_total', 'guid_churn_last'):
        op.drop_column('sources', name)
    op.drop_column('posts', 'link_key')
