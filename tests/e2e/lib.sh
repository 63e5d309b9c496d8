# shellcheck shell=bash
# Library of the end-to-end harness (tests/e2e/run.sh): a cached Debian 13
# or 12 image built with mmdebstrap, booted with systemd-nspawn in a private network
# namespace, commands run inside with nsenter, and counted checks.
#
# Source it from bash running with `set -euo pipefail`. Functions return
# non-zero on failure instead of exiting, except e2e_fail (which ends the run
# through the EXIT trap that e2e_install_traps sets).
#
# What was needed to make nspawn and nsenter work on the CI/dev machines
# (a Firecracker VM whose PID 1 is not systemd, cgroup v1+v2 "hybrid"
# layout, no system D-Bus):
#  * --register=no: there is no systemd-machined to register with.
#  * --keep-unit is required, not optional: without it nspawn asks the host's
#    systemd over D-Bus for a transient scope, and there is none. With it,
#    nspawn (hybrid layout) creates "payload/" (the container) and
#    "supervisor/" (itself) below its *own* cgroup and never removes them.
#    Started from the root cgroup that would be /payload, shared by every
#    run and left behind. So each run makes a cgroup of its own in every
#    writable hierarchy, moves the launcher into it before exec'ing nspawn,
#    kills what is left in it on cleanup and removes it.
#  * nspawn leaves /run/systemd/nspawn/propagate/<machine> on the host; the
#    machine name is unique per run and cleanup removes that directory.
#  * nsenter needs --root/--wd (as well as --mount) so that the command runs
#    in the container's root, and a clean environment (env -i): the
#    harness's PATH, PAGER, LANG, ... are meaningless inside.
#  * SIGTERM to systemd-nspawn is a clean shutdown: nspawn forwards it to the
#    container's systemd as SIGRTMIN+3 (poweroff); it takes 1-2 s.

# Bump when the image recipe changes in a way the cache key does not see
# (the suite, mirrors, package list, masked units, mmdebstrap options and
# the body of e2e_customize_root are all part of the key already).
E2E_RECIPE_VERSION=1

# Debian 13, the current stable release, unless E2E_SUITE=bookworm (Debian 12).
E2E_SUITE=${E2E_SUITE:-trixie}
# What each supported release brings that the checks name (docs/packaging.md,
# "Debian 12 and Debian 13"): the PostgreSQL cluster's unit.
case "$E2E_SUITE" in
bookworm) E2E_RELEASE="Debian 12"; E2E_PG_VERSION=15 ;;
trixie) E2E_RELEASE="Debian 13"; E2E_PG_VERSION=17 ;;
*) echo "e2e: E2E_SUITE=$E2E_SUITE: only bookworm (Debian 12) and trixie (Debian 13) are supported" >&2
   exit 2 ;;
