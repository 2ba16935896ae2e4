"""share links hashed and scoped; published reports

Revision ID: c1d2e3f40004
Revises: c1d2e3f40003
Create Date: 2026-12-06 03:30:00

The unused ``share_link`` table (a plain token, no scope) is replaced: links now store only
the SHA-256 of their token, name the lab and report they open, count views and can be
revoked. ``published_report`` holds frozen reports (a published evaluation's JSON).
No share link existed before this revision, so nothing is carried over.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c1d2e3f40004'
down_revision = 'c1d2e3f40003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('published_report',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('lab_id', sa.Integer(), nullable=False),
    sa.Column('period', sa.String(length=16), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('content', sa.JSON(), nullable=False),
    sa.Column('fingerprint', sa.String(length=32), nullable=False),
    sa.Column('published_at', sa.DateTime(), nullable=False),
    sa.Column('published_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['lab_id'], ['lab.id'], name=op.f('fk_published_report_lab_id_lab')),
    sa.ForeignKeyConstraint(['published_by_id'], ['user.id'], name=op.f('fk_published_report_published_by_id_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_published_report')),
    sa.UniqueConstraint('kind', 'lab_id', 'period', name=op.f('uq_published_report_kind_lab_id_period'))
    )
    with op.batch_alter_table('published_report', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_published_report_lab_id'), ['lab_id'], unique=False)

    op.drop_table('share_link')
    op.create_table('share_link',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('lab_id', sa.Integer(), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('published_id', sa.Integer(), nullable=True),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=True),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.Column('revoked_by_id', sa.Integer(), nullable=True),
    sa.Column('view_count', sa.Integer(), nullable=False),
    sa.Column('last_viewed_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['user.id'], name=op.f('fk_share_link_created_by_id_user')),
    sa.ForeignKeyConstraint(['lab_id'], ['lab.id'], name=op.f('fk_share_link_lab_id_lab')),
    sa.ForeignKeyConstraint(['published_id'], ['published_report.id'], name=op.f('fk_share_link_published_id_published_report')),
    sa.ForeignKeyConstraint(['revoked_by_id'], ['user.id'], name=op.f('fk_share_link_revoked_by_id_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_share_link')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_share_link_token_hash'))
    )
    with op.batch_alter_table('share_link', schema=None) as batch_op:
        batch_op.create_index('ix_share_link_creator', ['created_by_id', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_share_link_lab_id'), ['lab_id'], unique=False)


def downgrade():
    op.drop_table('share_link')
    op.create_table('share_link',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=True),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['user.id'], name=op.f('fk_share_link_created_by_id_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_share_link')),
    sa.UniqueConstraint('token', name=op.f('uq_share_link_token'))
    )
    with op.batch_alter_table('published_report', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_published_report_lab_id'))
    op.drop_table('published_report')
