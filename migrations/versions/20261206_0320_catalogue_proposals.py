"""catalogue proposals; repair analyte decimals outside 0-6

Revision ID: c1d2e3f40003
Revises: c1d2e3f40002
Create Date: 2026-12-06 03:20:00

The shared catalogue (analytes, quality specifications, reagents, calibrators, QC materials,
methods) is changed by the platform admin only; a centre proposes a change in
``catalogue_proposal`` and the admin accepts or rejects it. Analytes whose ``decimals`` lies
outside 0-6 (every page formatting their numbers failed) are set to the nearest valid value;
the downgrade cannot restore those values.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c1d2e3f40003'
down_revision = 'c1d2e3f40002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('catalogue_proposal',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('table_name', sa.String(length=32), nullable=False),
    sa.Column('action', sa.String(length=8), nullable=False),
    sa.Column('row_id', sa.Integer(), nullable=True),
    sa.Column('proposed_values', sa.JSON(), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('region_id', sa.Integer(), nullable=True),
    sa.Column('proposed_by_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('decided_by_id', sa.Integer(), nullable=True),
    sa.Column('decided_at', sa.DateTime(), nullable=True),
    sa.Column('decision_note', sa.String(length=500), nullable=True),
    sa.ForeignKeyConstraint(['decided_by_id'], ['user.id'], name=op.f('fk_catalogue_proposal_decided_by_id_user')),
    sa.ForeignKeyConstraint(['proposed_by_id'], ['user.id'], name=op.f('fk_catalogue_proposal_proposed_by_id_user')),
    sa.ForeignKeyConstraint(['region_id'], ['region.id'], name=op.f('fk_catalogue_proposal_region_id_region')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_catalogue_proposal'))
    )
    with op.batch_alter_table('catalogue_proposal', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_catalogue_proposal_region_id'), ['region_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_catalogue_proposal_status'), ['status'], unique=False)

    op.execute("UPDATE analyte SET decimals = 0 WHERE decimals < 0")
    op.execute("UPDATE analyte SET decimals = 6 WHERE decimals > 6")


def downgrade():
    with op.batch_alter_table('catalogue_proposal', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_catalogue_proposal_status'))
        batch_op.drop_index(batch_op.f('ix_catalogue_proposal_region_id'))

    op.drop_table('catalogue_proposal')
