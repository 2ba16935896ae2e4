"""expert comments on published evaluation reports, with the lab's one reply

Revision ID: e7c0a1b2c301
Revises: e7a1f0c2d901
Create Date: 2026-12-06 09:30:00
"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'e7c0a1b2c301'
down_revision = 'e7a1f0c2d901'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'expert_comment',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('published_id', sa.Integer(), nullable=False),
        sa.Column('author_id', sa.Integer(), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('reply', sa.Text(), nullable=True),
        sa.Column('reply_by_id', sa.Integer(), nullable=True),
        sa.Column('replied_at', sa.DateTime(), nullable=True),
        sa.Column('lab_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(['author_id'], ['user.id']),
        sa.ForeignKeyConstraint(['lab_id'], ['lab.id']),
        sa.ForeignKeyConstraint(['published_id'], ['published_report.id']),
        sa.ForeignKeyConstraint(['reply_by_id'], ['user.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('expert_comment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_expert_comment_lab_id'), ['lab_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_expert_comment_published_id'), ['published_id'],
                              unique=False)


def downgrade():
    with op.batch_alter_table('expert_comment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_expert_comment_published_id'))
        batch_op.drop_index(batch_op.f('ix_expert_comment_lab_id'))
    op.drop_table('expert_comment')
