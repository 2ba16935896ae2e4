"""regional reports: published reports and share links of a region

Revision ID: d7e1c0a90002
Revises: 5e55f0a1b2c3
Create Date: 2026-12-06 09:10:00

A region's monthly/quarterly/yearly report is a published report that names a region
instead of a lab: ``published_report`` and ``share_link`` gain ``region_id`` and their
``lab_id`` becomes optional. Existing rows all name a lab and are unchanged.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'd7e1c0a90002'
down_revision = '5e55f0a1b2c3'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('published_report', schema=None) as batch_op:
        batch_op.add_column(sa.Column('region_id', sa.Integer(), nullable=True))
        batch_op.alter_column('lab_id',
               existing_type=sa.INTEGER(),
               nullable=True)
        batch_op.create_index(batch_op.f('ix_published_report_region_id'), ['region_id'], unique=False)
        batch_op.create_unique_constraint(batch_op.f('uq_published_report_kind_region_id_period'), ['kind', 'region_id', 'period'])
        batch_op.create_foreign_key(batch_op.f('fk_published_report_region_id_region'), 'region', ['region_id'], ['id'])

    with op.batch_alter_table('share_link', schema=None) as batch_op:
        batch_op.add_column(sa.Column('region_id', sa.Integer(), nullable=True))
        batch_op.alter_column('lab_id',
               existing_type=sa.INTEGER(),
               nullable=True)
        batch_op.create_index(batch_op.f('ix_share_link_region_id'), ['region_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_share_link_region_id_region'), 'region', ['region_id'], ['id'])



def downgrade():
    with op.batch_alter_table('share_link', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_share_link_region_id_region'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_share_link_region_id'))
        batch_op.alter_column('lab_id',
               existing_type=sa.INTEGER(),
               nullable=False)
        batch_op.drop_column('region_id')

    with op.batch_alter_table('published_report', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_published_report_region_id_region'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_published_report_kind_region_id_period'), type_='unique')
        batch_op.drop_index(batch_op.f('ix_published_report_region_id'))
        batch_op.alter_column('lab_id',
               existing_type=sa.INTEGER(),
               nullable=False)
        batch_op.drop_column('region_id')

