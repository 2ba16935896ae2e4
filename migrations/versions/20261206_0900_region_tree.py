"""region tree: parent region and level (省 / 市 / 区县)

Revision ID: e7a1f0c2d901
Revises: 0da7a1c0de01
Create Date: 2026-12-06 09:00:00

Regions form a tree (province → city → district/county); a centre sees its own region and
every region below it. Existing regions become roots at city level.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e7a1f0c2d901'
down_revision = '0da7a1c0de01'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('region', schema=None) as batch_op:
        batch_op.add_column(sa.Column('parent_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('level', sa.String(length=16), server_default='city',
                                      nullable=False))
        batch_op.create_index(batch_op.f('ix_region_parent_id'), ['parent_id'], unique=False)
        batch_op.create_foreign_key('fk_region_parent_id_region', 'region', ['parent_id'],
                                    ['id'])


def downgrade():
    with op.batch_alter_table('region', schema=None) as batch_op:
        batch_op.drop_constraint('fk_region_parent_id_region', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_region_parent_id'))
        batch_op.drop_column('level')
        batch_op.drop_column('parent_id')
