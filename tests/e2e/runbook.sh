#!/usr/bin/env bash
# The runbook, executed: every command block of docs/vps-golden-path.md, in
# order, in a fresh Debian 13 (or, with E2E_SUITE=bookworm, Debian 12)
# container with systemd as PID 1.
#
#   sudo bash tests/e2e/runbook.sh --deb PATH [--keep]
#   bash tests/e2e/runbook.sh --list          # the blocks, without running them
#
# The runbook marks its blocks (see its introduction): `sh runbook` runs as
# root on the VPS, `sh runbook laptop` as the user `laptop` in the same
# container (the operator's computer, reaching the VPS over SSH at
# 127.0.0.1), `sh runbook storage` as the user `box` (the off-host
# storage, an SSH server the test starts on port 2222), `sh runbook vars`
# is the operator's values, and
# `sh runbook skip: REASON` is listed as not executed. Any other `sh`
# block fails the run, so no command can hide from the test. The test
# changes only the values the runbook's table names, and prints them.
set -euo pipefail

usage() { echo "usage: $0 --deb PATH [--keep] | --list" >&2; exit 2; }
deb="" keep=0 list=0
while [ $# -gt 0 ]; do
    case "$1" in
    --deb) [ $# -ge 2 ] || usage; deb=$2; shift 2 ;;
    --deb=*) deb=${1#--deb=}; shift ;;
    --keep) keep=1; shift ;;
    --list) list=1; shift ;;
    *) usage ;;
    esac
done

cd "$(dirname "$0")/../.."
RUNBOOK=docs/vps-golden-path.md

# runbook_blocks FILE DIR: writes each `sh` block of FILE to DIR/NNN.sh and
# its description to DIR/NNN.meta (kind, chapter, line, reason; tab
# separated). Fails naming the line of a `sh` block with no runbook mark.
runbook_blocks() {
    awk -v dir="$2" '
        function fail(msg) { print FILENAME ":" NR ": " msg > "/dev/stderr"; bad = 1; exit 1 }
        /^## / && !inblock { chapter = substr($0, 4) }
        !inblock && /^ *```/ {
            line = $0; sub(/^ */, "", line)
            indent = length($0) - length(line)
            info = substr(line, 4)
            if (info ~ /^sh( |$)/) {
                n++; file = sprintf("%s/%03d", dir, n)
                kind = ""; reason = ""
                if (info == "sh runbook") kind = "root"
                else if (info == "sh runbook laptop") kind = "laptop"
                else if (info == "sh runbook storage") kind = "storage"
                else if (info == "sh runbook vars") kind = "vars"
                else if (info ~ /^sh runbook skip: ./) { kind = "skip"; reason = substr(info, 18) }
                else fail("a sh block the test would not run: mark it `sh runbook`, `sh runbook laptop`, `sh runbook storage` or `sh runbook skip: REASON`")
                printf "%s\t%s\t%d\t%s\n", kind, chapter, NR, reason > (file ".meta")
                printf "" > (file ".sh")
                inblock = 1
                next
            }
            if (info != "") { other = 1; inblock = 2; next }
        }
        inblock && /^ *``` *$/ { inblock = 0; next }
        inblock == 1 {
            text = $0
            if (substr(text, 1, indent) ~ /^ *$/) text = substr(text, indent + 1)
            print text > (file ".sh")
        }
        END { if (inblock == 1 && !bad) { print FILENAME ": a block is not closed" > "/dev/stderr"; exit 1 } }
    ' "$1"
}

