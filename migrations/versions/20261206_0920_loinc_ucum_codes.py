"""LOINC codes of analytes, UCUM codes of units, LOINC codes received from analysers

Revision ID: 0da7a1c0de01
Revises: d4e5f6a70012
Create Date: 2026-12-06 09:20:00

The shipped mapping (qcwx/catalog/data/*.csv, each row with its source) is loaded for the
analytes that already exist, so an existing region gets its codes with the upgrade; the
centre edits them afterwards in the admin.
"""
import csv
from pathlib import Path

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0da7a1c0de01'
down_revision = 'd4e5f6a70012'
branch_labels = None
depends_on = None

DATA = Path(__file__).resolve().parents[2] / "qcwx" / "catalog" / "data"


def _rows(name):
    with (DATA / f"{name}.csv").open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def upgrade():
    loinc = op.create_table('analyte_loinc',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('analyte_id', sa.Integer(), nullable=False),
    sa.Column('loinc', sa.String(length=10), nullable=False),
    sa.Column('display', sa.String(length=200), nullable=False),
    sa.Column('specimen', sa.String(length=16), nullable=False),
    sa.Column('property', sa.String(length=8), nullable=False),
    sa.Column('method', sa.String(length=32), nullable=True),
    sa.Column('ucum', sa.String(length=32), nullable=False),
    sa.Column('is_default', sa.Boolean(), nullable=False),
    sa.Column('source', sa.String(length=100), nullable=False),
    sa.ForeignKeyConstraint(['analyte_id'], ['analyte.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('analyte_id', 'loinc')
    )
    with op.batch_alter_table('analyte_loinc', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_analyte_loinc_analyte_id'), ['analyte_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_analyte_loinc_loinc'), ['loinc'], unique=False)

    units = op.create_table('unit_code',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('unit', sa.String(length=32), nullable=False),
    sa.Column('ucum', sa.String(length=32), nullable=False),
    sa.Column('source', sa.String(length=100), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('unit')
    )
    op.create_table('received_loinc',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lab_id', sa.Integer(), nullable=False),
    sa.Column('test_system_id', sa.Integer(), nullable=False),
    sa.Column('source_code', sa.String(length=64), nullable=False),
    sa.Column('loinc', sa.String(length=10), nullable=False),
    sa.Column('first_seen_at', sa.DateTime(), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['lab_id'], ['lab.id'], ),
    sa.ForeignKeyConstraint(['test_system_id'], ['test_system.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('test_system_id', 'source_code', 'loinc')
    )
    with op.batch_alter_table('received_loinc', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_received_loinc_lab_id'), ['lab_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_received_loinc_test_system_id'), ['test_system_id'], unique=False)

    analyte = sa.table('analyte', sa.column('id', sa.Integer), sa.column('code', sa.String))
    ids = dict(op.get_bind().execute(sa.select(analyte.c.code, analyte.c.id)).all())
    rows = [{"analyte_id": ids[r["analyte_code"]], "loinc": r["loinc"], "display": r["display"],
             "specimen": r["specimen"], "property": r["property"], "method": r["method"] or None,
             "ucum": r["ucum"], "is_default": r["is_default"] == "1", "source": r["source"]}
            for r in _rows("analyte_loinc") if r["analyte_code"] in ids]
    if rows:
        op.bulk_insert(loinc, rows)
    op.bulk_insert(units, _rows("unit_ucum"))


def downgrade():
    with op.batch_alter_table('received_loinc', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_received_loinc_test_system_id'))
        batch_op.drop_index(batch_op.f('ix_received_loinc_lab_id'))
    op.drop_table('received_loinc')
    op.drop_table('unit_code')
    with op.batch_alter_table('analyte_loinc', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_analyte_loinc_loinc'))
        batch_op.drop_index(batch_op.f('ix_analyte_loinc_analyte_id'))
    op.drop_table('analyte_loinc')