esac
E2E_PG_UNIT=postgresql@$E2E_PG_VERSION-main.service
E2E_CACHE_DIR=${E2E_CACHE_DIR:-/var/cache/sum-golden-path-e2e}
E2E_TMP_BASE=${E2E_TMP_BASE:-/var/tmp}
E2E_HOSTNAME=sum-e2e
E2E_BOOT_TIMEOUT=${E2E_BOOT_TIMEOUT:-120}
E2E_STOP_TIMEOUT=${E2E_STOP_TIMEOUT:-30}
# The host's mirrors (/etc/apt/sources.list.d/debian.sources): the main
# archive with its -updates suite, and the security archive.
E2E_MIRROR=${E2E_MIRROR:-http://deb.debian.org/debian}
E2E_SECURITY_MIRROR=${E2E_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

# What the services under test need, what the .deb depends on (systemd,
# init-system-helpers, caddy, git, python3-venv, postgresql-client, passwd)
# and the tools the checks use (curl, ss from iproute2, ps from procps, man),
# so that the package installs inside the container without any network.
E2E_PACKAGES=(
    systemd systemd-sysv dbus init-system-helpers passwd
    postgresql postgresql-client redis-server caddy
    python3-venv git curl ca-certificates iproute2 procps man-db acl
)

# Opt-in, for a script that needs more in its image (tests/e2e/drill.sh:
# rclone and the storage servers). Empty by default, and then the image and
# its cache key are exactly those of the list above.
# The scripts that need more all take this one list, so that they share one
# image per release: the drill (rclone, an SSH server for SFTP), the
# monitoring test (prometheus-node-exporter) and the runbook (sudo, ufw,
# and SSH for the deploy user's login).
E2E_FULL_PACKAGES=(rclone openssh-server prometheus-node-exporter sudo ufw)
E2E_EXTRA_PACKAGES=(${E2E_EXTRA_PACKAGES[@]+"${E2E_EXTRA_PACKAGES[@]}"})

# Opt-in: "HOST_DIR:CONTAINER_DIR", bound read-write into the container
# (tests/e2e/drill.sh: storage that outlives one container and is seen by
# the next). Unset by default: no extra bind.
E2E_BIND_RW=${E2E_BIND_RW:-}

# Units that only slow a throwaway container down or make no sense in one
# with a private network and no console: masked in the image.
E2E_MASKED_UNITS=(
    systemd-timesyncd.service systemd-networkd.service systemd-networkd.socket
    systemd-networkd-wait-online.service systemd-resolved.service
    systemd-firstboot.service console-getty.service getty.target
    apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer
    e2scrub_all.timer e2scrub_reap.service fstrim.timer man-db.timer
    logrotate.timer
)

# Documentation, man pages and translations are left out while
# bootstrapping (about 100 MB less to unpack on every run); the dpkg filter
# is removed again in e2e_customize_root, so that the package under test
# installs all of its files.
E2E_MMDEBSTRAP_OPTS=(
    --variant=apt --mode=root
    --aptopt='APT::Install-Recommends "false"'
    --dpkgopt='path-exclude=/usr/share/doc/*'
    --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/man/*'
    --dpkgopt='path-exclude=/usr/share/locale/*'
    --dpkgopt='path-exclude=/usr/share/info/*'
)

E2E_PASSED=0
E2E_FAILED=0
E2E_START=${E2E_START:-$(date +%s)}
E2E_KEEP=${E2E_KEEP:-0}
E2E_DIR=""           # per-run temp dir: root/, in/, nspawn.log
E2E_ROOT=""          # the container's root directory ($E2E_DIR/root)
E2E_STAGE=""         # $E2E_DIR/in, bound read-only at /root/in in the container
E2E_LOG=""           # systemd-nspawn's output: the container's console
E2E_MACHINE=""       # the machine name given to nspawn (unique per run)
E2E_NSPAWN_PID=""    # host PID of systemd-nspawn
E2E_LEADER=""        # host PID of the container's PID 1 (systemd)
E2E_CGROUPS=()       # the run's own cgroups, one per writable hierarchy
E2E_UNITS=()         # units whose status a failure report shows
E2E_CLEANED=0
E2E_BOOTED=0         # 1 once systemd in the container finished booting

step() { printf '\n==> %s\n' "$*"; }
say() { step "$@"; }
info() { printf '    %s\n' "$*"; }
warn() { printf 'e2e: warning: %s\n' "$*" >&2; }

# ---------------------------------------------------------------------------
# Host
# ---------------------------------------------------------------------------

# Installs what the harness needs on the host, if missing.
e2e_host_deps() {
    local missing=() cmd
    for cmd in mmdebstrap:mmdebstrap systemd-nspawn:systemd-container \
               nsenter:util-linux setsid:util-linux flock:util-linux \
               findmnt:util-linux timeout:coreutils sha256sum:coreutils \
               ps:procps; do
        command -v "${cmd%%:*}" >/dev/null 2>&1 || missing+=("${cmd#*:}")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    step "installing ${missing[*]} on the host"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# ---------------------------------------------------------------------------
# Image
# ---------------------------------------------------------------------------

e2e_sources() {
    printf '%s\n' \
        "deb $E2E_MIRROR $E2E_SUITE main" \
        "deb $E2E_MIRROR $E2E_SUITE-updates main" \
        "deb $E2E_SECURITY_MIRROR $E2E_SUITE-security main"
}

# Applied to the freshly bootstrapped root directory $1, before it is cached.
e2e_customize_root() {
    local root=$1 unit
    echo "$E2E_HOSTNAME" >"$root/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
        "$E2E_HOSTNAME" >"$root/etc/hosts"
    # A fixed machine ID: with an empty or "uninitialized" /etc/machine-id
    # systemd treats every boot as the first one (ConditionFirstBoot units,
    # preset-all), which is slower and may prompt on the console. Every run
    # boots a fresh copy, so sharing the ID between runs is harmless.
    echo 5e2e5e2e5e2e5e2e5e2e5e2e5e2e5e2e >"$root/etc/machine-id"
    rm -f "$root/var/lib/dbus/machine-id"
    ln -s /etc/machine-id "$root/var/lib/dbus/machine-id"
    for unit in "${E2E_MASKED_UNITS[@]}"; do
        ln -sfn /dev/null "$root/etc/systemd/system/$unit"
    done
    # The journal stays in memory (/run): nothing to flush, nothing to keep.
    mkdir -p "$root/etc/systemd/journald.conf.d"
    printf '[Journal]\nStorage=volatile\n' >"$root/etc/systemd/journald.conf.d/e2e.conf"
    # Do not wait 90 s for a unit that hangs on shutdown.
    mkdir -p "$root/etc/systemd/system.conf.d"
    printf '[Manager]\nDefaultTimeoutStopSec=15s\n' >"$root/etc/systemd/system.conf.d/e2e.conf"
    rm -f "$root/etc/dpkg/dpkg.cfg.d/99mmdebstrap"
    # apt inside the container only ever installs local .deb files.
    rm -rf "$root/var/lib/apt/lists/"* "$root/var/cache/apt/"*.bin
}

e2e_image_key() {
    {
        echo "recipe $E2E_RECIPE_VERSION"
        echo "suite $E2E_SUITE"
        e2e_sources
        printf 'package %s\n' "${E2E_PACKAGES[@]}"
        if [ ${#E2E_EXTRA_PACKAGES[@]} -gt 0 ]; then
            printf 'package %s\n' "${E2E_EXTRA_PACKAGES[@]}"
        fi
        printf 'masked %s\n' "${E2E_MASKED_UNITS[@]}"
        printf 'option %s\n' "${E2E_MMDEBSTRAP_OPTS[@]}"
        declare -f e2e_customize_root
    } | sha256sum | cut -c1-16
}

e2e_image_path() {
    echo "$E2E_CACHE_DIR/image-$E2E_SUITE-$(e2e_image_key).tar"
}

# Prints the path of the cached image tarball, building it first if needed.
# The build goes to a temporary name in the cache dir and is renamed into
# place, under a lock, so an interrupted or concurrent build never leaves a
# half-written image behind.
e2e_image() {
    local image tmp started include sources=()
    image=$(e2e_image_path)
    mkdir -p "$E2E_CACHE_DIR"
    exec 8>"$E2E_CACHE_DIR/.lock"
    if ! timeout 1800 flock 8; then
        exec 8>&-
        warn "could not lock $E2E_CACHE_DIR/.lock"
        return 1
    fi
    if [ -s "$image" ]; then
        exec 8>&-
        info "cached image: $image ($(du -h "$image" | cut -f1))" >&2
        echo "$image"
        return 0
    fi
    info "building $image with mmdebstrap (cold cache)" >&2
    started=$(date +%s)
    # Leftovers of a build that was killed (the lock is ours now).
    rm -rf --one-file-system "$E2E_CACHE_DIR"/.build.*
    tmp=$(mktemp -d "$E2E_CACHE_DIR/.build.XXXXXXXX")
    mapfile -t sources < <(e2e_sources)
    include=$(IFS=,; echo "${E2E_PACKAGES[*]}${E2E_EXTRA_PACKAGES[*]+,${E2E_EXTRA_PACKAGES[*]}}")
    if ! timeout 1800 mmdebstrap --quiet "${E2E_MMDEBSTRAP_OPTS[@]}" \
            --include="$include" "$E2E_SUITE" "$tmp/root" "${sources[@]}" >&2 \
        || ! e2e_customize_root "$tmp/root" \
        || ! tar --numeric-owner --xattrs --xattrs-include='*' \
                -C "$tmp/root" -cf "$tmp/image.tar" . \
        || ! mv -f "$tmp/image.tar" "$image"; then
        rm -rf --one-file-system "$tmp"
        exec 8>&-
        warn "building the image failed"
        return 1
    fi
    rm -rf --one-file-system "$tmp"
    # Keep the five newest images: CI uses four (Debian 13 and 12, each
    # plain and with E2E_FULL_PACKAGES); other branches may use others.
    find "$E2E_CACHE_DIR" -maxdepth 1 -name 'image-*.tar' -printf '%T@ %p\n' \
        | sort -rn | tail -n +6 | cut -d' ' -f2- | xargs -r rm -f
    exec 8>&-
    info "built in $(( $(date +%s) - started ))s: $image ($(du -h "$image" | cut -f1))" >&2
    echo "$image"
}

# ---------------------------------------------------------------------------
# Container
# ---------------------------------------------------------------------------

# e2e_prepare IMAGE: a fresh copy of the image and an empty stage directory
# (files put into $E2E_STAGE appear read-only at /root/in in the container).
e2e_prepare() {
    local image=$1
    E2E_DIR=$(mktemp -d "$E2E_TMP_BASE/sum-e2e.XXXXXXXX")
    E2E_ROOT=$E2E_DIR/root
    E2E_STAGE=$E2E_DIR/in
    E2E_LOG=$E2E_DIR/nspawn.log
    E2E_MACHINE=$(basename "$E2E_DIR" | tr -c 'a-zA-Z0-9\n' -)
    mkdir -p "$E2E_ROOT" "$E2E_STAGE"
    tar --numeric-owner --xattrs --xattrs-include='*' -C "$E2E_ROOT" -xpf "$image"
}

# One cgroup per run in each cgroup hierarchy systemd uses (cgroup2 at
# /sys/fs/cgroup, or the hybrid layout's unified/ and name=systemd), so that
# nspawn's payload/ and supervisor/ cgroups are the run's own (see the top).
e2e_cgroups_create() {
    local h fstype
    E2E_CGROUPS=()
    for h in /sys/fs/cgroup /sys/fs/cgroup/unified /sys/fs/cgroup/systemd; do
        fstype=$(stat -f -c %T "$h" 2>/dev/null || true)
        case "$h:$fstype" in
        */cgroup:cgroup2fs | */unified:cgroup2fs | */systemd:cgroupfs) ;;
        *) continue ;;
        esac
        [ -w "$h/cgroup.procs" ] || continue
        # Recorded first: an interrupt between the two leaves nothing behind.
        E2E_CGROUPS+=("$h/$E2E_MACHINE")
        mkdir "$h/$E2E_MACHINE"
    done
}

