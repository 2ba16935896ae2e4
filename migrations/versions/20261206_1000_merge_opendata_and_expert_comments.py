"""merge heads: open-data exports and expert comments both followed the region tree

Revision ID: 0da7a1c0de03
Revises: 0da7a1c0de02, e7c0a1b2c301
Create Date: 2026-12-06 10:00:00

Two migrations landed on the same parent; this joins them so there is one head again.
"""

# revision identifiers, used by Alembic.
revision = '0da7a1c0de03'
down_revision = ('0da7a1c0de02', 'e7c0a1b2c301')
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
