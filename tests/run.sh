#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what it needs on a fresh
# Debian 12 machine (as root), then runs formatting, lints, unit, golden and
# real-tool tests, builds the .deb, runs lintian on it, and the end-to-end
# harness and the fault matrix, each in a throwaway systemd container, and
# then the disaster drill (containers of its own, one after the other).
#
#   sudo bash tests/run.sh            # everything
#   sudo bash tests/run.sh --no-e2e   # skip the systemd container
set -euo pipefail
cd "$(dirname "$0")/.."

e2e=1
for arg in "$@"; do
    case "$arg" in
    --no-e2e) e2e=0 ;;
    *) echo "usage: $0 [--no-e2e]" >&2; exit 2 ;;
    esac
done

step() { printf '\n==> %s\n' "$*"; }
start=$(date +%s)

if [ "$(id -u)" -ne 0 ]; then
    echo "tests/run.sh needs root (apt-get, runuser, systemd-nspawn); run it with sudo" >&2
    exit 2
fi

step "installing test dependencies"
# postgresql, redis-server: the backup, restore and deploy tests start their
# own servers (initdb as the postgres user; redis-server on a free port).
# git, python3-venv, python3-pip: the deploy tests build the example app's
# repository and virtualenvs from a wheelhouse pip downloads (tests/wheelhouse.sh).
# acl: setfacl and getfacl close and read a site's home (tests/it/home_acl.rs).
# rclone: the off-host copies (tests/it/offsite.rs).
# openssh-client: ssh-keygen makes the disaster drill's SFTP key
# (tests/e2e/drill.sh; its containers have openssh-server and rclone).
# apt-utils, gnupg: packaging/build-repo makes the signed apt repository
# (apt-ftparchive, gpg), tested by tests/repo.sh and installed from in the e2e.
packages=(systemd caddy strace lintian mmdebstrap systemd-container dpkg-dev
          util-linux procps curl ca-certificates gzip postgresql postgresql-client
          python3 python3-pip python3-venv git redis-server acl rclone openssh-client
          apt-utils gnupg)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# Debian starts caddy.service after installing it where systemd runs; the
# tests run caddy themselves, as the caddy user.
if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is missing: install Rust with rustup (https://rustup.rs) first" >&2
    exit 2
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true
if ! command -v cargo-deb >/dev/null 2>&1; then
    cargo install --locked cargo-deb
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --locked --all-targets -- -D warnings

step "cargo test"
CI=${CI:-1} cargo test --locked

step "building the package"
deb=$(bash packaging/build-deb | tail -n 1)
echo "$deb"

step "lintian"
# Errors fail the build; every remaining warning is explained in
# packaging/lintian-overrides (shipped in the package) and docs/packaging.md.
lintian --fail-on error,warning "$deb"

step "the signed apt repository (packaging/build-repo, read by the host's apt)"
bash tests/repo.sh "$deb"

if [ "$e2e" = 1 ]; then
    step "end-to-end in systemd containers: the main run and the fault matrix, side by side"
    # Both containers install from one wheelhouse: downloaded once, first.
    bash tests/wheelhouse.sh >/dev/null
    mkdir -p target
    bash tests/e2e/faults.sh --deb "$deb" >target/e2e-faults.log 2>&1 &
    faults=$!
    main_rc=0
    bash tests/e2e/run.sh --deb "$deb" || main_rc=$?
    faults_rc=0
    wait "$faults" || faults_rc=$?
    step "the fault matrix (tests/e2e/faults.sh), its output"
    cat target/e2e-faults.log
    # The disaster drill after both, alone: two cores are not split three
    # ways. Its S3 server (s3s-fs) is built once and cached under target/.
    step "the disaster drill (tests/e2e/drill.sh): host A backed up off-host, destroyed, recovered on host B"
    drill_rc=0
    bash tests/e2e/drill.sh --deb "$deb" || drill_rc=$?
    if [ "$main_rc" != 0 ] || [ "$faults_rc" != 0 ] || [ "$drill_rc" != 0 ]; then
        echo "e2e failed: tests/e2e/run.sh exited $main_rc, tests/e2e/faults.sh exited $faults_rc," \
            "tests/e2e/drill.sh exited $drill_rc" >&2
        exit 1
    fi
fi

printf '\n==> all tests passed in %ss\n' "$(( $(date +%s) - start ))"