e2e_cgroups_pids() {
    local cg
    for cg in "${E2E_CGROUPS[@]}"; do
        [ -d "$cg" ] && find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null
    done | sort -u
}

e2e_cgroups_remove() {
    local cg
    for cg in "${E2E_CGROUPS[@]}"; do
        [ -d "$cg" ] || continue
        # A cgroup can be removed only once its last process is reaped.
        for _ in $(seq 50); do
            find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
            [ -d "$cg" ] || break
            sleep 0.1
        done
        [ -d "$cg" ] && warn "could not remove cgroup $cg"
    done
    return 0
}

# e2e_boot IMAGE: copies the image, boots it with systemd-nspawn and waits
# until systemd is up ("running", or "degraded" with the failed units shown).
e2e_boot() {
    e2e_prepare "$1"
    e2e_cgroups_create
    info "container root $E2E_ROOT, console log $E2E_LOG"
    e2e_start
}

# e2e_reboot: `systemctl reboot` in the container, as an operator would.
# systemd-nspawn exits when its container reboots (status 133; it is
# systemd-nspawn@.service that restarts it), so the harness boots the same
# root directory again, with everything the first boot left on disk.
e2e_reboot() {
    local pid=$E2E_NSPAWN_PID
    ct 'systemctl reboot' </dev/null || true
    if ! timeout "$E2E_STOP_TIMEOUT" tail --pid="$pid" -f /dev/null; then
        warn "the container did not shut down within ${E2E_STOP_TIMEOUT}s"
        return 1
    fi
    rm -f "/run/systemd/nspawn/locks/inode-$(stat -c %d:%i "$E2E_ROOT")"
    rm -rf --one-file-system "/run/systemd/nspawn/propagate/$E2E_MACHINE"
    E2E_BOOTED=0
    echo "---- reboot ----" >>"$E2E_LOG"
    e2e_start
}

