"""spending budgets

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-20 10:00:00.000000

``spending``: what each spending budget (an X channel's ``budget``, its account's
``account_budget``) has reserved or been charged in one UTC window, in integer
micro-dollars, and when a request was first refused in that window (the admins
are told once). One row per budget, period and window; the delivery service
reserves against it before each paid request, in one transaction with a
conditional check, so instances sharing the database never overspend together.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('spending',
    sa.Column('budget', sa.Text(), nullable=False),
    sa.Column('period', sa.String(length=8), nullable=False),
    sa.Column('window_start', sa.String(length=10), nullable=False),
    sa.Column('spent', sa.BigInteger(), nullable=False),
    sa.Column('reached_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('budget', 'period', 'window_start', name=op.f('pk_spending'))
    )


def downgrade() -> None:
    op.drop_table('spending')
