"""Settings for running the bakery on a laptop: SQLite, no Redis, debug on."""
from .base import *  # noqa: F403

DEBUG = True
SECRET_KEY = "django-insecure-bakery-development-only"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "db.sqlite3",  # noqa: F405
    }
}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
