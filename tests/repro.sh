#!/usr/bin/env bash
# The package is reproducible: the same source builds the same bytes.
#
#   bash tests/repro.sh DEB
#
# DEB is the package packaging/build-deb just built from this checkout.
# The test copies the checkout's tracked files to another directory (so the
# build cannot lean on the checkout's path), builds them there from nothing,
# with a target directory of its own (every crate compiled again), at a
# later time, and compares the two packages byte for byte. On a difference
# it names the members and the files that differ.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 1 ] && [ -f "$1" ] || { echo "usage: $0 DEB" >&2; exit 2; }
first=$(realpath "$1")

work=$PWD/target/repro
rm -rf "$work"
mkdir -p "$work/elsewhere/sum-golden-path"
src=$work/elsewhere/sum-golden-path
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$src"
# Both builds take the last commit's time (packaging/build-deb); the copy is
# no git checkout, so it is handed the same value the way a packager would.
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
export SOURCE_DATE_EPOCH
echo "==> building again in another directory, from nothing (SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH)"
started=$(date +%s)
( cd "$src" && CARGO_TARGET_DIR=$work/target bash packaging/build-deb >"$work/build.log" 2>&1 ) \
    || { tail -n 30 "$work/build.log"; echo "repro: the second build failed" >&2; exit 1; }
second=$(ls -t "$work"/target/debian/sum-golden-path_*.deb | head -n 1)
echo "    built in $(( $(date +%s) - started ))s: $second"

if cmp -s "$first" "$second"; then
    echo "ok    the two builds are byte-identical: $(sha256sum "$first" | cut -c1-64) ($(stat -c %s "$first") bytes)"
    exit 0
fi
echo "FAIL  the two builds differ:" >&2
for d in a b; do mkdir -p "$work/cmp/$d"; done
(cd "$work/cmp/a" && ar x "$first") && (cd "$work/cmp/b" && ar x "$second")
for m in $(ls "$work/cmp/a"); do
    cmp -s "$work/cmp/a/$m" "$work/cmp/b/$m" || echo "    member $m differs" >&2
done
dpkg-deb -R "$first" "$work/cmp/ra" && dpkg-deb -R "$second" "$work/cmp/rb"
diff -rq "$work/cmp/ra" "$work/cmp/rb" | sed 's/^/    /' >&2 || true
diff <(dpkg-deb -c "$first" | awk '{print $1, $2, $4, $5, $6}') \
     <(dpkg-deb -c "$second" | awk '{print $1, $2, $4, $5, $6}') | head -n 20 | sed 's/^/    /' >&2 || true
exit 1
