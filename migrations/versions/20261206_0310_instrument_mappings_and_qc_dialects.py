"""instrument mappings and per-lab QC sample-id pattern

Revision ID: c1d2e3f40002
Revises: c1d2e3f40001
Create Date: 2026-12-06 03:10:00

Two analysers on one QC lot could not be told apart on import: ``instrument_mapping``
maps an analyser as a lab's messages name it to one of the lab's instruments.
``ingest_setting`` keeps a lab's own QC sample-id pattern for analysers that mark QC
nowhere in their messages.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c1d2e3f40002'
down_revision = 'c1d2e3f40001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('instrument_mapping',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lab_id', sa.Integer(), nullable=False),
    sa.Column('source_instrument', sa.String(length=128), nullable=False),
    sa.Column('instrument_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['instrument_id'], ['instrument.id'], name=op.f('fk_instrument_mapping_instrument_id_instrument')),
    sa.ForeignKeyConstraint(['lab_id'], ['lab.id'], name=op.f('fk_instrument_mapping_lab_id_lab')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_instrument_mapping')),
    sa.UniqueConstraint('lab_id', 'source_instrument', name=op.f('uq_instrument_mapping_lab_id_source_instrument'))
    )
    with op.batch_alter_table('instrument_mapping', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_instrument_mapping_lab_id'), ['lab_id'], unique=False)

    op.create_table('ingest_setting',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lab_id', sa.Integer(), nullable=False),
    sa.Column('qc_sample_id_pattern', sa.String(length=200), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['lab_id'], ['lab.id'], name=op.f('fk_ingest_setting_lab_id_lab')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ingest_setting')),
    sa.UniqueConstraint('lab_id', name=op.f('uq_ingest_setting_lab_id'))
    )


def downgrade():
    op.drop_table('ingest_setting')
    with op.batch_alter_table('instrument_mapping', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_instrument_mapping_lab_id'))

    op.drop_table('instrument_mapping')
