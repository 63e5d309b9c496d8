#!/usr/bin/env bash
# lintian of another Debian release on the package: the host runs its own
# lintian (tests/run.sh); this runs the one of SUITE (trixie: Debian 13) in a
# chroot built with mmdebstrap, cached like the e2e images.
#
#   sudo bash tests/lintian-release.sh SUITE DEB
#
# Errors and warnings fail, as on the host; every remaining warning is
# explained in packaging/lintian-overrides and docs/packaging.md.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] && [ -f "$2" ] || { echo "usage: $0 SUITE DEB" >&2; exit 2; }
suite=$1 deb=$(realpath "$2")
[ "$(id -u)" -eq 0 ] || { echo "lintian-release: run as root (mmdebstrap, chroot)" >&2; exit 2; }
mirror=${E2E_MIRROR:-http://deb.debian.org/debian}
cache=${E2E_CACHE_DIR:-/var/cache/sum-golden-path-e2e}
mkdir -p "$cache"
image=$cache/lintian-$suite.tar
exec 8>"$cache/.lintian.lock"
flock 8
if [ ! -s "$image" ]; then
    echo "==> building a $suite chroot with lintian (cold cache)"
    tmp=$(mktemp -d "$cache/.lintian.XXXXXXXX")
    trap 'rm -rf --one-file-system "$tmp"' EXIT
    mmdebstrap --quiet --variant=apt --mode=root --include=lintian \
        --aptopt='APT::Install-Recommends "false"' \
        "$suite" "$tmp/root" "deb $mirror $suite main" "deb $mirror $suite-updates main"
    tar --numeric-owner -C "$tmp/root" -cf "$tmp/image.tar" .
    mv -f "$tmp/image.tar" "$image"
    rm -rf --one-file-system "$tmp"
    trap - EXIT
fi
exec 8>&-

dir=$(mktemp -d /var/tmp/sum-lintian.XXXXXXXX)
trap 'rm -rf --one-file-system "$dir"' EXIT
mkdir "$dir/root"
tar --numeric-owner -C "$dir/root" -xf "$image"
cp "$deb" "$dir/root/tmp/"
version=$(chroot "$dir/root" dpkg-query -W -f='${Version}' lintian)
echo "==> lintian $version ($suite) on $(basename "$deb")"
# A mount namespace of its own: /proc for the chroot, gone when it ends.
unshare --mount --fork sh -c '
    mount --make-rprivate /
    mount -t proc proc "$1/proc"
    chroot "$1" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
        lintian --fail-on error,warning "/tmp/$2"' sh "$dir/root" "$(basename "$deb")"
echo "ok    lintian $version ($suite): no error, no warning"
