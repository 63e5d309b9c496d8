#!/usr/bin/env bash
# Builds a git repository of the bakery example site with five tagged
# versions:
#
#   v1  the site as it is in examples/bakery
#   v2  v1 with a changed stylesheet (/* bakery v2 */)           branch main
#   v3  v2 with django-compressor's offline compression (its
#       pages answer 500 until `manage.py compress` ran) and a
#       `manage.py heartbeat` process writing a row per second
#   v4  v3 with the database in DB_NAME, DB_USER, DB_PASSWORD,
#       DB_HOST, DB_PORT (and DB_SSLMODE), not DATABASE_URL     branch real-app
#   v5  v2 plus a migration (a column Image.alt)                branch alt-text
#
#   bash examples/make-bakery-repo.sh DEST
#
# DEST must not exist. Each version is one commit; the tags are annotated so
# that `git describe` works. The views say which release they are in
# `RELEASE`, and the stylesheet's first line names it too, so a test can tell
# which version's code and which version's static files answer.
set -euo pipefail

dest=${1:?usage: make-bakery-repo.sh DEST}
[ -e "$dest" ] && { echo "make-bakery-repo.sh: $dest already exists" >&2; exit 2; }
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/bakery" && pwd)

mkdir -p "$dest"
cp -r "$src/." "$dest/"
find "$dest" -name __pycache__ -prune -exec rm -rf {} +
cd "$dest"
export GIT_AUTHOR_NAME="bakery" GIT_AUTHOR_EMAIL="bakery@example.com"
export GIT_COMMITTER_NAME="bakery" GIT_COMMITTER_EMAIL="bakery@example.com"
export GIT_AUTHOR_DATE="2026-01-01T00:00:00Z" GIT_COMMITTER_DATE="2026-01-01T00:00:00Z"
git init -q -b main .
git config commit.gpgsign false

release() { # VERSION: set RELEASE in the views
    sed -i "s/^RELEASE = .*/RELEASE = \"$1\"/" gallery/views.py
}
commit() { # VERSION MESSAGE
    git add -A
    git commit -q -m "$2"
    git tag -a -m "$1" "$1"
}

release v1
commit v1 "bakery v1"

release v2
sed -i -e '1s|.*|/* bakery v2 */|' -e 's/background: #fdf6e3;/background: #e8f1fa;/' \
    bakery/static/css/site.css
commit v2 "bakery v2: a new background colour"

# v3, on its own branch: what real apps need beyond v2 (docs/deploy.md,
# "Release commands" and "Processes").
git checkout -q -b real-app
release v3
echo "django-compressor==4.7.0" >>requirements.txt
python3 - <<'PY'
import re

def edit(path, old, new):
    text = open(path).read()
    assert text.count(old) == 1, (path, old)
    open(path, "w").write(text.replace(old, new))

# Offline compression, as healthchecks and many Wagtail sites do: every page
# that uses {% compress %} answers 500 until `manage.py compress` has run in
# the release, which is what a release command is for.
edit("bakery/settings/base.py", '    "gallery",\n]', '    "gallery",\n    "compressor",\n]')
edit(
    "bakery/settings/base.py",
    'STATICFILES_DIRS = [PROJECT_DIR / "static"]\n',
    'STATICFILES_DIRS = [PROJECT_DIR / "static"]\n'
    "STATICFILES_FINDERS = [\n"
    '    "django.contrib.staticfiles.finders.FileSystemFinder",\n'
    '    "django.contrib.staticfiles.finders.AppDirectoriesFinder",\n'
    '    "compressor.finders.CompressorFinder",\n'
    "]\n"
    "COMPRESS_ENABLED = True\n"
    "COMPRESS_OFFLINE = True\n",
)
edit(
    "bakery/templates/home.html",
    "{% load static %}",
    "{% load static compress %}",
)
edit(
    "bakery/templates/home.html",
    "  <link rel=\"stylesheet\" href=\"{% static 'css/site.css' %}\">\n",
    "  {% compress css %}<link rel=\"stylesheet\" href=\"{% static 'css/site.css' %}\">{% endcompress %}\n",
)
# A background process: a row every second, naming the release it runs.
edit(
    "gallery/models.py",
    "    def __str__(self):\n        return self.title\n",
    "    def __str__(self):\n        return self.title\n\n\n"
    "class Heartbeat(models.Model):\n"
    "    \"\"\"A row `manage.py heartbeat` writes every second while it runs.\"\"\"\n\n"
    "    release = models.CharField(max_length=20)\n"
    "    at = models.DateTimeField(auto_now_add=True)\n",
)
PY
mkdir -p gallery/management/commands
touch gallery/management/__init__.py gallery/management/commands/__init__.py
cat >gallery/management/commands/heartbeat.py <<'PY'
"""`manage.py heartbeat`: a long-running process, as a site's [processes]
runs it. Writes a row naming its release every second until stopped."""
import time