# e2e_start: boots $E2E_ROOT with systemd-nspawn and waits until systemd
# is up ("running", or "degraded" with the failed units shown).
e2e_start() {
    local state deadline
    # setsid: Ctrl-C in the terminal reaches the harness only; the harness
    # stops the container in its EXIT trap. In a non-interactive shell the
    # background job is no process group leader, so setsid does not fork
    # and $! is the launcher, which moves itself into the run's cgroups and
    # then execs nspawn (same PID).
    # It also closes every inherited descriptor but 0-2 (the harness's saved
    # stdout, for one), or a kept container would hold the harness's output
    # pipe open after it exits.
    setsid bash -c '
        n=$1; shift
        while [ "$n" -gt 0 ]; do echo $$ >"$1/cgroup.procs"; shift; n=$((n - 1)); done
        for fd in /proc/$$/fd/*; do
            fd=${fd##*/}
            [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null
        done
        exec "$@"' e2e-launch "${#E2E_CGROUPS[@]}" "${E2E_CGROUPS[@]}" \
        systemd-nspawn --quiet -D "$E2E_ROOT" --machine="$E2E_MACHINE" -b \
            --register=no --keep-unit --private-network \
            --link-journal=no --resolv-conf=off --timezone=off \
            --console=read-only \
            --bind-ro="$E2E_STAGE:/root/in" \
            ${E2E_BIND_RW:+--bind="$E2E_BIND_RW"} \
        </dev/null >>"$E2E_LOG" 2>&1 &
    E2E_NSPAWN_PID=$!
    disown "$E2E_NSPAWN_PID"   # no "Killed" job report from bash

    # The container's PID 1: nspawn is a child subreaper, so once the
    # container's systemd has been exec'd it is a child of nspawn whose PID
    # is 1 in its own PID namespace (last field of NSpid).
    E2E_LEADER=""
    deadline=$(( $(date +%s) + E2E_BOOT_TIMEOUT ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if ! kill -0 "$E2E_NSPAWN_PID" 2>/dev/null; then
            warn "systemd-nspawn exited during boot; its log:"
            tail -n 40 "$E2E_LOG" >&2
            return 1
        fi
        E2E_LEADER=$(e2e_find_leader "$E2E_NSPAWN_PID") && break
        sleep 0.1
    done
    if [ -z "$E2E_LEADER" ]; then
        warn "no container PID 1 after ${E2E_BOOT_TIMEOUT}s (E2E_BOOT_TIMEOUT)"
        tail -n 40 "$E2E_LOG" >&2
        return 1
    fi
    info "systemd-nspawn PID $E2E_NSPAWN_PID, container PID 1 is host PID $E2E_LEADER"

    # systemctl says "offline" until PID 1 listens on /run/systemd/private;
    # after that, --wait blocks until the boot is finished.
    state=""
    while [ "$(date +%s)" -lt "$deadline" ]; do
        ct_timeout $(( deadline - $(date +%s) + 1 )) 'systemctl is-system-running --wait' \
            >"$E2E_DIR/state" 2>/dev/null </dev/null || true
        state=$(cat "$E2E_DIR/state")
        case "$state" in
        running | degraded | maintenance | stopping) break ;;
        esac
        kill -0 "$E2E_NSPAWN_PID" 2>/dev/null || break
        sleep 0.25
    done
    case "$state" in
    running | degraded) E2E_BOOTED=1 ;;
    esac
    case "$state" in
    running)
        info "booted: $state" ;;
    degraded)
        info "booted: degraded; failed units:"
        ct 'systemctl --failed --no-pager --no-legend' | sed 's/^/      /' ;;
    *)
        warn "the container did not boot (state: ${state:-none}); console log:"
        tail -n 40 "$E2E_LOG" >&2
        return 1 ;;
    esac
}

