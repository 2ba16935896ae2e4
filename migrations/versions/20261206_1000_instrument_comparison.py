"""Saved instrument comparisons (WS/T 407): pairs, lambda, allowable bias, decision levels.

Revision ID: 5a17c0e3b9d2
Revises: 0da7a1c0de03
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '5a17c0e3b9d2'
down_revision = '0da7a1c0de03'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('instrument_comparison',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lab_id', sa.Integer(), nullable=False),
    sa.Column('analyte_id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=8), nullable=False),
    sa.Column('x_label', sa.String(length=120), nullable=False),
    sa.Column('y_label', sa.String(length=120), nullable=False),
    sa.Column('x_ts_id', sa.Integer(), nullable=True),
    sa.Column('y_ts_id', sa.Integer(), nullable=True),
    sa.Column('period_start', sa.Date(), nullable=True),
    sa.Column('period_end', sa.Date(), nullable=True),
    sa.Column('error_ratio', sa.Double(), nullable=False),
    sa.Column('allowable_bias', sa.Double(), nullable=False),
    sa.Column('decision_levels', sa.JSON(), nullable=False),
    sa.Column('pairs', sa.JSON(), nullable=False),
    sa.Column('unit', sa.String(length=32), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['analyte_id'], ['analyte.id'], ),
    sa.ForeignKeyConstraint(['created_by_id'], ['user.id'], ),
    sa.ForeignKeyConstraint(['lab_id'], ['lab.id'], ),
    sa.ForeignKeyConstraint(['x_ts_id'], ['test_system.id'], ),
    sa.ForeignKeyConstraint(['y_ts_id'], ['test_system.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('instrument_comparison', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_instrument_comparison_lab_id'), ['lab_id'],
                              unique=False)


def downgrade():
    with op.batch_alter_table('instrument_comparison', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_instrument_comparison_lab_id'))
    op.drop_table('instrument_comparison')
