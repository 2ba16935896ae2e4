"""submission client_id unique per lab, not across the platform

Revision ID: c1d2e3f40001
Revises: 3f5fe13a95dc
Create Date: 2026-12-06 03:00:00

A lab's LIS numbering its runs 1, 2, 3 was refused because another lab had used those ids.
The lab is copied onto each submission (from its run's test system) and the uniqueness
moves from ``client_id`` to ``(lab_id, client_id)``.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c1d2e3f40001'
down_revision = '3f5fe13a95dc'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('submission', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lab_id', sa.Integer(), nullable=True))
    op.execute(
        "UPDATE submission SET lab_id = (SELECT test_system.lab_id FROM qc_run "
        "JOIN test_system ON test_system.id = qc_run.test_system_id "
        "WHERE qc_run.id = submission.run_id)")
    with op.batch_alter_table('submission', schema=None) as batch_op:
        batch_op.alter_column('lab_id', existing_type=sa.Integer(), nullable=False)
        batch_op.drop_constraint('uq_submission_client_id', type_='unique')
        batch_op.create_unique_constraint(batch_op.f('uq_submission_lab_id_client_id'),
                                          ['lab_id', 'client_id'])
        batch_op.create_foreign_key(batch_op.f('fk_submission_lab_id_lab'), 'lab',
                                    ['lab_id'], ['id'])


def downgrade():
    with op.batch_alter_table('submission', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_submission_lab_id_lab'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_submission_lab_id_client_id'), type_='unique')
        batch_op.create_unique_constraint('uq_submission_client_id', ['client_id'])
        batch_op.drop_column('lab_id')
