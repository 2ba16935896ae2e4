"""Read the QCWX_* settings once, typed, into one frozen mapping.

Every setting has an embedded default so that a fresh clone runs with nothing configured:
SQLite under ``instance/``, Celery eager in-process, the local fake WeChat. Production
(``QCWX_ENV=production``) refuses to start without its secrets instead of running with a
development default by accident.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from sqlalchemy.engine import make_url

from qcwx.errors import ConfigError
from qcwx.web.security import cookie_settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
INSTANCE_DIR = PROJECT_ROOT / "instance"
ENVIRONMENTS = ("development", "testing", "production")
# Where the local fake WeChat listens in development; production talks to WeChat itself.
DEV_WECHAT_API_BASE = "http://127.0.0.1:5055"
DEV_SECRET_KEY = "qcwx-development-only-secret"  # noqa: S105 - dev/test only, refused in prod
#: Shortest production secret key: 32 bytes, the HMAC-SHA256 key size it signs with.
MIN_SECRET_KEY_BYTES = 32


def default_chromium_path() -> str:
    """Return Debian's Chromium on this machine's PATH, else its usual place."""
    return shutil.which("chromium") or "/usr/bin/chromium"


# name -> (type, default). Environment variable = "QCWX_" + name.
SETTINGS: dict[str, tuple[type, Any]] = {
    "ENV": (str, "development"),
    "SECRET_KEY": (str, None),
    "DATABASE_URL": (str, None),
    "REDIS_URL": (str, None),
    "BASE_URL": (str, None),  # required in production; see qcwx.web.urls
    "TIMEZONE": (str, "Asia/Shanghai"),
    "WECHAT_APPID": (str, "wx_dev_appid"),
    "WECHAT_SECRET": (str, "dev-secret"),
    "WECHAT_TOKEN": (str, "qcwx-dev-token"),
    "WECHAT_AES_KEY": (str, None),
    "WECHAT_TEMPLATE_ALERT": (str, "QC_ALERT_TEMPLATE"),
    "WECHAT_API_BASE": (str, None),
    "MP_APPID": (str, "wx_dev_mp_appid"),
    "MP_SECRET": (str, "dev-mp-secret"),
    "JWT_TTL": (int, 7 * 24 * 3600),
    "RATELIMIT_DEFAULT": (str, "600 per minute"),  # per user/key; per address if anonymous
    "LOGIN_RATELIMIT_IP": (str, "20 per minute"),
    "LOGIN_RATELIMIT_ACCOUNT": (str, "10 per minute;50 per hour"),
    "PROXY_FIX": (int, 0),  # reverse-proxy hops whose X-Forwarded-For/-Proto are trusted
    "LOG_LEVEL": (str, "INFO"),
    "INGEST_UPLOAD_DIR": (str, None),  # None → instance/uploads
    "INGEST_UPLOAD_MAX_BYTES": (int, 20 * 1024 * 1024),
    "INGEST_API_MAX_BYTES": (int, 5 * 1024 * 1024),
    "INGEST_API_RATELIMIT": (str, "120 per minute"),
    "RESEARCH_API_RATELIMIT": (str, "60 per minute"),
    "ALERT_CENTER_ON_REJECT": (bool, False),
    # Separate region trees pool their labs into one peer comparison (labs outside the viewer's
    # tree appear by anonymous code only); false compares each tree on its own.
    "PEER_POOL_TREES": (bool, True),
    "MP_TEMPLATE_ALERT": (str, "MP_QC_ALERT_TEMPLATE"),
    "CHROMIUM_PATH": (str, default_chromium_path()),  # prints report PDFs (Playwright)
}

_TRUE = {"1", "true", "yes", "on"}


def _coerce(name: str, kind: type, raw: str) -> Any:
    if kind is bool:
        return raw.strip().lower() in _TRUE
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"QCWX_{name} must be an integer, got {raw!r}") from None
    return raw


def read_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Return the QCWX_* settings from the environment, typed, defaults filled in."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name, (kind, default) in SETTINGS.items():
        raw = environ.get(f"QCWX_{name}")
        values[name] = default if raw in (None, "") else _coerce(name, kind, raw)
    return values


def build_config(override: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    """Merge environment settings with ``override`` and derive the Flask/SQLAlchemy keys.

    Raises
    ------
    ConfigError
        When a setting is invalid; the message names the QCWX_ variable.
    """
    values = read_environment()
    values.update(override or {})
    env = values["ENV"]
    if env not in ENVIRONMENTS:
        raise ConfigError(f"QCWX_ENV must be one of {', '.join(ENVIRONMENTS)}, got {env!r}")
    if env == "production":
        _check_production(values)
    if not values.get("SECRET_KEY"):
        values["SECRET_KEY"] = DEV_SECRET_KEY
    if not values.get("DATABASE_URL"):
        INSTANCE_DIR.mkdir(exist_ok=True)
        values["DATABASE_URL"] = f"sqlite:///{INSTANCE_DIR / 'qcwx.sqlite3'}"
    values["DATABASE_URL"] = _check_database_url(values["DATABASE_URL"])
    values.setdefault("SQLALCHEMY_DATABASE_URI", values["DATABASE_URL"])
    values.setdefault("SQLALCHEMY_ENGINE_OPTIONS", _engine_options(values["DATABASE_URL"]))
    values.setdefault("TESTING", env == "testing")
    values.setdefault("WTF_CSRF_ENABLED", True)
    for key, value in cookie_settings(env).items():
        values.setdefault(key, value)
    values.setdefault("RATELIMIT_STORAGE_URI", values["REDIS_URL"] or "memory://")
    # A moving window: a fixed one lets 2x the limit through across a minute boundary (a
    # login burst), and made tests counting to the limit fail when they straddled one.
    values.setdefault("RATELIMIT_STRATEGY", "moving-window")
    # A Redis outage must not turn every request into a 500: count in memory meanwhile.
    values.setdefault("RATELIMIT_SWALLOW_ERRORS", True)
    values.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    values.setdefault("BABEL_DEFAULT_LOCALE", "zh_Hans_CN")
    values.setdefault("BABEL_DEFAULT_TIMEZONE", values["TIMEZONE"])
    values.setdefault("CELERY_EAGER", not values["REDIS_URL"])
    if env != "production" and not values.get("WECHAT_API_BASE"):
        values["WECHAT_API_BASE"] = DEV_WECHAT_API_BASE
    return MappingProxyType(values)


def _check_production(values: Mapping[str, Any]) -> None:
    missing = [
        f"QCWX_{name}"
        for name in ("SECRET_KEY", "DATABASE_URL", "BASE_URL", "WECHAT_APPID", "WECHAT_SECRET",
                     "WECHAT_TOKEN")
        if not values.get(name) or values[name] == SETTINGS[name][1]
    ]
    if missing:
        raise ConfigError(f"production refuses to start without {', '.join(missing)}")
    secret = str(values["SECRET_KEY"])
    if secret == DEV_SECRET_KEY:
        raise ConfigError("QCWX_SECRET_KEY is the development key; production needs its own")
    if len(secret.encode()) < MIN_SECRET_KEY_BYTES:
        raise ConfigError(f"QCWX_SECRET_KEY must be at least {MIN_SECRET_KEY_BYTES} bytes "
                          f"in production (got {len(secret.encode())})")
    if len(values.get("WECHAT_AES_KEY") or "") != 43:
        raise ConfigError("production requires WeChat safe mode: set QCWX_WECHAT_AES_KEY to the "
                          "43-character EncodingAESKey")
    if not values.get("REDIS_URL"):
        raise ConfigError("production requires QCWX_REDIS_URL (shared rate limits, replay "
                          "guard, WeChat token and the task queue)")


def _check_database_url(url: str) -> str:
    """Reject a malformed URL or one whose driver is not installed, naming the variable."""
    try:
        parsed = make_url(url)
        parsed.get_dialect()
    except Exception as exc:  # noqa: BLE001 - any parse/driver failure is the same user error
        raise ConfigError(f"QCWX_DATABASE_URL is not a usable database URL ({exc})") from None
    if parsed.get_backend_name() == "mysql" and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
        return parsed.render_as_string(hide_password=False)
    return url


def _engine_options(url: str) -> dict[str, Any]:
    if make_url(url).get_backend_name() == "mysql":
        # No blind ROLLBACK when a connection goes back to the pool: the pool's "reset" event
        # rolls back only a transaction the server reports open (qcwx.extensions).
        return {"pool_pre_ping": True, "pool_recycle": 1800, "pool_reset_on_return": None}
    return {}
