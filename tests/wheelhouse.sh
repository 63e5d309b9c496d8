#!/usr/bin/env bash
# Downloads the wheels of the example site (examples/acme/requirements.txt)
# into a wheelhouse, once: the deploy tests and the e2e container install
# from it with PIP_NO_INDEX=1 and PIP_FIND_LINKS, as a site with a private
# wheelhouse would. CPython 3.11 on x86_64 (Debian 12's python3).
#
#   bash tests/wheelhouse.sh [DEST]        (default: target/wheelhouse)
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-target/wheelhouse}
req=examples/acme/requirements.txt
stamp="$dest/.complete-$(sha256sum "$req" | cut -c1-16)"
[ -f "$stamp" ] && { echo "$dest"; exit 0; }
mkdir -p "$dest"
python3 -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
    --python-version 3.11 --platform manylinux2014_x86_64 --implementation cp \
    --dest "$dest" -r "$req" >&2
touch "$stamp"
echo "$dest"
