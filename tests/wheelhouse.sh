#!/usr/bin/env bash
# Downloads the wheels of the example sites into a wheelhouse, once: the
# deploy tests and the e2e container install from it with PIP_NO_INDEX=1 and
# PIP_FIND_LINKS, as a site with a private wheelhouse would. CPython 3.11 and
# 3.13 on x86_64 (the python3 of Debian 12 and of Debian 13): one wheelhouse
# for both, pip picks each interpreter's own wheels from it.
#
#   acme    examples/acme/requirements.txt
#   bakery  examples/bakery/requirements.txt and, for its [python] extra,
#           examples/bakery/requirements/production.txt, and what its v3
#           adds (django-compressor); the gunicorn a
#           deploy adds to it (src/deploy/app.rs GUNICORN) is the newest
#           below
#   gunicorn the oldest and the newest gunicorn a deploy accepts, each
#           resolved alone: tests/it/gunicorn_conf.rs runs the package's
#           gunicorn.conf.py with both
#
#   bash tests/wheelhouse.sh [DEST]        (default: target/wheelhouse)
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-target/wheelhouse}
acme=examples/acme/requirements.txt
bakery=(examples/bakery/requirements.txt examples/bakery/requirements/production.txt)
# pip download evaluates environment markers against the Python running it,
# not the target, so a newer host Python would skip what 3.11 needs: redis
# needs async-timeout on Python < 3.11.3 (Debian 12 has 3.11.2), psycopg and
# django-redis need typing-extensions on Python < 3.13. Listed here explicitly.
extra=("async-timeout>=4.0.3" "typing-extensions>=4.12")
# What bakery v3 adds to its requirements (examples/make-bakery-repo.sh).
bakery_v3=("django-compressor==4.7.0")
# Keep in step with GUNICORN in src/deploy/app.rs and OLDEST/NEWEST in
# tests/it/gunicorn_conf.rs.
gunicorns=("gunicorn==23.0.0" "gunicorn==27.0.1")
# The interpreters: Debian 12's and Debian 13's python3.
pythons=(3.11 3.13)
# Every input file by name and content, so changing any of them downloads again.
stamp="$dest/.complete-$({ sha256sum "$acme" "${bakery[@]}"; printf '%s\n' "${extra[@]}" "${bakery_v3[@]}" "${gunicorns[@]}" "${pythons[@]}"; } \
    | sha256sum | cut -c1-16)"
[ -f "$stamp" ] && { echo "$dest"; exit 0; }
mkdir -p "$dest"
download() { # pip's requirement arguments
    local py
    for py in "${pythons[@]}"; do
        python3 -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
            --python-version "$py" --platform manylinux2014_x86_64 --implementation cp \
            --dest "$dest" "$@" "${extra[@]}" >&2
    done
}
# One resolution per site, as each site's own pip install resolves alone:
# acme's redis pin must not decide the bakery's redis.
download -r "$acme"
download -r "${bakery[0]}" -r "${bakery[1]}" "${bakery_v3[@]}"
for g in "${gunicorns[@]}"; do download "$g"; done
touch "$stamp"
echo "$dest"
