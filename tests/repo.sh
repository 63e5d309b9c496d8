#!/usr/bin/env bash
# The signed apt repository (packaging/build-repo), checked with the host's
# real apt in a private apt directory (nothing of the host's apt changes):
#
#   bash tests/repo.sh DEB
#
# - a repository of DEB, then DEB's version and a later one (DEB repacked
#   with its version raised), both offered; apt's candidate is the later one
#   and the earlier one can still be fetched by version, byte for byte;
# - apt accepts it only with its key: with another key it refuses the
#   repository as not signed by a key it trusts;
# - a Packages index changed after signing is refused (hash mismatch);
# - without a signing key, build-repo says how to give it one.
set -euo pipefail
cd "$(dirname "$0")/.."
deb=${1:?usage: tests/repo.sh DEB}
deb=$(realpath "$deb")

work=$(mktemp -d /var/tmp/sum-repo-test.XXXXXX)
trap 'rm -rf "$work" "$work".*' EXIT
failed=0
ok() { printf '  ok    %s\n' "$1"; }
fail() { printf '  FAIL  %s\n        %s\n' "$1" "$2"; failed=1; }

version=$(dpkg-deb -f "$deb" Version)
later="${version%-*}-$(( ${version##*-} + 1 ))"
# The later package: the same files, a raised version.
mkdir -p "$work/later/pkg"
dpkg-deb -R "$deb" "$work/later/pkg"
sed -i "s/^Version: .*/Version: $later/" "$work/later/pkg/DEBIAN/control"
dpkg-deb --root-owner-group -Zxz -b "$work/later/pkg" "$work/later/sum-golden-path_${later}_amd64.deb" >/dev/null

repo=$work/repo
bash packaging/build-repo --out "$repo" --test-key "$deb" >/dev/null 2>"$work/build.log" \
    || { cat "$work/build.log"; exit 1; }
bash packaging/build-repo --out "$repo" --test-key "$work/later/sum-golden-path_${later}_amd64.deb" \
    >/dev/null 2>"$work/build.log" || { cat "$work/build.log"; exit 1; }

# A private apt: its own sources, keyrings, lists and cache; the host's
# dpkg status only for reading.
apt_dir() {
    local a=$1
    mkdir -p "$a/etc/apt/sources.list.d" "$a/etc/apt/keyrings" "$a/etc/apt/preferences.d" \
        "$a/etc/apt/apt.conf.d" "$a/etc/apt/trusted.gpg.d" "$a/lists/partial" \
        "$a/cache/archives/partial" "$a/dl"
    cp "$2" "$a/etc/apt/keyrings/sum-golden-path.gpg"
    cat >"$a/etc/apt/sources.list.d/sum-golden-path.sources" <<EOF
Types: deb
URIs: file:$3
Suites: stable
Components: main
Signed-By: $a/etc/apt/keyrings/sum-golden-path.gpg
EOF
}
apt_in() {
    local a=$1; shift
    "$@" -o Dir::Etc="$a/etc/apt" -o Dir::Etc::SourceList=/dev/null \
        -o Dir::Etc::SourceParts="$a/etc/apt/sources.list.d" \
        -o Dir::Etc::TrustedParts="$a/etc/apt/trusted.gpg.d" \
        -o Dir::State::Lists="$a/lists" -o Dir::Cache="$a/cache" \
        -o Dir::State::status=/var/lib/dpkg/status -o APT::Sandbox::User=root
}

good=$work/apt-good
apt_dir "$good" "$repo/sum-golden-path.gpg" "$repo"
if apt_in "$good" apt-get update -q >"$work/update.log" 2>&1; then
    policy=$(apt_in "$good" apt-cache policy sum-golden-path)
    if grep -q "Candidate: $later" <<<"$policy" && grep -q " $version " <<<"$policy"; then
        ok "apt reads the signed repository: both $version and $later, candidate $later"
    else
        fail "apt reads the signed repository" "apt-cache policy: $policy"
    fi
    if (cd "$good/dl" && apt_in "$good" apt-get download -q "sum-golden-path=$version" >/dev/null 2>&1) \
        && cmp -s "$deb" "$good/dl/sum-golden-path_${version}_amd64.deb"; then
        ok "the earlier version is still fetched by version, byte for byte (apt install sum-golden-path=$version)"
    else
        fail "the earlier version is fetched by version" "$(ls "$good/dl")"
    fi
else
    fail "apt update of the signed repository" "$(cat "$work/update.log")"
fi

# Another key: the same repository is refused.
other=$work/other
bash packaging/build-repo --out "$other" --test-key "$deb" >/dev/null 2>&1
wrong=$work/apt-wrong
apt_dir "$wrong" "$other/sum-golden-path.gpg" "$repo"
if apt_in "$wrong" apt-get update -q >"$work/update.log" 2>&1 \
    && ! grep -q "NO_PUBKEY\|not signed" "$work/update.log"; then
    fail "a repository signed by another key is refused" "$(cat "$work/update.log")"
elif grep -q "NO_PUBKEY\|is not signed" "$work/update.log" \
    && ! apt_in "$wrong" apt-cache policy sum-golden-path | grep -q "Candidate: [0-9]"; then
    ok "with another key apt refuses the repository: $(grep -o 'NO_PUBKEY [0-9A-F]*' "$work/update.log" | head -n 1)"
else
    fail "a repository signed by another key is refused" "$(cat "$work/update.log")"
fi

# An index changed after signing.
tampered=$work/tampered
cp -a "$repo" "$tampered"
sed -i "s/^Version: $later/Version: 9.9.9-1/" "$tampered/dists/stable/main/binary-amd64/Packages"
gzip -9n <"$tampered/dists/stable/main/binary-amd64/Packages" >"$tampered/dists/stable/main/binary-amd64/Packages.gz"
bad=$work/apt-tampered
apt_dir "$bad" "$repo/sum-golden-path.gpg" "$tampered"
apt_in "$bad" apt-get update -q >"$work/update.log" 2>&1 || true
if grep -qi "hash sum mismatch\|File has unexpected size" "$work/update.log" \
    && ! apt_in "$bad" apt-cache policy sum-golden-path | grep -q "9.9.9-1"; then
    ok "a Packages index changed after signing is refused: $(grep -io 'hash sum mismatch\|File has unexpected size' "$work/update.log" | head -n 1)"
else
    fail "a Packages index changed after signing is refused" "$(cat "$work/update.log")"
fi

# No key given.
if out=$(env -u SUM_REPO_KEY bash packaging/build-repo --out "$work/nokey" "$deb" 2>&1); then
    fail "build-repo without a key refuses" "it succeeded: $out"
elif grep -q "set SUM_REPO_KEY" <<<"$out"; then
    ok "build-repo without a key says how to give one"
else
    fail "build-repo without a key says how to give one" "$out"
fi

exit "$failed"
