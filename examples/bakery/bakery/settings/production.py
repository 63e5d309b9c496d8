"""Production settings of the bakery, read from the environment.

The names are the project's own: DJANGO_SECRET_KEY and DJANGO_ALLOWED_HOSTS
(the operator adds them to the site's .env), DATABASE_URL and REDIS_URL.
STATIC_ROOT and MEDIA_ROOT stay as base.py fixes them, whatever the
environment says.
"""
import os

import dj_database_url

from .base import *  # noqa: F403

DEBUG = False
# Required: a missing key must stop the start-up, not fall back to a default.
SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(",") if h.strip()]

DATABASES = {"default": dj_database_url.config(conn_max_age=60)}
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": os.environ.get("REDIS_URL", "redis://localhost:6379/0"),
        # A Redis that is down must not hang a request for long.
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2},
    }
}

# The reverse proxy terminates TLS and sets X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# The proxy redirects HTTP to HTTPS and sends Strict-Transport-Security, so
# Django's own redirect and HSTS header would only repeat it.
SILENCED_SYSTEM_CHECKS = ["security.W004", "security.W008"]
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True

USE_TZ = True
# Django sets TZ for the process: UTC keeps gunicorn's log times in UTC too.
TIME_ZONE = "UTC"
# gunicorn loads the app before forking (--preload) and has set up its own
# loggers by then: disable_existing_loggers (True by default) would silence
# gunicorn's error and access logs, and the journal would show nothing.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
