#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what it needs on a fresh
# Debian 12 machine (as root), then runs formatting, lints, unit, golden and
# real-tool tests, builds the .deb, runs lintian on it (the host's, Debian
# 12's, and Debian 13's), reads it as a signed apt repository, and then, in
# throwaway systemd containers, two at a time: on Debian 13 the main run,
# the fault matrix, the upgrade test, the disaster drill, the monitoring
# test and the runbook (docs/vps-golden-path.md, executed); on Debian 12 the
# main run, the upgrade test, the monitoring test and the runbook.
# Beside the drill, the package is built again from nothing
# and compared byte for byte (tests/repro.sh).
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
# promtool (tests/promtool.sh): unpacked from Debian's prometheus package
# into target/promtool, so that no Prometheus daemon is installed or started.
bash tests/promtool.sh --install
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

step "the example alerting rules (tests/promtool.sh: promtool check rules and test rules)"
bash tests/promtool.sh

step "the runbook's command blocks are all marked and cover every chapter (tests/e2e/runbook.sh --list)"
bash tests/e2e/runbook.sh --list >/dev/null

step "building the package"
deb=$(bash packaging/build-deb | tail -n 1)
echo "$deb"

step "lintian"
# Errors fail the build; every remaining warning is explained in
# packaging/lintian-overrides (shipped in the package) and docs/packaging.md.
lintian --fail-on error,warning "$deb"

step "lintian of Debian 13 (tests/lintian-release.sh: its lintian in a trixie chroot)"
bash tests/lintian-release.sh trixie "$deb"

step "the signed apt repository (packaging/build-repo, read by the host's apt)"
bash tests/repo.sh "$deb"

if [ "$e2e" = 1 ]; then
    # Every container installs from one wheelhouse (Python 3.11 and 3.13),
    # downloaded once, first; the upgrade test's next version is built
    # before any container runs, so that no build competes with them.
    step "the wheelhouse, and the next version for the upgrade test (tests/e2e/next-version.sh)"
    bash tests/wheelhouse.sh >/dev/null
    next=$(bash tests/e2e/next-version.sh | tail -n 1)
    echo "$next"
    mkdir -p target
    rcs=()
    # pair NAME1 CMD1 -- NAME2 CMD2 [-- NAME3 CMD3 ...]: the first command
    # in the background, the others one after the other beside it (two
    # cores); the first one's output comes last. Records every exit status
    # in rcs.
    pair() {
        local name1=$1 rc1=0 args1=() pid name rc cmd
        shift
        while [ "$1" != -- ]; do args1+=("$1"); shift; done
        shift
        "${args1[@]}" >"target/e2e-$name1.log" 2>&1 &
        pid=$!
        while [ $# -gt 0 ]; do
            name=$1 cmd=() rc=0
            shift
            while [ $# -gt 0 ] && [ "$1" != -- ]; do cmd+=("$1"); shift; done
            [ $# -gt 0 ] && shift
            "${cmd[@]}" || rc=$?
            rcs+=("$name=$rc")
        done
        wait "$pid" || rc1=$?
        step "$name1, its output"
        cat "target/e2e-$name1.log"
        rcs+=("$name1=$rc1")
    }
    step "Debian 13: the main run (tests/e2e/run.sh) beside the fault matrix (tests/e2e/faults.sh)"
    pair faults-13 env E2E_SUITE=trixie bash tests/e2e/faults.sh --deb "$deb" \
        -- main-13 env E2E_SUITE=trixie bash tests/e2e/run.sh --deb "$deb"
    step "Debian 12: the monitoring test (tests/e2e/monitor.sh), beside the main run (install, deploy, backup, restore) and then Debian 13's upgrade test (tests/e2e/upgrade.sh)"
    pair monitor-12 env E2E_SUITE=bookworm bash tests/e2e/monitor.sh --deb "$deb" \
        -- main-12 env E2E_SUITE=bookworm bash tests/e2e/run.sh --deb "$deb" \
        -- upgrade-13 env E2E_SUITE=trixie bash tests/e2e/upgrade.sh --deb "$deb" --next "$next"
    # The disaster drill on Debian 13, beside the reproducible-build check
    # (a build from nothing: the drill's containers mostly wait). Its S3
    # server (s3s-fs) is built once and cached under target/.
    step "the disaster drill (tests/e2e/drill.sh) on Debian 13, then Debian 12's upgrade test, Debian 13's monitoring test and the runbook on Debian 13 and 12 (tests/e2e/runbook.sh); beside tests/repro.sh"
    pair repro bash tests/repro.sh "$deb" \
        -- drill-13 env E2E_SUITE=trixie bash tests/e2e/drill.sh --deb "$deb" \
        -- upgrade-12 env E2E_SUITE=bookworm bash tests/e2e/upgrade.sh --deb "$deb" --next "$next" \
        -- monitor-13 env E2E_SUITE=trixie bash tests/e2e/monitor.sh --deb "$deb" \
        -- runbook-13 env E2E_SUITE=trixie bash tests/e2e/runbook.sh --deb "$deb" \
        -- runbook-12 env E2E_SUITE=bookworm bash tests/e2e/runbook.sh --deb "$deb"
    failed=()
    for r in "${rcs[@]}"; do
        [ "${r#*=}" = 0 ] || failed+=("$r")
    done
    if [ ${#failed[@]} -gt 0 ]; then
        echo "e2e failed (name=exit status): ${failed[*]}" >&2
        exit 1
    fi
    echo "e2e: ${rcs[*]}"
else
    step "the package builds the same bytes twice (tests/repro.sh)"
    bash tests/repro.sh "$deb"
fi

printf '\n==> all tests passed in %ss\n' "$(( $(date +%s) - start ))"
