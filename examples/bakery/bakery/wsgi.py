"""WSGI entry point of the bakery example site (gunicorn bakery.wsgi:application)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bakery.settings.production")
application = get_wsgi_application()
