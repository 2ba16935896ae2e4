"""Flask CLI commands: ``flask --app wsgi seed-demo`` and friends."""

from __future__ import annotations

import click
from flask import Flask
from sqlalchemy import func, select

from qcwx.extensions import db


def install(app: Flask) -> None:
    """Register the commands on ``app``."""

    @app.cli.command("seed-demo")
    @click.option("--if-empty", is_flag=True, help="Seed only when the database has no region.")
    @click.option("--days", default=120, show_default=True, help="Days of daily QC results.")
    def seed_demo(if_empty: bool, days: int) -> None:
        """Create the deterministic demo region (hospitals, labs, users, 120 days of QC)."""
        from qcwx.demo.seed import DEMO_PASSWORDS, seed
        from qcwx.orgs.models import Region

        if if_empty and db.session.scalar(select(func.count()).select_from(Region)):
            click.echo("database already holds data; demo seed skipped")
            return
        summary = seed(days=days)
        db.session.commit()
        click.echo(summary)
        for username, password in DEMO_PASSWORDS.items():
            click.echo(f"  {username:<12} {password}")
