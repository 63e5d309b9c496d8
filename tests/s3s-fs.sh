#!/usr/bin/env bash
# Builds s3s-fs, a small S3-protocol server that keeps objects as files in
# a directory, once, and prints the path of its binary: the disaster drill
# (tests/e2e/drill.sh) runs it inside its containers as the S3 storage.
# Pinned to 0.14.1: 0.17 needs a newer rustc than the one the project
# builds with.
#
#   bash tests/s3s-fs.sh [DEST]   (default: /var/tmp/sum-e2e-cache/s3s-fs,
#                                  kept across clones like the e2e image)
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.14.1
dest=${1:-${E2E_TMP_BASE:-/var/tmp}/sum-e2e-cache/s3s-fs}
bin="$dest/$version/bin/s3s-fs"
[ -x "$bin" ] && { realpath "$bin"; exit 0; }
mkdir -p "$dest"
# A build directory of its own: not the project's target/ (its lock and
# its artefacts), and removed once the binary is in place.
build=$(mktemp -d "$dest/.build.XXXXXXXX")
trap 'rm -rf "$build"' EXIT
CARGO_TARGET_DIR="$build" cargo install --quiet --locked --root "$build/root" \
    --features binary "s3s-fs@$version" >&2
mkdir -p "$dest/$version/bin"
mv -f "$build/root/bin/s3s-fs" "$bin.tmp"
mv -f "$bin.tmp" "$bin"
realpath "$bin"
