"""Django settings of the benchmark project that bench/targets.py drives.

BENCH_DATABASE_URL names the database (postgresql://user@host:port/name).
BENCH_ANCESTOR=1 installs django-action-triggers (the app `action_triggers`), so
that saves fire its signals; without it the project is a plain Django
application whose rows action-triggers captures from PostgreSQL.
BENCH_RECEIVER_URL is the only webhook URL the ancestor may call.
"""

import os
from urllib.parse import urlsplit

_url = urlsplit(os.environ["BENCH_DATABASE_URL"])

SECRET_KEY = "benchmark-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "myapp",
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": _url.hostname,
        "PORT": _url.port,
        "USER": _url.username or "postgres",
        "NAME": _url.path.lstrip("/"),
    }
}

# Payload templates of the ancestor are Django templates.
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": False,
        "OPTIONS": {},
    }
]

if os.environ.get("BENCH_ANCESTOR") == "1":
    INSTALLED_APPS += ["rest_framework", "action_triggers"]
    ACTION_TRIGGERS = {
        "whitelisted_content_types": ["myapp.customer", "myapp.product", "myapp.sale"],
        "whitelisted_webhook_endpoint_patterns": [os.environ.get("BENCH_RECEIVER_URL", "http://127.0.0.1")],
    }
    ACTION_TRIGGER_SETTINGS = {"max_webhook_timeout": 10, "max_broker_timeout": 10}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}
