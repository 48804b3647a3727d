"""featured image alt text

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 21:40:00.000000

``posts.image_alt``: the featured image's text alternative as the source gave it
(WordPress ``alt_text``, Media RSS ``media:description``, the ``alt`` of the
content's first ``<img>``), sent with the image where a platform takes one.
Existing rows get NULL (no alt text known).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('posts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('image_alt', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('posts', schema=None) as batch_op:
        batch_op.drop_column('image_alt')
