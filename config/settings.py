"""Tally settings, read from the environment.

With nothing set, Tally runs as the offline demo: SQLite, local-memory cache, eager Celery,
console email and the bundled Stripe simulator. Production sets the variables listed in the
README; `manage.py check --deploy` and the checks in `config/checks.py` refuse dangerous mixes.
"""

import base64
import hashlib
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_int, env_list, env_str, env_url

BASE_DIR = Path(__file__).resolve().parent.parent

# --- Core -----------------------------------------------------------------------------------

DEBUG = env_bool("DJANGO_DEBUG", True)


def _secret_key() -> tuple[str, bool]:
    """Return (key, generated). The demo keeps a generated key in an ignored local file."""
    key = env_str("DJANGO_SECRET_KEY")
    if key:
        if len(key) < 32:
            raise ImproperlyConfigured("DJANGO_SECRET_KEY must be at least 32 characters long.")
        return key, False
    path = BASE_DIR / ".secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip(), True


SECRET_KEY, SECRET_KEY_GENERATED = _secret_key()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# The public address of this site, used in links that leave the browser (invitation emails).
SITE_URL = env_url("SITE_URL", "http://127.0.0.1:8000", schemes=("http", "https")).rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "csp",
    "djstripe",
    "teams",
    "billing",
    "credits",
    "projects",
]

MIDDLEWARE = [
    "teams.middleware.RequestId",
    "teams.middleware.RequestMetrics",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "common.api_errors.ApiErrorMiddleware",
    "teams.inputs.UnstorableInputMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
    "teams.middleware.ApiHeaders",
    "teams.middleware.TwoFactorRequiredRedirect",
    # Last, so that it sees a view's database error first: a clean 503 (teams/middleware.py).
    "teams.middleware.DatabaseUnavailable",
]

# What an API call with a key goes through (`config/handlers.py`): no session, cookie or page.
API_MIDDLEWARE = [
    "teams.middleware.RequestId",
    "teams.middleware.RequestMetrics",
    "django.middleware.security.SecurityMiddleware",
    "common.api_errors.ApiErrorMiddleware",
    "teams.inputs.UnstorableInputMiddleware",
    "django.middleware.common.CommonMiddleware",
    "teams.middleware.ApiHeaders",
    # A database outage is a clean 503 on this chain too, never a 500.
    "teams.middleware.DatabaseUnavailable",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "teams.context_processors.organizations",
                "billing.context_processors.billing_alert",
            ],
            # `{% load formatting %}`: the one set of money, number and date filters.
            "libraries": {"formatting": "common.formatting"},
        },
    },
]

# --- Database -------------------------------------------------------------------------------

DATABASE_URL = env_url(
    "DATABASE_URL",
    f"sqlite:///{BASE_DIR / 'demo.sqlite3'}",
    schemes=("sqlite", "postgres", "postgresql", "pgsql"),
)
# A connection kept between requests is checked before it is reused: one the server dropped
# (a restart, pg_terminate_backend) is replaced instead of failing the next request.
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # The same backend, with a health check that needs no round trip (common/postgresql).
    DATABASES["default"]["ENGINE"] = "common.postgresql"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USING_SQLITE = DATABASES["default"]["ENGINE"].endswith("sqlite3")
if USING_SQLITE:
    # The demo's server and the simulator's webhook deliveries write to one file at once. WAL
    # lets readers go on while one connection writes; a write transaction takes the write lock
    # when it begins (IMMEDIATE), so it waits its turn (busy_timeout) instead of failing with
    # "database is locked" when a read inside it turns into a write.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
    )
    if env_bool("TALLY_DEMO", False):
        # `make demo` builds dj-stripe's tables from one migration (config/djstripe_schema): the
        # same tables as dj-stripe's own three, which take a minute and a half of CPU to plan.
        # A database that is kept and upgraded (PostgreSQL, production) runs dj-stripe's own.
        MIGRATION_MODULES = {"djstripe": "config.djstripe_schema.migrations"}

# --- Cache and Celery -----------------------------------------------------------------------

