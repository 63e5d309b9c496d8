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
# pip download evaluates environment markers against the Python running it,
# not the target: redis needs async-timeout on Python < 3.11.3 (Debian 12 has
# 3.11.2), which a newer host Python would skip. Listed here explicitly.
extra=("async-timeout>=4.0.3")
stamp="$dest/.complete-$(cat "$req" <(printf '%s\n' "${extra[@]}") | sha256sum | cut -c1-16)"
[ -f "$stamp" ] && { echo "$dest"; exit 0; }
mkdir -p "$dest"
python3 -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
    --python-version 3.11 --platform manylinux2014_x86_64 --implementation cp \
    --dest "$dest" -r "$req" "${extra[@]}" >&2
touch "$stamp"
echo "$dest"
