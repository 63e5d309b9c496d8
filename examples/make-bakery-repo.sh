#!/usr/bin/env bash
# Builds a git repository of the bakery example site with two tagged
# versions:
#
#   v1  the site as it is in examples/bakery
#   v2  v1 with a changed stylesheet (/* bakery v2 */)           branch main
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

git gc -q
echo "$dest: v1 v2 (main)"
