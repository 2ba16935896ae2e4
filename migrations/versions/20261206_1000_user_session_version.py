"""User session version: logout and a password change end every session and remember-me cookie

Revision ID: 5e55f0a1b2c3
Revises: 5a17c0e3b9d2
Create Date: 2026-12-06 10:00:00
"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '5e55f0a1b2c3'
down_revision = '5a17c0e3b9d2'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_version', sa.Integer(), server_default='0',
                                      nullable=False))


def downgrade():
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.drop_column('session_version')
