"""Views of the acme example site, including the health check deploys poll."""
import os

from django.core.cache import cache
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404

from .models import Note

RELEASE = "v1"


def index(request):
    count = Note.objects.count()
    return HttpResponse(
        f'<!doctype html><link rel="stylesheet" href="/static/notes/site.css">'
        f"<h1>acme</h1><p>{count} notes. Release {RELEASE}.</p>"
    )


def note(request, pk):
    n = get_object_or_404(Note, pk=pk)
    return HttpResponse(f"<h1>{n.title}</h1><p>{n.body}</p>")


def health(request):
    """ok (200) when the database and the Redis cache answer; degraded (200)
    when only the cache is down; unhealthy (503) when the database is down."""
    checks = {}
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
        checks["database"] = "ok"
    except Exception as e:  # noqa: BLE001 - any failure means unhealthy
        checks["database"] = f"error: {e.__class__.__name__}"
    try:
        cache.set("sum-health", "1", 10)
        checks["cache"] = "ok" if cache.get("sum-health") == "1" else "error: no value"
    except Exception as e:  # noqa: BLE001
        checks["cache"] = f"error: {e.__class__.__name__}"
    if checks["database"] != "ok":
        status, code = "unhealthy", 503
    elif checks["cache"] != "ok":
        status, code = "degraded", 200
    else:
        status, code = "ok", 200
    return JsonResponse(
        {"status": status, "release": RELEASE, "checks": checks, "pid": os.getpid()},
        status=code,
    )
