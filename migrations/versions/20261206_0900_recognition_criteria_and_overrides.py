"""recognition criteria per region (versioned) and verdict overrides

Revision ID: d7e1c0a90001
Revises: c1d2e3f40004
Create Date: 2026-12-06 09:00:00

QC_SPEC §7's thresholds become a per-region table with one row per version (who/when; never
updated in place); the centre's overrides of mutual-recognition verdicts keep their reason
and, once withdrawn, who withdrew them and why.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'd7e1c0a90001'
down_revision = 'c1d2e3f40004'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('recognition_criteria',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('region_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('min_submission_pct', sa.Double(), nullable=False),
    sa.Column('min_in_control_pct', sa.Double(), nullable=False),
    sa.Column('window_months', sa.Integer(), nullable=False),
    sa.Column('passing_grades', sa.String(length=4), nullable=False),
    sa.Column('sdi_limit', sa.Double(), nullable=False),
    sa.Column('cvr_limit', sa.Double(), nullable=False),
    sa.Column('note', sa.String(length=200), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['user.id'], name=op.f('fk_recognition_criteria_created_by_id_user')),
    sa.ForeignKeyConstraint(['region_id'], ['region.id'], name=op.f('fk_recognition_criteria_region_id_region')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recognition_criteria')),
    sa.UniqueConstraint('region_id', 'version', name=op.f('uq_recognition_criteria_region_id_version'))
    )
    with op.batch_alter_table('recognition_criteria', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recognition_criteria_region_id'), ['region_id'], unique=False)

    op.create_table('recognition_override',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('region_id', sa.Integer(), nullable=False),
    sa.Column('lab_id', sa.Integer(), nullable=False),
    sa.Column('analyte_id', sa.Integer(), nullable=False),
    sa.Column('month', sa.String(length=7), nullable=False),
    sa.Column('computed_verdict', sa.String(length=8), nullable=False),
    sa.Column('verdict', sa.String(length=8), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('withdrawn_at', sa.DateTime(), nullable=True),
    sa.Column('withdrawn_by_id', sa.Integer(), nullable=True),
    sa.Column('withdraw_reason', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['analyte_id'], ['analyte.id'], name=op.f('fk_recognition_override_analyte_id_analyte')),
    sa.ForeignKeyConstraint(['created_by_id'], ['user.id'], name=op.f('fk_recognition_override_created_by_id_user')),
    sa.ForeignKeyConstraint(['lab_id'], ['lab.id'], name=op.f('fk_recognition_override_lab_id_lab')),
    sa.ForeignKeyConstraint(['region_id'], ['region.id'], name=op.f('fk_recognition_override_region_id_region')),
    sa.ForeignKeyConstraint(['withdrawn_by_id'], ['user.id'], name=op.f('fk_recognition_override_withdrawn_by_id_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recognition_override'))
    )
    with op.batch_alter_table('recognition_override', schema=None) as batch_op:
        batch_op.create_index('ix_recognition_override_key', ['lab_id', 'analyte_id', 'month'], unique=False)
        batch_op.create_index(batch_op.f('ix_recognition_override_region_id'), ['region_id'], unique=False)



def downgrade():
    with op.batch_alter_table('recognition_override', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_recognition_override_region_id'))
        batch_op.drop_index('ix_recognition_override_key')

    op.drop_table('recognition_override')
    with op.batch_alter_table('recognition_criteria', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_recognition_criteria_region_id'))

    op.drop_table('recognition_criteria')
