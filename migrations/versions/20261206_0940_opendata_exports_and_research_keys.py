"""open data: export jobs and research API keys

Revision ID: 0da7a1c0de02
Revises: e7a1f0c2d901
Create Date: 2026-12-06 09:40:00
"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0da7a1c0de02'
down_revision = 'e7a1f0c2d901'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('opendata_export',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('region_id', sa.Integer(), nullable=False),
    sa.Column('requested_by_id', sa.Integer(), nullable=True),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('period_end', sa.Date(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('n_total', sa.Integer(), nullable=False),
    sa.Column('n_done', sa.Integer(), nullable=False),
    sa.Column('n_bundles', sa.Integer(), nullable=False),
    sa.Column('n_validated', sa.Integer(), nullable=False),
    sa.Column('file_name', sa.String(length=255), nullable=True),
    sa.Column('error', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['region_id'], ['region.id'], ),
    sa.ForeignKeyConstraint(['requested_by_id'], ['user.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('opendata_export', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_opendata_export_region_id'), ['region_id'],
                              unique=False)
    op.create_table('research_api_key',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('region_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('scopes', sa.JSON(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('last_used_at', sa.DateTime(), nullable=True),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['user.id'], ),
    sa.ForeignKeyConstraint(['region_id'], ['region.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key_hash')
    )
    with op.batch_alter_table('research_api_key', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_research_api_key_prefix'), ['prefix'], unique=False)
        batch_op.create_index(batch_op.f('ix_research_api_key_region_id'), ['region_id'],
                              unique=False)


def downgrade():
    with op.batch_alter_table('research_api_key', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_research_api_key_region_id'))
        batch_op.drop_index(batch_op.f('ix_research_api_key_prefix'))
    op.drop_table('research_api_key')
    with op.batch_alter_table('opendata_export', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_opendata_export_region_id'))
    op.drop_table('opendata_export')
