"""change workflows: the phase each step was taken in, and a run's verdict (PASS or FAIL) and why

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 20:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("step", schema=None) as batch_op:
        batch_op.add_column(sa.Column("phase", sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default=""))
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("verdict", sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default=""))
        batch_op.add_column(
            sa.Column("verdict_reason", sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.drop_column("verdict_reason")
        batch_op.drop_column("verdict")
    with op.batch_alter_table("step", schema=None) as batch_op:
        batch_op.drop_column("phase")