# The runbook's chapters, each with at least one block.
runbook_chapters_covered() {
    local dir=$1 n missing=""
    for n in 1 2 3 4 5 6 7 8 9 10 11 12 13; do
        cut -f2 "$dir"/*.meta | grep -q "^$n\. " || missing="$missing $n"
    done
    [ -z "$missing" ] || { echo "chapters without a block:$missing" >&2; return 1; }
}

if [ "$list" = 1 ]; then
    dir=$(mktemp -d)
    trap 'rm -rf "$dir"' EXIT
    runbook_blocks "$RUNBOOK" "$dir"
    runbook_chapters_covered "$dir"
    for m in "$dir"/*.meta; do
        IFS=$'\t' read -r kind chapter line reason <"$m"
        printf '%-6s %s:%s  %s%s\n' "$kind" "$RUNBOOK" "$line" "$chapter" "${reason:+ (not executed: $reason)}"
    done
    exit 0
fi

[ -n "$deb" ] && [ -f "$deb" ] || usage
deb=$(realpath "$deb")

# shellcheck source=tests/e2e/lib.sh
. tests/e2e/lib.sh
# sudo, ufw and an SSH server, which the runbook installs in its chapter 1,
# are in the image: the container has no network.
E2E_EXTRA_PACKAGES=("${E2E_FULL_PACKAGES[@]}")
E2E_KEEP=$keep
[ "$(id -u)" -eq 0 ] || { echo "e2e: run as root (systemd-nspawn needs it)" >&2; exit 2; }
e2e_install_traps

step "host tools"
e2e_host_deps
step "image"
image=$(e2e_image)
step "booting the container"
E2E_UNITS=("$E2E_PG_UNIT" caddy.service ssh.service)
e2e_boot "$image"

blocks=$E2E_DIR/blocks
mkdir -p "$blocks"
runbook_blocks "$RUNBOOK" "$blocks" \
    || e2e_fail "the runbook's blocks are all marked" "every sh block marked" "see above"
runbook_chapters_covered "$blocks" \
    || e2e_fail "every chapter of the runbook has a block" "chapters 1 to 13" "see above"

# What the test stands in for (the runbook's table "Your values" names each).
cp "$deb" "$E2E_STAGE/"
e2e_build_repo "$deb"
wheelhouse=$(bash tests/wheelhouse.sh)
cp -r "$wheelhouse" "$E2E_STAGE/wheels"
bash examples/make-bakery-repo.sh "$E2E_STAGE/bakery-repo" >/dev/null
DOMAIN=bakery.localhost
OVERRIDES="# The test's values (docs/vps-golden-path.md, \"Your values\"):
DOMAIN=$DOMAIN
APP_GIT=/root/in/bakery-repo
WHEELHOUSE=/srv/wheels
SUM_APT=file:///root/in/repo
SERVER=127.0.0.1
OFFSITE_HOST=127.0.0.1
OFFSITE_PORT=2222
OFFSITE_USER=box
ALERT_WEBHOOK=http://127.0.0.1:8099/hook
# Caddy's local CA signs *.localhost where a public CA signs the real name.
CURL_CA_BUNDLE=/var/lib/caddy/.local/share/caddy/pki/authorities/local/root.crt"

# The webhook receiver (its JSON bodies in /root/alerts.jsonl).
cp tests/e2e/receiver.py "$E2E_STAGE/receiver.py"

step "the test's stand-ins"
ct "set -e
    # No network: apt reads only the sources the runbook adds.
    printf 'Dir::Etc::SourceList \"/dev/null\";\n' >/etc/apt/apt.conf.d/00runbook-offline
    # DNS: the domain resolves to this machine.
    printf '127.0.0.1\t$DOMAIN\n' >>/etc/hosts
    # The wheelhouse.
    cp -r /root/in/wheels /srv/wheels && chmod -R a+rX /srv/wheels
    # The operator's laptop.
    useradd --create-home --shell /bin/bash laptop
    # The off-host storage: an SSH server of its own on port 2222 that lets
    # in the user box only, with a key (chapter 9 authorizes the VPS's).
    # UsePAM as Debian's own sshd_config has it: without PAM, sshd refuses
    # an account whose password is locked, as useradd leaves it.
    useradd --create-home --shell /bin/bash box
    printf '%s\n' 'Port 2222' 'ListenAddress 127.0.0.1' 'HostKey /etc/ssh/ssh_host_ed25519_key' \
        'AllowUsers box' 'PasswordAuthentication no' 'KbdInteractiveAuthentication no' \
        'PidFile none' 'Subsystem sftp internal-sftp' \
        'UsePAM yes' >/etc/ssh/storage-box.conf
    /usr/sbin/sshd -t -f /etc/ssh/storage-box.conf
    systemd-run --quiet --unit=storage-box /usr/sbin/sshd -D -f /etc/ssh/storage-box.conf
    # The chat: a webhook receiver.
    systemd-run --quiet --unit=webhook-receiver python3 /root/in/receiver.py
    for i in \$(seq 50); do
        ss -tlnH | grep -q '127.0.0.1:2222 ' && ss -tlnH | grep -q '127.0.0.1:8099 ' && break
        sleep 0.2
    done
    ss -tlnH | grep '127.0.0.1:2222 '
    ss -tlnH | grep '127.0.0.1:8099 '" </dev/null
info "apt without Debian's sources, $DOMAIN in /etc/hosts, /srv/wheels, the users laptop and box,"
info "an SSH server for box on 127.0.0.1:2222 (the storage), a webhook receiver on 127.0.0.1:8099"
printf '%s\n' "$OVERRIDES" | sed 's/^/    /'

# The values for every account, with the keys the runbook has made so far
# written in (LAPTOP_KEY: the laptop's, OFFSITE_KEY: the VPS's for the
# storage), as the operator copies them from one machine to the other.
values() {
    ct 'set -e
        { cat /root/runbook.vars.base
          if k=$(cat /home/laptop/.ssh/id_ed25519.pub 2>/dev/null); then printf "LAPTOP_KEY=%q\n" "$k"; fi
          if k=$(cat /etc/sum/rclone-sftp.key.pub 2>/dev/null); then printf "OFFSITE_KEY=%q\n" "$k"; fi
        } >/root/runbook.vars
        chmod 0600 /root/runbook.vars
        for u in laptop box; do install -m 0600 -o $u -g $u /root/runbook.vars /home/$u/runbook.vars; done' </dev/null
}

# run_block FILE KIND: runs the block as root, laptop or box, with the values.
run_block() {
    local file=$1 kind=$2 rc=0
    values
    case "$kind" in
    root)
        ct_timeout 900 'set -a; . /root/runbook.vars; set +a; exec bash -eu -s' \
            <"$file" >"$E2E_DIR/block.out" 2>&1 || rc=$? ;;
    laptop | storage)
        [ "$kind" = laptop ] && user=laptop || user=box
        ct_timeout 900 "exec runuser -l $user -s /bin/bash -c 'set -a; . ~/runbook.vars; set +a; exec bash -eu -s'" \
            <"$file" >"$E2E_DIR/block.out" 2>&1 || rc=$? ;;
    esac
    return "$rc"
}

step "the runbook, block by block ($RUNBOOK)"
skipped=()
executed=0
for meta in "$blocks"/*.meta; do
    IFS=$'\t' read -r kind chapter line reason <"$meta"
    file=${meta%.meta}.sh
    name="$chapter, line $line ($kind)"
    case "$kind" in
    skip)
        skipped+=("$RUNBOOK:$line ($chapter): $reason")
        printf '  skip  %s: %s\n' "$name" "$reason"
        continue ;;
    vars)
        { cat "$file"; printf '%s\n' "$OVERRIDES"; } >"$E2E_DIR/runbook.vars"
        ct 'install -m 0600 /dev/stdin /root/runbook.vars.base' <"$E2E_DIR/runbook.vars"
        E2E_PASSED=$((E2E_PASSED + 1))
        printf '  ok    %s\n' "$name"
        continue ;;
    esac
    started=$(date +%s)
    if run_block "$file" "$kind"; then
        E2E_PASSED=$((E2E_PASSED + 1))
        executed=$((executed + 1))
        printf '  ok    %s (%ss)\n' "$name" "$(( $(date +%s) - started ))"
        sed 's/^/          | /' "$E2E_DIR/block.out" | tail -n 8
    else
        rc=$?
        e2e_fail "$name" "the block exits 0" "exit status $rc. The block:
$(sed 's/^/  > /' "$file")
It printed:
$(cat "$E2E_DIR/block.out")"
    fi
done

step "what the stand-ins saw"
e2e_check "the storage box holds the site's off-host backups, which outlive its removal" '
    find /home/box/bakery-backups -type f | sort
    find /home/box/bakery-backups -type f -name "bakery-*.sql.gz" | grep -q .'
e2e_check "the webhook receiver got the test alert of chapter 11" '
    cat /root/alerts.jsonl
    test "$(grep -c "\"event\": \"test\"" /root/alerts.jsonl)" = 1'

step "not executed (${#skipped[@]} blocks; each says why in the runbook)"
for s in "${skipped[@]}"; do info "$s"; done
info "$executed blocks executed"
