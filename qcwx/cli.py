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
        from qcwx.demo.lots import seed_lot_changeover
        from qcwx.demo.seed import DEMO_PASSWORDS, seed
        from qcwx.orgs.models import Region

        if if_empty and db.session.scalar(select(func.count()).select_from(Region)):
            click.echo("database already holds data; demo seed skipped")
            return
        summary = seed(days=days)
        lots_summary = seed_lot_changeover()  # qcwx/demo/lots.py, after the base demo
        db.session.commit()
        click.echo(summary)
        click.echo(lots_summary)
        for username, password in DEMO_PASSWORDS.items():
            click.echo(f"  {username:<12} {password}")

    @app.cli.command("seed-demo-comment")
    def seed_demo_comment() -> None:
        """Add the demo expert's comment (and the lab's reply) to last month's evaluation."""
        from qcwx.demo.comments import seed_expert_comment

        message = seed_expert_comment()
        db.session.commit()
        click.echo(message)


def _fake_wechat(app: Flask) -> None:
    @app.cli.command("fake-wechat")
    @click.option("--port", type=int, default=None,
                  help="Port (default: the one in QCWX_WECHAT_API_BASE, else 5055).")
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--background", is_flag=True,
                  help="Detach (pid in instance/fake-wechat.pid); reuses this checkout's own.")
    @click.option("--stop", is_flag=True, help="Stop the fake this checkout started.")
    def fake_wechat(port: int | None, host: str, background: bool, stop: bool) -> None:
        """Run the local fake of WeChat's APIs (development and tests only)."""
        from qcwx.wechat import fake_server

        if app.config["ENV"] == "production":
            raise click.ClickException("the fake WeChat is for development only")
        port = port or fake_server.default_port(app.config.get("WECHAT_API_BASE"))
        settings = {k: app.config[k] for k in ("WECHAT_APPID", "WECHAT_SECRET", "MP_APPID",
                                               "MP_SECRET")}
        instance = Path(app.instance_path)
        if stop:
            pid = fake_server.stop_background(host, port, instance / "fake-wechat.pid")
            click.echo(f"fake WeChat (pid {pid}) stopped" if pid else "no fake WeChat of ours")
        elif not background:
            fake_server.serve(port, host, fake_server.appid_secrets_from_settings(settings))
        else:
            _start_fake(fake_server, host, port, settings, instance)


def _start_fake(fake_server, host: str, port: int, settings: dict, instance: Path) -> None:
    """Start (or reuse) this checkout's fake in the background and say which one is in use."""
    try:
        pid = fake_server.start_background(host, port, settings, instance / "fake-wechat.pid",
                                           instance / "fake-wechat.log")
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    where = f"http://{host}:{port}"
    if pid is None:
        owner = fake_server.RemoteFakeWeChat(where).owner()
        click.echo(f"fake WeChat in use: {where} (this checkout's, pid {owner['pid']})")
    else:
        click.echo(f"fake WeChat started: {where} (pid {pid}, this checkout)")


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
