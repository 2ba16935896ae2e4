"""Peer cache: index (test_system_id, day), so a refresh of recent days reads only those days.

The primary key is (test_system_id, qc_level_id, day): "this system's days from D on" could
not use it past the system, and the refresh after every submission read the system's whole
cached history (801 rows for 400 days; tests/integration/test_submit_scaling.py).

Revision ID: 7c0a5e1d2b30
Revises: 5a1f7c3e9b20
Create Date: 2026-12-07 03:00:00
"""
from alembic import op

# revision identifiers, used by Alembic.
revision = '7c0a5e1d2b30'
down_revision = '5a1f7c3e9b20'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('peer_lab_day', schema=None) as batch_op:
        batch_op.create_index('ix_peer_lab_day_ts_day', ['test_system_id', 'day'], unique=False)


def downgrade():
    with op.batch_alter_table('peer_lab_day', schema=None) as batch_op:
        batch_op.drop_index('ix_peer_lab_day_ts_day')
