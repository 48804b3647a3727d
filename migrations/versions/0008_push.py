"""push: poll requests and WebSub subscriptions

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 10:00:00.000000

``sources.push_requests``: how many push triggers (a signed ``POST /hooks/<source>`` or a WebSub
notification) the source has received. A poll remembers the count it started with; a trigger that
arrived while it ran (after its fetch, perhaps) is seen when the count moved, and gets one more
poll. Existing rows start at 0.

``websub_subscriptions``: one row per source whose feed advertises a WebSub hub: the hub, the
topic, where the subscription stands (``pending``, ``requested``, ``active``, ``denied``,
``failed``, ``dropped``), its lease and when to renew it. The secret given to the hub is never
stored: it is derived from ``[push] websub_secret_env`` and the callback and topic.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


# Plain ADD/DROP COLUMN on ``sources``, never a batch "move and copy" (see 0005): on SQLite that drops and
# recreates the table, and dropping ``sources`` with foreign keys on would cascade to every post.


def upgrade() -> None:
    op.add_column('sources', sa.Column('push_requests', sa.Integer(), nullable=False, server_default=sa.text('0')))
    op.create_table(
        'websub_subscriptions',
        sa.Column('source_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('hub_url', sa.Text(), nullable=False),
        sa.Column('topic_url', sa.Text(), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('requested_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('verified_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('lease_seconds', sa.Integer(), nullable=True),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('renew_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False, server_default=sa.text('0')),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['source_id'], ['sources.id'], name=op.f('fk_websub_subscriptions_source_id_sources'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('source_id', name=op.f('pk_websub_subscriptions')),
    )
    op.create_index('ix_websub_subscriptions_renew_at', 'websub_subscriptions', ['renew_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_websub_subscriptions_renew_at', table_name='websub_subscriptions')
    op.drop_table('websub_subscriptions')
    op.drop_column('sources', 'push_requests')