from django.core.management.base import BaseCommand

from gallery.models import Heartbeat
from gallery.views import RELEASE


class Command(BaseCommand):
    help = "Write a heartbeat row every second."

    def handle(self, *args, **options):
        self.stdout.write(f"heartbeat of release {RELEASE} started")
        while True:
            Heartbeat.objects.create(release=RELEASE)
            time.sleep(1)
PY
cat >gallery/migrations/0002_heartbeat.py <<'PY'
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("gallery", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="Heartbeat",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("release", models.CharField(max_length=20)),
                ("at", models.DateTimeField(auto_now_add=True)),
            ],
        ),
    ]
PY
commit v3 "bakery v3: offline compression (needs manage.py compress) and a heartbeat process"

# v4: the database in the app's own variables, as healthchecks names them
# (DB_NAME, DB_USER, DB_PASSWORD, DB_HOST, DB_PORT, DB_SSLMODE), with no
# DATABASE_URL: sum-golden-path asks Django (docs/backups.md).
release v4
python3 - <<'PY2'
path = "bakery/settings/production.py"
text = open(path).read()
old = 'DATABASES = {"default": dj_database_url.config(conn_max_age=60)}\n'
assert text.count(old) == 1
text = text.replace("import dj_database_url\n\n", "")
text = text.replace(
    old,
    "DATABASES = {\n"
    '    "default": {\n'
    '        "ENGINE": "django.db.backends.postgresql",\n'
    '        "NAME": os.environ["DB_NAME"],\n'
    '        "USER": os.environ["DB_USER"],\n'
    '        "PASSWORD": os.environ["DB_PASSWORD"],\n'
    '        "HOST": os.getenv("DB_HOST", ""),\n'
    '        "PORT": os.getenv("DB_PORT", ""),\n'
    '        "CONN_MAX_AGE": 60,\n'
    '        "OPTIONS": {"sslmode": os.getenv("DB_SSLMODE", "prefer")},\n'
    "    }\n"
    "}\n",
)
open(path, "w").write(text)
PY2
commit v4 "bakery v4: the database in DB_* variables, no DATABASE_URL"

# v5, from v2 on a branch of its own: a migration (a column added to
# gallery_image), so that a deploy takes a pre-migrate backup worth
# restoring: the way back in docs/vps-golden-path.md, "Rollback".
git checkout -q -b alt-text v2
release v5
python3 - <<'PY3'
path = "gallery/models.py"
text = open(path).read()
old = "    created = models.DateTimeField(auto_now_add=True)\n"
assert text.count(old) == 1
text = text.replace(old, old + '    alt = models.CharField(max_length=255, blank=True, default="")\n')
open(path, "w").write(text)
PY3
cat >gallery/migrations/0002_image_alt.py <<'PY'
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("gallery", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="image",
            name="alt",
            field=models.CharField(blank=True, default="", max_length=255),
        ),
    ]
PY
commit v5 "bakery v5: v2 plus a migration (Image.alt)"
git checkout -q main

git gc -q
echo "$dest: v1 v2 (main) v3 v4 (real-app) v5 (alt-text)"
