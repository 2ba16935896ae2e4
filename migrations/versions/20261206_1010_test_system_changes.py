"""Dated changes of a test system (reagent/calibrator lot, calibration, maintenance).

Revision ID: 5a1f7c3e9b20
Revises: d7e1c0a90002, 5e55f0a1b2c3 (also merges those two heads)
Create Date: 2026-12-06 09:30:00
"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '5a1f7c3e9b20'
down_revision = ('d7e1c0a90002', '5e55f0a1b2c3')
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('test_system_change',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('test_system_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('lot_number', sa.String(length=64), nullable=True),
    sa.Column('changed_on', sa.Date(), nullable=False),
    sa.Column('note', sa.String(length=255), nullable=True),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['user.id'], ),
    sa.ForeignKeyConstraint(['test_system_id'], ['test_system.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('test_system_change', schema=None) as batch_op:
        batch_op.create_index('ix_ts_change_ts_day', ['test_system_id', 'changed_on'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_test_system_change_lot_number'), ['lot_number'],
                              unique=False)


def downgrade():
    with op.batch_alter_table('test_system_change', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_test_system_change_lot_number'))
        batch_op.drop_index('ix_ts_change_ts_day')
    op.drop_table('test_system_change')
