"""qcwx: daily inter-laboratory comparison built from labs' internal QC results."""

from __future__ import annotations

import logging
from typing import Any, Mapping

from flask import Flask

from qcwx.config import PROJECT_ROOT, build_config

__version__ = "0.1.0"


def create_app(config_override: Mapping[str, Any] | None = None) -> Flask:
    """Build the Flask app: a short list of named configure/register steps.

    ``config_override`` takes the same keys as the QCWX_* variables without the prefix.
    """
    app = Flask(
        __name__,
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
        instance_path=str(PROJECT_ROOT / "instance"),
    )
    app.config.from_mapping(build_config(config_override))
    configure_logging(app)
    configure_extensions(app)
    configure_compression(app)
    configure_celery(app)
    configure_security(app)
    register_blueprints(app)
    register_template_helpers(app)
    register_error_handlers(app)
    register_commands(app)
    return app


def configure_logging(app: Flask) -> None:
    """Log at the configured level with one format for app and workers."""
    logging.basicConfig(
        level=app.config["LOG_LEVEL"], format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def configure_extensions(app: Flask) -> None:
    """Bind db, migrations, login, CSRF and the rate limiter; import every model."""
    from qcwx import models  # noqa: F401 - registers every table on the metadata
    from qcwx.audit import services as _audit  # noqa: F401 - installs the audit listeners
    from qcwx.extensions import (
        csrf,
        db,
        limiter,
        login_manager,
        make_sqlite_transactional,
        migrate,
        reset_open_transactions_only,
    )

    db.init_app(app)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"), render_as_batch=True)
    login_manager.init_app(app)
    login_manager.login_view = "orgs.login"
    login_manager.login_message = "请先登录"
    csrf.init_app(app)
    # Before init_app: Flask-Limiter fills a missing switch from the last app it served.
    app.config.setdefault("RATELIMIT_ENABLED", not app.config["TESTING"])
    limiter.init_app(app)

    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            make_sqlite_transactional(db.engine)
        else:  # MySQL/MariaDB: the pair of qcwx.config's pool_reset_on_return=None
            reset_open_transactions_only(db.engine)

    from qcwx.web.security import load_session_user

    login_manager.user_loader(load_session_user)  # checks the session version too


def configure_compression(app: Flask) -> None:
    """Serve text brotli/gzip-compressed and static files versioned, cached for a year."""
    from qcwx.extensions import init_compression, init_static_caching

    init_compression(app)
    init_static_caching(app)


def configure_celery(app: Flask) -> None:
    """Wire Celery to run tasks inside the app context; eager when no Redis is configured."""
    from qcwx.extensions import init_celery

    init_celery(app)


def configure_security(app: Flask) -> None:
    """Guard inputs (bounded URL ids, safe JSON) and harden responses, before any route."""
    from qcwx.web import contention, inputs, security

    inputs.install(app)
    security.install(app)
    contention.install(app)


def register_blueprints(app: Flask) -> None:
    """Mount every feature's blueprint."""
    from miniprogram_api.views import bp as mp_bp
    from qcwx.alerts.views import bp as alerts_bp
    from qcwx.analytics.views import bp as analytics_bp
    from qcwx.dashboard.views import bp as dashboard_bp
    from qcwx.extensions import csrf
    from qcwx.ingest.api import bp as ingest_api_bp
    from qcwx.ingest.views import bp as ingest_bp
    from qcwx.insights.views import bp as insights_bp
    from qcwx.iqc.views import bp as iqc_bp
    from qcwx.labels.views import bp as labels_bp
    from qcwx.lots.views import bp as lots_bp
    from qcwx.orgs.views import bp as orgs_bp
    from qcwx.peer.views import bp as peer_bp
    from qcwx.recognition.views import bp as recognition_bp
    from qcwx.reports.views import bp as reports_bp
    from qcwx.web.views import bp as web_bp
    from qcwx.wechat.views import bp as wechat_bp
    from qcwx.wechat.views import callback as wechat_callback

    app.register_blueprint(web_bp)
    app.register_blueprint(orgs_bp)
    app.register_blueprint(iqc_bp)
    app.register_blueprint(peer_bp)
    app.register_blueprint(dashboard_bp)
    app.register_blueprint(alerts_bp)
    app.register_blueprint(reports_bp)
    app.register_blueprint(recognition_bp)
    app.register_blueprint(mp_bp)  # JSON + JWT, CSRF-exempt (see miniprogram_api.views)
    app.register_blueprint(ingest_bp)
    app.register_blueprint(ingest_api_bp)
    csrf.exempt(ingest_api_bp)  # API-key authenticated, reads no cookies: CSRF does not apply
    app.register_blueprint(wechat_bp)
    csrf.exempt(wechat_callback)  # WeChat signs its callbacks; it cannot send our CSRF token
    app.register_blueprint(labels_bp)
    from qcwx.opendata.api import bp as research_api_bp
    from qcwx.opendata.views import bp as opendata_bp

    app.register_blueprint(opendata_bp)
    app.register_blueprint(research_api_bp)
    csrf.exempt(research_api_bp)  # API-key authenticated, reads no cookies
    app.register_blueprint(lots_bp)
    app.register_blueprint(analytics_bp)
    app.register_blueprint(insights_bp)
    from qcwx.admin import init_admin

    init_admin(app)


def register_template_helpers(app: Flask) -> None:
    """Add filters for local time and number display used by every template."""
    from qcwx.web.helpers import install

    install(app)


def register_error_handlers(app: Flask) -> None:
    """Turn user errors into Chinese 4xx pages or JSON, never a 500."""
    from qcwx.web.errors import install

    install(app)


def register_commands(app: Flask) -> None:
    """Add ``flask seed-demo`` and the other maintenance commands."""
    from qcwx.cli import install

    install(app)