# e2e_find_leader NSPAWN_PID: prints the host PID of the container's init.
e2e_find_leader() {
    local pid
    for pid in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = systemd ] || continue
        # NSpid: <host pid> ... <pid in the innermost namespace>
        awk '$1 == "NSpid:" { found = (NF >= 3 && $NF == 1) } END { exit !found }' \
            "/proc/$pid/status" 2>/dev/null || continue
        echo "$pid"
        return 0
    done
    return 1
}

# ct 'SHELL COMMANDS': runs them with bash inside the container (all of its
# namespaces, its root, a clean environment) and returns their exit status.
# Standard input passes through: ct 'cat >/etc/x' <file
ct() { ct_timeout 0 "$1"; }

# ct_timeout SECONDS 'SHELL COMMANDS': the same, killed after SECONDS
# (0: no limit); exit status 124 then.
# The command runs as a background job that the shell `wait`s for: unlike a
# foreground command, `wait` returns as soon as a trapped signal (Ctrl-C,
# SIGTERM) arrives, so the EXIT trap stops the container at once, which
# ends the command too. Standard input is passed on explicitly (a background
# job would otherwise get /dev/null).
ct_timeout() {
    [ -n "$E2E_LEADER" ] || { warn "ct: no container"; return 125; }
    local stdin rc=0
    exec {stdin}<&0
    timeout --kill-after=5 "$1" \
    nsenter --target "$E2E_LEADER" --mount --uts --ipc --net --pid --cgroup \
        --root --wd -- \
        /usr/bin/env -i \
            PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            HOME=/root USER=root LOGNAME=root LANG=C.UTF-8 TERM=dumb \
            SYSTEMD_PAGER=cat PAGER=cat SYSTEMD_COLORS=0 \
            DEBIAN_FRONTEND=noninteractive \
        /bin/bash -c "$2" <&"$stdin" {stdin}<&- &
    wait "$!" || rc=$?
    exec {stdin}<&-
    return "$rc"
}

# The command that enters the container, for people (--keep, failures).
e2e_enter_command() {
    echo "nsenter --target $E2E_LEADER --mount --uts --ipc --net --pid --cgroup --root --wd -- /usr/bin/env -i TERM=\"\$TERM\" HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin /bin/bash -l"
}

# Stops the container (clean poweroff, then SIGKILL after E2E_STOP_TIMEOUT)
# and removes everything the run created. Idempotent.
e2e_cleanup() {
    local pids
    [ "$E2E_CLEANED" = 1 ] && return 0
    E2E_CLEANED=1
    if [ -n "$E2E_NSPAWN_PID" ] && kill -0 "$E2E_NSPAWN_PID" 2>/dev/null; then
        step "stopping the container"
        # nspawn turns a first SIGTERM into a clean poweroff of the
        # container and a second one into immediate termination. A poweroff
        # request that arrives before the container's systemd has set up its
        # signal handlers is lost, so an interrupted boot is not waited for.
        kill -TERM "$E2E_NSPAWN_PID" 2>/dev/null || true
        if [ "$E2E_BOOTED" = 1 ] \
            && ! timeout "$E2E_STOP_TIMEOUT" tail --pid="$E2E_NSPAWN_PID" -f /dev/null; then
            warn "no clean shutdown after ${E2E_STOP_TIMEOUT}s: terminating it; console log tail:"
            tail -n 25 "$E2E_LOG" >&2
        fi
        if kill -0 "$E2E_NSPAWN_PID" 2>/dev/null; then
            sleep 0.2
            kill -TERM "$E2E_NSPAWN_PID" 2>/dev/null || true
            if ! timeout 10 tail --pid="$E2E_NSPAWN_PID" -f /dev/null; then
                warn "systemd-nspawn still runs: killing it"
                kill -KILL "$E2E_NSPAWN_PID" 2>/dev/null || true
            fi
        fi
    fi
    # Whatever is left in the run's cgroups (nspawn killed from outside,
    # the container's init reparented to the host's PID 1, ...).
    pids=$(e2e_cgroups_pids)
    if [ -n "$pids" ]; then
        warn "killing leftover processes: $(printf '%s ' $pids)"
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
    fi
    [ -z "$E2E_NSPAWN_PID" ] || timeout 10 tail --pid="$E2E_NSPAWN_PID" -f /dev/null 2>/dev/null || true
    e2e_cgroups_remove
    if [ -n "$E2E_MACHINE" ]; then
        rm -rf --one-file-system "/run/systemd/nspawn/propagate/$E2E_MACHINE"
    fi
    # nspawn's lock on the root directory outlives a killed nspawn.
    if [ -n "$E2E_ROOT" ] && [ -d "$E2E_ROOT" ]; then
        rm -f "/run/systemd/nspawn/locks/inode-$(stat -c %d:%i "$E2E_ROOT")"
    fi
    if [ -n "$E2E_DIR" ] && [ -d "$E2E_DIR" ]; then
        if findmnt -rn -o TARGET | grep -q "^$E2E_DIR"; then
            warn "something is still mounted under $E2E_DIR; not removing it"
        else
            rm -rf --one-file-system "$E2E_DIR"
        fi
    fi
    return 0
}

# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------

# Shell functions available to every check script inside the container.
# They print what was expected and what was seen, and return 1, on failure.
E2E_PRELUDE='
expect() { # expect WHAT EXPECTED SEEN
    [ "$2" = "$3" ] && return 0
    printf "%s\n  expected: %s\n  seen:     %s\n" "$1" "$2" "$3"; return 1
}
contains() { # contains WHAT NEEDLE TEXT
    case "$3" in *"$2"*) return 0 ;; esac
    printf "%s\n  expected to contain: %s\n  seen:\n%s\n" "$1" "$2" "$(printf "%s\n" "$3" | sed "s/^/    /")"
    return 1
}
lacks() { # lacks WHAT NEEDLE TEXT
    case "$3" in *"$2"*) ;; *) return 0 ;; esac
    printf "%s\n  expected not to contain: %s\n  seen:\n%s\n" "$1" "$2" "$(printf "%s\n" "$3" | sed "s/^/    /")"
    return 1
}
poll() { # poll SECONDS COMMAND...: retries COMMAND every 0.2 s until it succeeds
    _t=$1; shift; _end=$(( $(date +%s) + _t ))
    while ! "$@" >/dev/null 2>&1; do
        if [ "$(date +%s)" -ge "$_end" ]; then
            echo "still failing after ${_t}s: $*"; "$@"; return 1
        fi
        sleep 0.2
    done
}
status_of() { # status_of COMMAND...: prints the exit status of COMMAND
    "$@" >/dev/null 2>&1 && echo 0 || echo $?
}
'

# The package's signed repository, as a user adds it (docs/packaging.md):
# its key in /etc/apt/keyrings and a deb822 source with Signed-By. The
# repository is $E2E_STAGE/repo (e2e_build_repo), seen at /root/in/repo.
# Shown as it is by examples/demo.sh; add_repo in check scripts.
E2E_REPO_SETUP='install -d -m 0755 /etc/apt/keyrings
install -m 0644 /root/in/repo/sum-golden-path.gpg /etc/apt/keyrings/sum-golden-path.gpg
printf "%s\n" "Types: deb" "URIs: file:/root/in/repo" "Suites: stable" "Components: main" \
    "Signed-By: /etc/apt/keyrings/sum-golden-path.gpg" >/etc/apt/sources.list.d/sum-golden-path.sources'
E2E_PRELUDE+="add_repo() {
$E2E_REPO_SETUP
}
"'apt_ours() { # apt_ours ARGS...: apt-get -y from our repository alone (the container has no network)
    DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dpkg::Use-Pty=0 \
        -o Dir::Etc::SourceList=/dev/null "$@"
}
'

# e2e_build_repo DEB...: (re)builds the signed repository in the stage
# (packaging/build-repo, with a throwaway key kept for the run); its output
# is shown only when it fails.
e2e_build_repo() {
    bash packaging/build-repo --out "$E2E_STAGE/repo" --test-key "$@" >"$E2E_DIR/build-repo.log" 2>&1 \
        || { cat "$E2E_DIR/build-repo.log"; return 1; }
}

# e2e_check NAME SCRIPT: runs SCRIPT (bash, `set -e`, with the prelude)
# inside the container. Passes when it exits 0; otherwise prints its output
# (what was expected, what was seen), diagnostics, and ends the run.
e2e_check() {
    local name=$1 script=$2 out rc=0
    # Output to a file, not $(...), so that the check runs in this shell
    # and a signal interrupts it at once (see ct_timeout).
    ct_timeout "${E2E_CHECK_TIMEOUT:-300}" "$E2E_PRELUDE
set -e
$script" >"$E2E_DIR/check.out" 2>&1 </dev/null || rc=$?
    out=$(cat "$E2E_DIR/check.out")
    if [ "$rc" = 0 ]; then
        E2E_PASSED=$((E2E_PASSED + 1))
        printf '  ok    %s\n' "$name"
        return 0
    fi
    [ "$rc" = 124 ] && out="$out
(timed out after ${E2E_CHECK_TIMEOUT:-300}s)"
    if printf '%s\n' "$out" | grep -q 'expected'; then
        # The prelude's helpers said what was expected and what was seen.
        e2e_fail_text "$name" "$out
(the check script exited with status $rc)"
    else
        e2e_fail "$name" "the check script exits 0" "exit status $rc; it printed:
$out"
    fi
}

