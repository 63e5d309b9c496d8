#!/usr/bin/env bash
# Builds the "next version" of the package for the upgrade test
# (tests/e2e/upgrade.sh): this checkout's source with one real change in
# what the generator emits, a new sandbox property in every app service
# (PrivateIPC=yes), and a higher version (<version>+next1). Prints the
# .deb's path on the last line.
#
#   bash tests/e2e/next-version.sh
#
# The source is copied (the tracked files, as they are in the work tree) to
# target/next-version/src and built there with a target directory of its
# own, seeded from target/release so that only this crate compiles again.
# The checkout's own target/release is never written.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=$PWD
work=$here/target/next-version
rm -rf "$work/src"
mkdir -p "$work/src" "$work/target"
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$work/src"
if [ -d target/release ] && [ ! -d "$work/target/release" ]; then
    cp -a target/release "$work/target/release"
fi

# The change: one more sandbox line in every app service the generator
# writes. A test of the upgrade, so it fails loudly if the anchor moved.
units=$work/src/src/render/units.rs
anchor='         RemoveIPC=yes\n\'
grep -qF "$anchor" "$units" || { echo "next-version: '$anchor' is no longer in src/render/units.rs" >&2; exit 1; }
python3 - "$units" "$anchor" <<'PY'
import sys
path, anchor = sys.argv[1], sys.argv[2]
text = open(path).read()
open(path, "w").write(text.replace(anchor, anchor + "\n         PrivateIPC=yes\\n\\", 1))
PY
grep -q 'PrivateIPC=yes' "$units"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
revision=$(dpkg-parsechangelog -l packaging/changelog -S Version 2>/dev/null | sed 's/.*-//' || true)
deb_version="$version+next1-${revision:-1}"
cd "$work/src"
CARGO_TARGET_DIR=$work/target cargo deb --locked --deb-version "$deb_version" >&2
ls -t "$work"/target/debian/sum-golden-path_*+next1*.deb | head -n 1
