"""subscription rules and the posts they kept from channels

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 10:00:00.000000

``subscriptions.rule``: the subscription's conditions (``bot.domain.rules``: all/none
of tags, keywords, patterns, ``max_age``, sources) as JSON; NULL for none, which is
what every existing subscription gets (it keeps sending every post with its tag).

``rule_drops``: one row per (post, channel) that a subscribed tag matched but a rule
kept out, when it was detected (or scanned by a backfill): the subscription whose
rule decided (its tag name; NULL for the channel's own ``exclude_tags`` /
``exclude_keywords``), the condition, and what about the post made it fail.
``tagrelay explain`` reads it. A (post, channel) with no subscribed tag has no row.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:  # an ADD COLUMN on SQLite too
        batch_op.add_column(sa.Column('rule', sa.Text(), nullable=True))
    op.create_table('rule_drops',
    sa.Column('post_id', ID, nullable=False),
    sa.Column('channel_id', ID, nullable=False),
    sa.Column('subscription', sa.String(length=255), nullable=True),
    sa.Column('condition', sa.String(length=32), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['channels.id'], name=op.f('fk_rule_drops_channel_id_channels'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['post_id'], ['posts.id'], name=op.f('fk_rule_drops_post_id_posts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('post_id', 'channel_id', name=op.f('pk_rule_drops'))
    )


def downgrade() -> None:
    op.drop_table('rule_drops')
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.drop_column('rule')