# e2e_host_check NAME COMMAND...: the same, for a command run on the host.
e2e_host_check() {
    local name=$1 out rc=0
    shift
    out=$("$@" 2>&1) || rc=$?
    if [ "$rc" = 0 ]; then
        E2E_PASSED=$((E2E_PASSED + 1))
        printf '  ok    %s\n' "$name"
        return 0
    fi
    e2e_fail "$name" "exit status 0 from: $*" "exit status $rc; it printed:
$out"
}

# e2e_fail NAME EXPECTED SEEN: reports the failed check, dumps diagnostics
# from the container and exits 1 (the EXIT trap cleans up and prints the
# summary).
e2e_fail() {
    e2e_fail_text "$1" "expected: $2
seen:     $3"
}

# e2e_fail_text NAME TEXT: the same, with TEXT saying what went wrong.
e2e_fail_text() {
    E2E_FAILED=$((E2E_FAILED + 1))
    printf '  FAIL  %s\n' "$1"
    printf '%s\n' "$2" | sed 's/^/        /'
    e2e_diagnostics
    exit 1
}

e2e_diagnostics() {
    local units
    printf '\n---- diagnostics ----\n'
    if [ -z "$E2E_LEADER" ] || ! kill -0 "$E2E_LEADER" 2>/dev/null; then
        echo "(no running container)"
        [ -n "$E2E_LOG" ] && [ -f "$E2E_LOG" ] && { echo "console log tail:"; tail -n 40 "$E2E_LOG"; }
        return 0
    fi
    units=""
    [ ${#E2E_UNITS[@]} -eq 0 ] || units=$(printf '%q ' "${E2E_UNITS[@]}")
    ct_timeout 60 "
        echo '\$ systemctl --failed'; systemctl --failed --no-pager
        if [ -n \"$units\" ]; then
            echo; echo '\$ systemctl status $units'
            systemctl status --no-pager --full --lines=10 $units 2>&1 | head -n 120
        fi
        echo; echo '\$ journalctl -b --no-pager -n 80'
        journalctl -b --no-pager -n 80" 2>&1 || true
    printf -- '---- end of diagnostics ----\n'
}

# Traps for every exit path: cleans up (unless --keep), then prints the
# wall time and the summary, which is the last line of the output.
e2e_install_traps() {
    # The trap may fire while a function's output is redirected (a check
    # writes to a file): it writes to the harness's own stdout and stderr.
    exec {E2E_STDOUT}>&1 {E2E_STDERR}>&2
    trap e2e_on_exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

e2e_print_keep() {
    local cgs
    cgs=$(printf '%q ' "${E2E_CGROUPS[@]}")
    step "keeping the container (--keep)"
    info "enter it:  $(e2e_enter_command)"
    info "console:   $E2E_LOG"
    info "remove it: kill -TERM $E2E_NSPAWN_PID; timeout 30 tail --pid=$E2E_NSPAWN_PID -f /dev/null;" \
        "find $cgs -depth -type d -exec rmdir {} +;" \
        "rm -rf --one-file-system $E2E_DIR /run/systemd/nspawn/propagate/$E2E_MACHINE"
}

e2e_on_exit() {
    local rc=$?
    trap '' INT TERM
    exec 1>&"$E2E_STDOUT" 2>&"$E2E_STDERR"
    if [ "$rc" != 0 ] && [ "$E2E_FAILED" = 0 ]; then
        # Not a check that failed: the harness itself (boot, build, ...).
        E2E_FAILED=1
        printf '  FAIL  harness: exited with status %s before all checks ran\n' "$rc"
    fi
    if [ "$E2E_KEEP" = 1 ] && [ -n "$E2E_LEADER" ] && kill -0 "$E2E_LEADER" 2>/dev/null; then
        e2e_print_keep
    else
        e2e_cleanup
    fi
    echo "e2e: took $(( $(date +%s) - E2E_START ))s"
    echo "e2e: $E2E_PASSED passed, $E2E_FAILED failed"
    [ "$E2E_FAILED" = 0 ] || rc=1
    exit "$rc"
}

# ---------------------------------------------------------------------------
# Requests during a fault, and a deploy watched while it runs
# ---------------------------------------------------------------------------

# The request loop, inside the container: GET https://HOST/ through Caddy,
# one request at a time, until OUT.stop appears. Each line of OUT is the
# status (000: no answer), the time, and curl's exit code and message. It
# is bounded (30000 requests, 15 minutes) and stops by itself.
E2E_LOAD_SCRIPT='#!/bin/bash
if [ "$1" = --summary ]; then # --summary LOG: "requests failed slowest"
    exec awk "{ n++; if (\$1 != \"200\") f++; if (\$2 > m) m = \$2 }
              END { printf \"%d %d %.3f\", n, f, m }" "$2"
fi
out=$1 host=$2
CA=/var/lib/caddy/.local/share/caddy/pki/authorities/local/root.crt
end=$(( $(date +%s) + 900 ))
n=0
: >"$out"
while [ ! -e "$out.stop" ] && [ "$n" -lt 30000 ] && [ "$(date +%s)" -lt "$end" ]; do
    curl -s -o /dev/null --max-time 30 --cacert "$CA" --resolve "$host:443:127.0.0.1" \
        -w "%{http_code} %{time_total} %{exitcode} %{errormsg}\n" "https://$host/" >>"$out" || true
    n=$((n + 1))
    sleep 0.05
done
'

# The figures of every loop stopped so far, one line each.
E2E_LOAD_SUMMARY=()

# e2e_load_start NAME [HOST]: starts the request loop against HOST
# (acme.localhost) as a transient unit. Loops with other names may run
# beside it; e2e_load_stop stops them one by one.
e2e_load_start() {
    local name=$1 host=${2:-acme.localhost}
    [ -f "$E2E_STAGE/load.sh" ] || printf '%s' "$E2E_LOAD_SCRIPT" >"$E2E_STAGE/load.sh"
    ct "rm -f /root/load-$name.log.stop
        systemd-run --quiet --collect --unit=e2e-load-$name /bin/bash /root/in/load.sh /root/load-$name.log $host
        for _ in \$(seq 100); do [ -s /root/load-$name.log ] && exit 0; sleep 0.1; done
        echo 'the request loop answered nothing in 10 s'; exit 1" </dev/null
}

# e2e_load_stop NAME MAX_FAILED: stops the loop, prints and records its
# figures, and fails the run when more than MAX_FAILED requests failed
# ("-" only reports: a fault that takes the front door away, like stopping
# Caddy).
e2e_load_stop() {
    local name=$1 max=$2 figures n failed slowest
    figures=$(ct "touch /root/load-$name.log.stop
        while systemctl is-active -q e2e-load-$name; do sleep 0.1; done
        bash /root/in/load.sh --summary /root/load-$name.log" </dev/null)
    read -r n failed slowest <<<"$figures"
    E2E_LOAD_SUMMARY+=("$(printf '%-28s %6s requests %4s failed  slowest %6ss' "$name" "$n" "$failed" "$slowest")")
    info "requests during '$name': $n sent, $failed failed, slowest ${slowest}s"
    if [ "$n" -lt 1 ]; then
        e2e_fail "requests during '$name'" "at least one request" "none"
    fi
    if [ "$max" != - ] && [ "$failed" -gt "$max" ]; then
        e2e_fail "requests during '$name'" "at most $max failed" "$failed failed of $n; the codes seen:
$(ct "cut -d' ' -f1 /root/load-$name.log | sort | uniq -c" </dev/null)
the failed ones (status, time, curl's exit code and message):
$(ct "grep -v '^200 ' /root/load-$name.log | head -n 10" </dev/null)"
    fi
}

# For check scripts that watch a deploy: add it to E2E_PRELUDE. The site
# is $SITE (acme unless the check sets it).
E2E_DEPLOY_HELPERS='
# mark: the time after which this_deploy reads. A successful oneshot unit
# is unloaded, so its InvocationID is gone by the time a check reads it.
# Not a cursor: with a filter that the entry at the cursor does not match,
# journalctl 252 --after-cursor skips the first entry that does.
mark() {
    date +%s.%6N >/root/mark
}
# this_deploy [journalctl args]: the journal of sum-deploy@$SITE since the last mark.
this_deploy() {
    journalctl -u "sum-deploy@${SITE:-acme}" --since "@$(cat /root/mark)" --no-pager -o cat "$@"
}
unit_running() { # unit_running UNIT: a oneshot ("activating" while it runs) has not ended
    case "$(systemctl show -P ActiveState "$1")" in
    activating | active | deactivating) return 0 ;;
    esac
    return 1
}
running() { # running: sum-deploy@$SITE has not ended
    unit_running "sum-deploy@${SITE:-acme}"
}
wait_for_step() { # wait_for_step TEXT: until the running deploy logged TEXT
    _end=$(( $(date +%s) + 120 ))
    until this_deploy | grep -qF "$1"; do
        [ "$(date +%s)" -lt "$_end" ] || { echo "the deploy never logged: $1"; return 1; }
        running || { echo "the deploy ended before: $1"; this_deploy | tail -n 20; return 1; }
        sleep 0.1
    done
}
wait_for_end() { # wait_for_end: until sum-deploy@$SITE is no longer running
    _end=$(( $(date +%s) + 300 ))
    while running; do
        [ "$(date +%s)" -lt "$_end" ] || { echo "the deploy still runs after 300s"; return 1; }
        sleep 0.2
    done
}
'