REDIS_URL = env_url("REDIS_URL", schemes=("redis", "rediss", "unix"))
if REDIS_URL:
    # Everything cached can be recomputed from PostgreSQL: while Redis is away the cache misses
    # (errors logged and counted) and is left alone for CACHE_RETRY_SECONDS (teams/cache.py).
    CACHES = {
        "default": {
            "BACKEND": "teams.cache.ResilientRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "tally",
            "OPTIONS": {
                "RETRY_SECONDS": env_int("CACHE_RETRY_SECONDS", 5, minimum=0),
                "SOCKET_TIMEOUT": 0.25,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
# Without a broker the demo runs tasks in-process, at the moment they are queued.
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", not REDIS_URL)
# In-process tasks run after the commit of what queued them: a failing follow-up (Stripe down
# during a seat sync) is logged and retried, never turned into an error for the person whose
# action already succeeded. Tests propagate, so a task's failure fails its test.
CELERY_TASK_EAGER_PROPAGATES = env_bool("CELERY_TASK_EAGER_PROPAGATES", False)
CELERY_TASK_ACKS_LATE = True
# A task whose worker died (killed, out of memory) goes back to the queue and runs again
# elsewhere: every task is idempotent. Redis hands an unacknowledged task to another worker
# after the visibility timeout, which must be longer than the longest countdown.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=60)
}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = "UTC"
# Every periodic job is also a management command, for cron or a person. The one schedule.
CELERY_BEAT_SCHEDULE = {
    "credits-expire": {"task": "credits.tasks.expire_credits", "schedule": 15 * 60},
    "billing-reconcile": {"task": "billing.tasks.reconcile_subscriptions", "schedule": 24 * 3600},
    # Stripe invoices an ended period about an hour after it ends: every five minutes is ample.
    "billing.report_usage": {"task": "billing.tasks_usage.report_usage", "schedule": 300.0},
    # API calls counted in Redis, written to the usage log (billing/metering/api_calls.py).
    "billing.flush_api_calls": {"task": "billing.metering.tasks.flush_api_calls", "schedule": 10.0},
    # API keys' last use, noted in Redis by each request, written in bulk.
    "teams-api-key-use": {"task": "teams.tasks.flush_api_key_use", "schedule": 60},
    # Plan versions: notices before a renewal at a new price, and the move just before it.
    "billing-price-migrations": {"task": "billing.catalog.tasks.price_migrations_run", "schedule": 15 * 60},
    "stripe-events-retry": {"task": "billing.tasks.retry_failed_stripe_events", "schedule": 10 * 60},
    # Publishes tasks queued while the broker was away (teams/outbox.py).
    "outbox-relay": {"task": "teams.tasks.outbox_relay", "schedule": 30},
    # Seat syncs whose task was lost (billing/seats/schedule.py).
    "billing-seat-syncs-sweep": {"task": "billing.tasks.seat_syncs_sweep", "schedule": 60},
}

# --- Auth -----------------------------------------------------------------------------------

AUTH_USER_MODEL = "teams.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "landing"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# (per account, per address, window in seconds) for the limiter of `teams/throttle.py`:
# failed sign-ins; sign-up attempts; password reset requests.
AUTH_THROTTLES = {
    "login": (10, 100, 15 * 60),
    "signup": (5, 20, 3600),
    "password_reset": (3, 20, 3600),
}
INVITATION_TTL_DAYS = env_int("INVITATION_TTL_DAYS", 7, minimum=1)
# Two-factor sign-in: wrong codes after the password, counted like failed sign-ins.
AUTH_THROTTLES["two_factor"] = (5, 50, 15 * 60)
# Seconds between the password and the code before the sign-in must start again.
TWO_FACTOR_PENDING_SECONDS = 5 * 60


def _totp_key() -> str:
    """The Fernet key that seals TOTP secrets at rest. Derived from the secret key unless set: set
    it in production, so that rotating DJANGO_SECRET_KEY does not lock out two-factor users."""
    key = env_str("TOTP_ENCRYPTION_KEY")
    if not key:
        digest = hashlib.sha256(b"tally.totp-encryption-key:" + SECRET_KEY.encode()).digest()
        return base64.urlsafe_b64encode(digest).decode()
    try:
        if len(base64.urlsafe_b64decode(key.encode())) == 32:
            return key
    except ValueError:
        pass
    raise ImproperlyConfigured(
        "TOTP_ENCRYPTION_KEY must be a Fernet key (32 bytes in url-safe base64): python -c "
        '"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
    )


TOTP_ENCRYPTION_KEY = _totp_key()
# After a failed payment: days of full access before it steps down to restricted.
BILLING_GRACE_DAYS = env_int("BILLING_GRACE_DAYS", 1, minimum=0)
# Days after the first payment in which an owner may cancel with a full refund.
BILLING_MONEY_BACK_DAYS = env_int("BILLING_MONEY_BACK_DAYS", 7, minimum=0)
# Plan versions: days before its renewal that a subscriber moving to a plan's new price is told.
BILLING_PRICE_CHANGE_NOTICE_DAYS = env_int("BILLING_PRICE_CHANGE_NOTICE_DAYS", 7, minimum=1)
# Roles that occupy a paid seat (e.g. `owner,admin,member` to let billing managers in free).
BILLING_SEAT_ROLES = env_list("BILLING_SEAT_ROLES", ["owner", "admin", "billing", "member"])
if not BILLING_SEAT_ROLES or set(BILLING_SEAT_ROLES) - {"owner", "admin", "billing", "member"}:
    raise ImproperlyConfigured(
        f"BILLING_SEAT_ROLES={','.join(BILLING_SEAT_ROLES)!r}: list some of owner, admin, billing, member."
    )
# Seconds a seat change waits before it is sent to Stripe, so that a burst (a team invited at
# once) becomes one quantity update.
BILLING_SEAT_SYNC_DELAY = env_int("BILLING_SEAT_SYNC_DELAY", 5, minimum=0)
# Credits every new organization's account opens with (0: no bonus), and the days until that
# bonus expires (0: it never does).
CREDITS_WELCOME_BONUS = env_int("CREDITS_WELCOME_BONUS", 500, minimum=0)
CREDITS_WELCOME_BONUS_DAYS = env_int("CREDITS_WELCOME_BONUS_DAYS", 0, minimum=0) or None
# Stripe Tax: Checkout asks for the billing address and a VAT number, and subscriptions collect
# tax (exclusive or inclusive as each price says). Needs Stripe Tax set up on the account.
USE_STRIPE_TAX = env_bool("USE_STRIPE_TAX", False)

SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Security headers -----------------------------------------------------------------------

# Off in the demo (plain http on loopback); the production recipe in the README turns them on.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# A load balancer's probes come in plain http from inside.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", SECURE_HSTS_SECONDS > 0)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Pages run only our own static scripts and styles: no inline script, handler or style
# attribute (tests/config/test_security_headers.py renders the pages to hold this).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# --- Email ----------------------------------------------------------------------------------

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Tally <billing@tally.localhost>")

# --- Stripe ---------------------------------------------------------------------------------

STRIPE_SIMULATOR_URL = "http://127.0.0.1:12111"
_stripe_key_given = bool(env_str("STRIPE_SECRET_KEY"))
# The offline keys are shaped like Stripe's (24+ letters and digits after the prefix): dj-stripe
# refuses to file synced objects under a key of any other shape.
STRIPE_SECRET_KEY = env_str("STRIPE_SECRET_KEY", "sk_test_TallyOfflineDemo000000000000000")
if not STRIPE_SECRET_KEY.startswith(("sk_test_", "sk_live_", "rk_test_", "rk_live_")):
    raise ImproperlyConfigured(
        "STRIPE_SECRET_KEY must be a Stripe secret key (sk_test_..., sk_live_..., rk_...)."
    )
STRIPE_PUBLISHABLE_KEY = env_str("STRIPE_PUBLISHABLE_KEY", "pk_test_TallyOfflineDemo000000000000000")
# With no key configured, Tally talks to the bundled simulator; with a key, to Stripe itself.
_api_host = env_url(
    "STRIPE_API_HOST",
    "" if _stripe_key_given else STRIPE_SIMULATOR_URL,
    schemes=("http", "https"),
).rstrip("/")
if _api_host:
    # Defined only when set: dj-stripe points the SDK at this setting whenever it exists,
    # even when empty.
    STRIPE_API_HOST = _api_host
# Seconds a Stripe call may take before it is retried (the SDK's own default is 80).
STRIPE_TIMEOUT_SECONDS = env_int("STRIPE_TIMEOUT_SECONDS", 20, minimum=1)
STRIPE_LIVE_MODE = STRIPE_SECRET_KEY.startswith(("sk_live_", "rk_live_"))

if STRIPE_LIVE_MODE:
    STRIPE_LIVE_SECRET_KEY = STRIPE_SECRET_KEY
else:
    STRIPE_TEST_SECRET_KEY = STRIPE_SECRET_KEY
DJSTRIPE_SUBSCRIBER_MODEL = "teams.Organization"
DJSTRIPE_FOREIGN_KEY_TO_FIELD = "id"
DJSTRIPE_USE_NATIVE_JSONFIELD = True
# Webhook signing secrets live with each endpoint in the database (`manage.py stripe_setup`).
# Larger deliveries are refused (413) before anything is read or stored.
STRIPE_WEBHOOK_MAX_BYTES = env_int("STRIPE_WEBHOOK_MAX_BYTES", 1024 * 1024, minimum=1024)

# --- API ------------------------------------------------------------------------------------

# The one rate limiter (billing/ratelimit.py) keeps its windows in this Redis.
RATE_LIMIT_REDIS_URL = env_url("RATE_LIMIT_REDIS_URL", REDIS_URL, schemes=("redis", "rediss", "unix"))
# When Redis does not answer: true lets requests through unlimited, false refuses them (503).
RATE_LIMIT_FAIL_OPEN = env_bool("RATE_LIMIT_FAIL_OPEN", True)
RATE_LIMIT_REDIS_TIMEOUT = 0.25  # seconds: a missing Redis must not stall every request
# `/metrics` asks for `Authorization: Bearer <this>`; unset, it answers requests from loopback only.
METRICS_TOKEN = env_str("METRICS_TOKEN")
# Where every process of a node (gunicorn and Celery workers) writes its counters, so that a scrape
# sums them (teams/metrics.py). prometheus_client reads it from the environment itself; it is read
# here too so that a system check can say when it is missing or not writable.
PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR")
# Requests a minute from one address to the public API endpoints (the schema).
API_ANONYMOUS_RATE = env_int("API_ANONYMOUS_RATE", 30, minimum=1)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "teams.auth.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Every API view: signed in, within its rate limits (billing/ratelimit.py), with the scope
    # the endpoint needs when it is an API key. Views that add permissions extend this list.
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "billing.entitlements.gating.RateLimited",
        "teams.auth.HasScope",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON only, with size and depth limits: nothing else is accepted or advertised.
    "DEFAULT_PARSER_CLASSES": ["common.api_parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "teams.api_schema.AutoSchema",
    "EXCEPTION_HANDLER": "common.api_errors.exception_handler",
}
# The largest API request body read (413 above it); webhooks have their own limit.
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 1_000_000, minimum=1_024)
SPECTACULAR_SETTINGS = {
    "TITLE": "Tally API",
    "DESCRIPTION": "Credits, entitlements, usage and billing for an organization.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The reference at /api/docs/ is served from our static files, never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Public, and costly to build: limited per address.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny", "billing.entitlements.gating.RateLimited"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "teams.openapi.add_limits_and_scopes",
    ],
}

# --- Static files, i18n, logging -----------------------------------------------------------

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# `json` (the default outside the demo): one object a line with the request id, for a log
# pipeline; `text` for a person reading a terminal.
LOG_FORMAT = env_str("LOG_FORMAT", "text" if DEBUG else "json")
if LOG_FORMAT not in {"json", "text"}:
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r}: use json or text.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "common.logs.RequestIdFilter"}},
    "formatters": {
        "json": {"()": "common.logs.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id"],
            "formatter": LOG_FORMAT,
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # The SDK logs every request at INFO; errors still surface as exceptions.
    "loggers": {"stripe": {"level": "WARNING"}},
}
