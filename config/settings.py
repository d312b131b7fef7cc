"""The one settings module, read from the environment (django-environ).

Embedded defaults make a fresh clone runnable with nothing else installed: SQLite under ``var/``,
kombu's filesystem transport as the Celery broker, media under ``var/media``. Production switches
to PostgreSQL, Redis and shared storage through the variables listed in the README.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

VAR_DIR = Path(env("PLATFORM_VAR_DIR", default=str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _embedded_secret_key() -> str:
    """A per-installation key kept in ``var/`` so a fresh clone never runs on a key from the repo."""
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


# --- Core -----------------------------------------------------------------------------------------
DEBUG = env.bool("DJANGO_DEBUG", default=False)
# Behind TLS in production: every cookie secure, HSTS, redirect to https.
SECURE_HTTPS = env.bool("DJANGO_SECURE_HTTPS", default=False)
SECRET_KEY = env("DJANGO_SECRET_KEY", default=None)
if not SECRET_KEY:
    if SECURE_HTTPS:  # several web processes on several machines must share one key
        raise ImproperlyConfigured("Set DJANGO_SECRET_KEY: production (DJANGO_SECURE_HTTPS=true) needs a shared key.")
    SECRET_KEY = _embedded_secret_key()
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

SESSION_COOKIE_SECURE = SECURE_HTTPS
CSRF_COOKIE_SECURE = SECURE_HTTPS
SECURE_SSL_REDIRECT = SECURE_HTTPS
SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=31536000 if SECURE_HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HTTPS
SECURE_HSTS_PRELOAD = SECURE_HTTPS
if env.bool("DJANGO_BEHIND_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "core",
    "generators",
    "feedback",
    "rewards",
    "finetune",
    "frontend",
    "orchestration",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # turns a locked-out login form into its 429 answer
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "core.context_processors.roles",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web server and worker share one file: WAL lets readers run beside the writer, IMMEDIATE
    # transactions take the write lock up front (no lock-upgrade deadlocks), and writers wait.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # Tests share the database with worker processes, so it must be a file, not ":memory:".
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test_db.sqlite3")}
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
# The annotators' hot path (core/hot_sql.py) prepares its statements on PostgreSQL; turn off behind a
# transaction-mode pooler that cannot keep prepared statements (PgBouncer before 1.21).
HOT_PATH_PREPARED_STATEMENTS = env.bool("DATABASE_PREPARED_STATEMENTS", default=True)
if HOT_PATH_PREPARED_STATEMENTS and DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
    # Django turns psycopg's preparing off (threshold None), which also refuses explicit prepare=True. A threshold
    # that is never reached lets the hot path prepare explicitly and nothing else prepares on its own.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("prepare_threshold", 2**31 - 1)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache ----------------------------------------------------------------------------------------
# One cache for every process (the API's throttle counts live here): Redis when CACHE_URL is set
# (redis://host:6379/1), else a table in the database (``migrate`` creates it: core/cache_table.py).
if env("CACHE_URL", default=""):
    CACHES = {"default": env.cache("CACHE_URL")}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "django_cache"}}

# --- Auth -----------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# Failed logins (login page, admin, token endpoint) are counted per account and per client address in the
# database (django-axes, core/login_throttle.py): past the limit a login is refused with 429 until
# LOGIN_LOCKOUT_MINUTES pass without another failure. Token-authenticated requests are not affected.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("LOGIN_LOCKOUT_MINUTES", default=15.0))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # either one past the limit locks
# A failure during a lockout does not restart it: one guess every cool-off period cannot lock an account for ever.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "core.login_throttle.lockout_response"
AXES_CLIENT_IP_CALLABLE = "core.login_throttle.client_address"
# Proxies in front of Django that append the client to X-Forwarded-For (0: the client is REMOTE_ADDR and the
# header is ignored, so it cannot be forged to dodge the per-address counts).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)

# --- I18N, static, media --------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(VAR_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
MEDIA_URL = "media/"  # never served directly: files go through permission-checked views
MEDIA_ROOT = Path(env("MEDIA_ROOT", default=str(VAR_DIR / "media")))
# Uploads never sit in a web process's memory: streamed to a temporary file on disk (not /tmp, often RAM),
# hashed on the way and cut off at UPLOAD_MAX_BYTES (core/uploads.py).
FILE_UPLOAD_HANDLERS = ["core.uploads.HashingLimitedUploadHandler"]
FILE_UPLOAD_MAX_MEMORY_SIZE = 0
FILE_UPLOAD_TEMP_DIR = Path(env("FILE_UPLOAD_TEMP_DIR", default=str(VAR_DIR / "uploads")))
FILE_UPLOAD_TEMP_DIR.mkdir(parents=True, exist_ok=True)
UPLOAD_MAX_BYTES = env.int("UPLOAD_MAX_BYTES", default=2 * 1024**3)
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=True)
STORAGES = {
    # Shared storage for workers on other machines: an S3-compatible backend (django-storages),
    # e.g. FILE_STORAGE_BACKEND=storages.backends.s3.S3Storage with its AWS_* variables.
    "default": {
        "BACKEND": env("FILE_STORAGE_BACKEND", default="django.core.files.storage.FileSystemStorage"),
        "OPTIONS": env.json("FILE_STORAGE_OPTIONS", default={}),
    },
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- REST API -------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    # Token first, so that anonymous requests get 401 with a WWW-Authenticate header.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "core.authentication.TokenWithRolesAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Deny by default: every view names the roles it admits.
    "DEFAULT_PERMISSION_CLASSES": ["core.permissions.DenyAll"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "core.pagination.BoundedLimitOffsetPagination",  # ?limit= at most 500
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.api_errors.exception_handler",
    "DEFAULT_THROTTLE_RATES": {"auth": env("AUTH_THROTTLE_RATE", default="30/min")},  # per client, shared cache
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Image RLHF platform API",
    "DESCRIPTION": "Pairwise feedback, reward models, DDPO fine-tuning and model review for text-to-image.",
    "VERSION": "1",
    # Several models have a "state": each enum keeps its own name.
    "ENUM_NAME_OVERRIDES": {
        "RunStateEnum": "core.run_states.RunState",
        "DatasetStateEnum": "rewards.models.DatasetState",
    },
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_PERMISSIONS": ["core.permissions.IsAuthenticatedUser"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.openapi.document_error_responses",  # 400/401/403/404/415 on every operation
    ],
    # <id:pk> in URLs (core.ids.IdConverter): a 64-bit primary key.
    "PATH_CONVERTER_OVERRIDES": {"id": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}},
    # Swagger UI assets come from the installed sidecar package: no CDN at run time.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Plug-ins and model defaults (core/plugins.py; docs/architecture.md, "Plug-ins") ----------------
# Modules whose register() adds built-in plug-ins at start-up (the sandbox is one registration), and the
# operator's own entries by kind, e.g. PLUGINS='{"oracle": {"aesthetic": "my_pkg.rewards:aesthetic"}}'.
PLUGIN_REGISTRATIONS = env.list("PLUGIN_REGISTRATIONS", default=["generators.sandbox.registration"])
PLUGINS = env.json("PLUGINS", default={})
# Diffusers pipeline classes a base model may name besides the built-in list (generators/pipeline_classes.py).
EXTRA_PIPELINE_CLASSES = env.list("EXTRA_PIPELINE_CLASSES", default=[])
DEFAULT_REWARD_BACKBONE = env("DEFAULT_REWARD_BACKBONE", default="sandbox")  # a reward_backbone name, folder or hub id
DEFAULT_TRAIN_PROMPT_SET = env("DEFAULT_TRAIN_PROMPT_SET", default="sandbox-train")
DEFAULT_EVAL_PROMPT_SET = env("DEFAULT_EVAL_PROMPT_SET", default="sandbox-eval")
DEFAULT_PAIR_ORACLE = env("DEFAULT_PAIR_ORACLE", default="larger")  # simulate_annotators --oracle

# --- Provenance (generators/watermark.py, png_metadata.py; docs/architecture.md, "Provenance") ----------
# This platform's number in every generated image's watermark and metadata (0..65535: give each deployment
# its own), and the largest image POST /api/v1/provenance/ reads.
PROVENANCE_INSTANCE = env.int("PROVENANCE_INSTANCE", default=1)
if not 0 <= PROVENANCE_INSTANCE <= 65535:
    raise ImproperlyConfigured(f"PROVENANCE_INSTANCE must be within 0..65535, not {PROVENANCE_INSTANCE}.")
PROVENANCE_MAX_UPLOAD_BYTES = env.int("PROVENANCE_MAX_UPLOAD_BYTES", default=32 * 1024**2)
PROVENANCE_MAX_PIXELS = env.int("PROVENANCE_MAX_PIXELS", default=2048 * 2048)  # the read holds a few float copies

# --- Content safety (generators/sd_safety_checker.py; docs/architecture.md, "Content safety") -------------
# Where the sd_safety_checker screen loads Stable Diffusion's safety checker from (a hub id or a local folder).
SAFETY_CHECKER_PATH = env("SAFETY_CHECKER_PATH", default="CompVis/stable-diffusion-safety-checker")

# --- Automatic metrics (rewards/evaluation.py, inception_features.py; docs/architecture.md, rewards) ----------
# The FID InceptionV3's weights file (torch-fidelity's .pth) that the evaluate run's fid_inception metric loads on
# the worker; "" = not configured (fid_inception is refused with 400). Never downloaded.
INCEPTION_WEIGHTS_PATH = env("INCEPTION_WEIGHTS_PATH", default="")

# --- Celery ---------------------------------------------------------------------------------------
# The database row is the truth; Celery only delivers. See docs/architecture.md, "Jobs".
RUN_HARD_TIME_LIMIT = env.int("RUN_HARD_TIME_LIMIT", default=48 * 3600)
RUN_SOFT_TIME_LIMIT = env.int("RUN_SOFT_TIME_LIMIT", default=RUN_HARD_TIME_LIMIT - 300)
RUN_HEARTBEAT_SECONDS = env.float("RUN_HEARTBEAT_SECONDS", default=10.0)
# torch threads per run on a worker (0: torch's default, one per core). Small models on few cores run faster on
# one thread, and a run that scores rewards in a second thread while it samples needs room for both.
WORKER_TORCH_THREADS = env.int("WORKER_TORCH_THREADS", default=0)
# Optional experiment tracking (core/tracking.py): "tensorboard" (the `tracking` extra) also writes the trainer runs'
# metrics to TensorBoard under TRACKING_DIR/run-<id>/, kept as the run's artifact tensorboard.zip; empty: off.
EXPERIMENT_TRACKER = env("EXPERIMENT_TRACKER", default="")
if EXPERIMENT_TRACKER not in ("", "tensorboard"):
    raise ImproperlyConfigured(f"EXPERIMENT_TRACKER={EXPERIMENT_TRACKER!r}: use tensorboard, or leave it empty (off).")
TRACKING_DIR = Path(env("TRACKING_DIR", default=str(VAR_DIR / "tracking")))
RUN_STALE_AFTER_SECONDS = env.float("RUN_STALE_AFTER_SECONDS", default=120.0)
RUN_REQUEUE_INTERVAL_SECONDS = env.float("RUN_REQUEUE_INTERVAL_SECONDS", default=30.0)
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://")
CELERY_VISIBILITY_TIMEOUT = env.int("CELERY_VISIBILITY_TIMEOUT", default=RUN_HARD_TIME_LIMIT + 3600)
BROKER_DIR = VAR_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
    # Every Redis key of this installation starts with this prefix (a Redis shared with others; the tests).
    if CELERY_BROKER_KEY_PREFIX := env("CELERY_BROKER_KEY_PREFIX", default=""):
        CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] = CELERY_BROKER_KEY_PREFIX
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = RUN_HARD_TIME_LIMIT
CELERY_TASK_SOFT_TIME_LIMIT = RUN_SOFT_TIME_LIMIT
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# --- Logging --------------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}
