# Asks a live release's Django which database the app uses, for sum-backup
# and sum-restore (backup/appdb.rs). Run as the site's user from the live
# release with its venv's python and the site's environment:
#
#   python -c "<this file>"
#
# Prints one JSON object on stdout: DATABASES["default"]'s ENGINE, NAME,
# USER, PASSWORD, HOST and PORT, and the OPTIONS Django's own PostgreSQL
# client passes on to psql (django/db/backends/postgresql/client.py). The
# password travels only through this pipe: never a file, an argument or a
# log. Whatever the settings print while they load goes to stderr, so it
# cannot garble the answer.
import json
import os
import sys

answer = os.fdopen(os.dup(1), "w", encoding="utf-8")
os.dup2(2, 1)
sys.path.insert(0, os.getcwd())

from django.conf import settings  # noqa: E402

db = settings.DATABASES.get("default") or {}
options = db.get("OPTIONS") or {}
CLIENT_OPTIONS = ("service", "passfile", "sslmode", "sslrootcert", "sslcert", "sslkey")
json.dump(
    {
        **{k.lower(): str(db.get(k) or "") for k in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")},
        "options": {k: str(options[k]) for k in CLIENT_OPTIONS if options.get(k)},
    },
    answer,
)
answer.close()
