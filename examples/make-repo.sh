#!/usr/bin/env bash
# Builds a git repository of the acme example site with eight tagged versions,
# the ones the deploy tests and the demo use:
#
#   v1  the site as it is in examples/acme
#   v2  v1 plus a migration (Note.pinned)                      branch main
#   v3  v2 whose WSGI module fails to import                   branch broken-import
#   v4  v2 whose /health/ answers 503 "unhealthy"              branch unhealthy
#   v5  v2 plus a migration that fails halfway                 branch bad-migration
#   v6  v2 whose /health/ answers 503 with a long non-ASCII line branch non-ascii-health
#   v7  v2 whose /health/ answers 500 because a row it needs is
#       missing from the database (the code is fine)          branch needs-data
#   v8  v2 plus Django's admin (auth, sessions, messages), so a
#       superuser can be created and log in                   branch admin
#
#   bash examples/make-repo.sh DEST
#
# DEST must not exist. Each version is one commit; the tags are annotated so
# that `git describe` works. The views say which release they are in
# `RELEASE`, so a test can tell which version answers.
set -euo pipefail

dest=${1:?usage: make-repo.sh DEST}
[ -e "$dest" ] && { echo "make-repo.sh: $dest already exists" >&2; exit 2; }
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/acme" && pwd)

mkdir -p "$dest"
cp -r "$src/." "$dest/"
find "$dest" -name __pycache__ -prune -exec rm -rf {} +
cd "$dest"
export GIT_AUTHOR_NAME="acme" GIT_AUTHOR_EMAIL="acme@example.com"
export GIT_COMMITTER_NAME="acme" GIT_COMMITTER_EMAIL="acme@example.com"
export GIT_AUTHOR_DATE="2026-01-01T00:00:00Z" GIT_COMMITTER_DATE="2026-01-01T00:00:00Z"
git init -q -b main .
git config commit.gpgsign false

release() { # VERSION: set RELEASE in the views
    sed -i "s/^RELEASE = .*/RELEASE = \"$1\"/" notes/views.py
}
commit() { # VERSION MESSAGE
    git add -A
    git commit -q -m "$2"
    git tag -a -m "$1" "$1"
}

release v1
commit v1 "acme v1"

release v2
python3 - <<'PY'
import re
p = "notes/models.py"
s = open(p).read()
s = s.replace(
    "    created = models.DateTimeField(auto_now_add=True)\n",
    "    created = models.DateTimeField(auto_now_add=True)\n"
    "    pinned = models.BooleanField(default=False)\n",
)
open(p, "w").write(s)
PY
cat >notes/migrations/0002_note_pinned.py <<'PY'
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("notes", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="note",
            name="pinned",
            field=models.BooleanField(default=False),
        ),
    ]
PY
commit v2 "acme v2: notes can be pinned (a migration)"

git checkout -q -b broken-import
release v3
cat >>acme/wsgi.py <<'PY'

# v3: a module that does not exist, so the app cannot be imported.
import acme.no_such_module  # noqa: E402,F401
PY
commit v3 "acme v3: the WSGI module fails to import"

git checkout -q main
git checkout -q -b unhealthy
release v4
python3 - <<'PY'
p = "notes/views.py"
s = open(p).read()
s = s.replace(
    '    if checks["database"] != "ok":',
    '    checks["v4"] = "error: this release reports itself unhealthy"\n'
    '    if checks["database"] != "ok" or True:',
)
open(p, "w").write(s)
PY
commit v4 "acme v4: /health/ answers 503"

git checkout -q main
git checkout -q -b bad-migration
release v5
cat >notes/migrations/0003_fails.py <<'PY'
from django.db import migrations


class Migration(migrations.Migration):
    """Creates a table, then fails: the whole migration must roll back."""

    dependencies = [("notes", "0002_note_pinned")]

    operations = [
        migrations.RunSQL("CREATE TABLE notes_half_done (id integer)"),
        migrations.RunSQL("SELECT 1 / 0"),
    ]
PY
commit v5 "acme v5: a migration that fails halfway"

git checkout -q main
# health_first BRANCH VERSION MESSAGE BODY: a branch of main whose /health/
# runs BODY (indented Python that returns) instead of v2's health check.
health_first() {
    git checkout -q main
    git checkout -q -b "$1"
    release "$2"
    BODY=$4 python3 - <<'PY'
import os
p = "notes/views.py"
s = open(p).read()
s = s.replace(
    "def health(request):\n",
    "def health(request):\n" + os.environ["BODY"] + "\n\n\ndef health_v2(request):\n",
)
open(p, "w").write(s)
PY
    commit "$2" "$3"
}
health_first non-ascii-health v6 "acme v6: /health/ answers 503 with a long non-ASCII body" \
'    # v6: what a real app'"'"'s error page may say; 300 two-byte characters.
    return HttpResponse("x" + "\u00e9" * 300, status=503)'
health_first needs-data v7 "acme v7: /health/ needs a row that is not in the database" \
'    # v7: a row this release expects but no migration creates. The
    # code imports and checks fine; the database state makes it fail.
    Note.objects.get(title="site settings")
    return health_v2(request)'

git checkout -q main
git checkout -q -b admin
release v8
python3 - <<'PY'
def edit(p, *pairs):
    s = open(p).read()
    for old, new in pairs:
        assert old in s, (p, old)
        s = s.replace(old, new)
    open(p, "w").write(s)


# Django's admin and what it needs, in the order `startproject` writes them.
edit(
    "acme/settings/production.py",
    (
        '    "django.contrib.contenttypes",\n',
        '    "django.contrib.admin",\n'
        '    "django.contrib.auth",\n'
        '    "django.contrib.contenttypes",\n'
        '    "django.contrib.sessions",\n'
        '    "django.contrib.messages",\n',
    ),
    (
        '    "django.middleware.common.CommonMiddleware",\n'
        '    "django.middleware.csrf.CsrfViewMiddleware",\n',
        '    "django.contrib.sessions.middleware.SessionMiddleware",\n'
        '    "django.middleware.common.CommonMiddleware",\n'
        '    "django.middleware.csrf.CsrfViewMiddleware",\n'
        '    "django.contrib.auth.middleware.AuthenticationMiddleware",\n'
        '    "django.contrib.messages.middleware.MessageMiddleware",\n',
    ),
    (
        '        "OPTIONS": {},\n',
        '        "OPTIONS": {\n'
        '            "context_processors": [\n'
        '                "django.template.context_processors.request",\n'
        '                "django.contrib.auth.context_processors.auth",\n'
        '                "django.contrib.messages.context_processors.messages",\n'
        '            ],\n'
        '        },\n',
    ),
)
edit(
    "acme/urls.py",
    (
        "from django.contrib.sitemaps.views import sitemap\n",
        "from django.contrib import admin\n"
        "from django.contrib.sitemaps.views import sitemap\n",
    ),
    (
        "urlpatterns = [\n",
        "urlpatterns = [\n"
        '    path("admin/", admin.site.urls),\n',
    ),
)
PY
commit v8 "acme v8: Django's admin (auth, sessions, messages), so a superuser can log in"

git checkout -q main
git gc -q
echo "$dest: v1 v2 (main) v3 v4 v5 v6 v7 v8"
