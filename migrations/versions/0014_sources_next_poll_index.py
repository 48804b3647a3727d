"""sources by next poll time

Revision ID: 0014
Revises: 0011
Create Date: 2026-12-06 01:00:00.000000

``ix_sources_next_poll`` on ``sources(next_poll_at)``: a poll round reads only the
sources whose time has come (``next_poll_at`` NULL or passed) and the earliest
time still to come (``Store.due_sources``), instead of every source's row on every
round. With 10,000 sources a round after each poll was O(sources); with the index
it is O(due sources).
"""

from __future__ import annotations

from alembic import op

revision = '0014'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_sources_next_poll', 'sources', ['next_poll_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_sources_next_poll', table_name='sources')
