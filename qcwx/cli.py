"""Flask CLI commands: ``flask --app wsgi seed-demo`` and friends."""

from __future__ import annotations

from pathlib import Path

import click
from flask import Flask
from sqlalchemy import func, select

from qcwx.extensions import db


def install(app: Flask) -> None:
    """Register the commands on ``app``."""
    for register in (_seed_demo, _fake_wechat, _wechat_menu):
        register(app)


def _seed_demo(app: Flask) -> None:
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


def _fake_wechat(app: Flask) -> None:
    @app.cli.command("fake-wechat")
    @click.option("--port", type=int, default=None,
                  help="Port (default: the one in QCWX_WECHAT_API_BASE, else 5055).")
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--background", is_flag=True,
                  help="Detach (pid in instance/fake-wechat.pid); no-op if one already answers.")
    def fake_wechat(port: int | None, host: str, background: bool) -> None:
        """Run the local fake of WeChat's APIs (development and tests only)."""
        from qcwx.wechat import fake_server

        if app.config["ENV"] == "production":
            raise click.ClickException("the fake WeChat is for development only")
        port = port or fake_server.default_port(app.config.get("WECHAT_API_BASE"))
        settings = {k: app.config[k] for k in ("WECHAT_APPID", "WECHAT_SECRET", "MP_APPID",
                                               "MP_SECRET")}
        if not background:
            fake_server.serve(port, host, fake_server.appid_secrets_from_settings(settings))
            return
        instance = Path(app.instance_path)
        try:
            pid = fake_server.start_background(host, port, settings, instance / "fake-wechat.pid",
                                               instance / "fake-wechat.log")
        except RuntimeError as exc:
            raise click.ClickException(str(exc)) from None
        if pid is None:
            click.echo(f"fake WeChat already answers at http://{host}:{port}")
        else:
            click.echo(f"fake WeChat started at http://{host}:{port} (pid {pid})")


def _wechat_menu(app: Flask) -> None:
    @app.cli.command("wechat-menu")
    def wechat_menu() -> None:
        """Create the official account's menu from qcwx/wechat/menu.json."""
        from qcwx.errors import ExternalServiceError
        from qcwx.wechat.services import menu_definition, publish_menu

        try:
            result = publish_menu()
        except ExternalServiceError as exc:
            raise click.ClickException(str(exc)) from None
        names = "、".join(b["name"] for b in menu_definition()["button"])
        click.echo(f"menu created ({names}): errcode {result.get('errcode', 0)}")
