#!/usr/bin/env bash
# The fault matrix: what operators and apps do to a running site, in a real
# Debian with systemd as PID 1. Each fault runs against the deployed acme
# site while a request loop goes through Caddy, and ends with the site
# serving and the next deploy succeeding. The loop's figures (requests,
# failed, slowest) are printed per fault and summed up at the end.
#
#   sudo bash tests/e2e/faults.sh --deb PATH [--keep]
#
# It shares tests/e2e/lib.sh (image, boot, checks) with tests/e2e/run.sh and
# runs in a container of its own, so tests/run.sh runs both side by side.
set -euo pipefail

usage() { echo "usage: $0 --deb PATH [--keep]" >&2; exit 2; }
deb="" keep=0
while [ $# -gt 0 ]; do
    case "$1" in
    --deb) [ $# -ge 2 ] || usage; deb=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    *) usage ;;
    esac
done
[ -n "$deb" ] && [ -f "$deb" ] || usage
deb=$(realpath "$deb")

cd "$(dirname "$0")/../.."
# shellcheck source=tests/e2e/lib.sh
. tests/e2e/lib.sh
E2E_KEEP=$keep
[ "$(id -u)" -eq 0 ] || { echo "e2e: run as root (systemd-nspawn needs it)" >&2; exit 2; }
e2e_install_traps
check() { e2e_check "$@"; }

E2E_PRELUDE+='
CA=/var/lib/caddy/.local/share/caddy/pki/authorities/local/root.crt
get() { # get URL [curl args]: prints the HTTP status; body in /root/resp.b
    curl -sS --max-time 20 --cacert "$CA" --resolve acme.localhost:443:127.0.0.1 \
        -o /root/resp.b -w "%{http_code}" "$@"
}
serves() { # serves RELEASE: the health check through Caddy answers 200 from RELEASE
    expect "https://acme.localhost/health/" 200 "$(get https://acme.localhost/health/)"
    contains "health body" "\"release\": \"$1\"" "$(cat /root/resp.b)"
}
# mark: the time after which this_deploy reads. A successful oneshot unit
# is unloaded, so its InvocationID is gone by the time a check reads it.
# Not a cursor: with a filter that the entry at the cursor does not match,
# journalctl 252 --after-cursor skips the first entry that does.
mark() {
    date +%s.%6N >/root/mark
}
deploy_ok() { # deploy_ok: systemctl start sum-deploy@acme succeeds and v2 serves
    mark
    systemctl start sum-deploy@acme
    expect "sum-deploy@acme Result" success "$(systemctl show -P Result sum-deploy@acme)"
    serves v2
}
# this_deploy [journalctl args]: the journal of sum-deploy@acme since the last mark.
this_deploy() {
    journalctl -u sum-deploy@acme --since "@$(cat /root/mark)" --no-pager -o cat "$@"
}
rolls_back() { # rolls_back REF: a deploy of REF fails after the swap and rolls back (exit 4)
    sed -i "s|^ref = .*|ref = \"$1\"|" /etc/sum/sites/acme.toml
    mark
    if systemctl start sum-deploy@acme; then echo "the deploy of $1 succeeded"; return 1; fi
    expect "exit status of the deploy of $1" 4 "$(systemctl show -P ExecMainStatus sum-deploy@acme)"
}
running() { # running: sum-deploy@acme (a oneshot: "activating" while it runs) has not ended
    case "$(systemctl show -P ActiveState sum-deploy@acme)" in
    activating | active | deactivating) return 0 ;;
    esac
    return 1
}
wait_for_step() { # wait_for_step TEXT: until the running deploy logged TEXT
    _end=$(( $(date +%s) + 120 ))
    until this_deploy | grep -qF "$1"; do
        [ "$(date +%s)" -lt "$_end" ] || { echo "the deploy never logged: $1"; return 1; }
        running || { echo "the deploy ended before: $1"; this_deploy | tail -n 20; return 1; }
        sleep 0.1
    done
}
wait_for_end() { # wait_for_end: until sum-deploy@acme is no longer running
    _end=$(( $(date +%s) + 300 ))
    while running; do
        [ "$(date +%s)" -lt "$_end" ] || { echo "the deploy still runs after 300s"; return 1; }
        sleep 0.2
    done
}
'

# The request loop, inside the container: GET https://acme.localhost/
# through Caddy, one request at a time, until /root/load.stop appears. It is
# bounded (30000 requests, 15 minutes) and stops by itself.
LOAD_SCRIPT='#!/bin/bash
if [ "$1" = --summary ]; then # --summary LOG: "requests failed slowest"
    exec awk "{ n++; if (\$1 != \"200\") f++; if (\$2 > m) m = \$2 }
              END { printf \"%d %d %.3f\", n, f, m }" "$2"
fi
out=$1
CA=/var/lib/caddy/.local/share/caddy/pki/authorities/local/root.crt
end=$(( $(date +%s) + 900 ))
n=0
: >"$out"
while [ ! -e /root/load.stop ] && [ "$n" -lt 30000 ] && [ "$(date +%s)" -lt "$end" ]; do
    curl -s -o /dev/null --max-time 30 --cacert "$CA" --resolve acme.localhost:443:127.0.0.1 \
        -w "%{http_code} %{time_total}\n" https://acme.localhost/ >>"$out" || true
    n=$((n + 1))
    sleep 0.05
done
'

SUMMARY=()
# Failed requests a fault may have and still pass. Not 0: once in about
# 10,000 requests over six runs, one new connection failed (curl: 000 in
# 0.04 s) during the typo fault, whose steps reload Caddy and deploy; its
# cause is not found yet. Every failure is still counted and printed per
# fault; a site that goes down fails many more.
TOLERATED=1

# load_start NAME: starts the request loop as a transient unit.
load_start() {
    ct "rm -f /root/load.stop
        systemd-run --quiet --collect --unit=e2e-load-$1 /bin/bash /root/load.sh /root/load-$1.log
        for _ in \$(seq 100); do [ -s /root/load-$1.log ] && exit 0; sleep 0.1; done
        echo 'the request loop answered nothing in 10 s'; exit 1" </dev/null
}

# load_stop NAME MAX_FAILED: stops the loop, prints and records its figures,
# and fails the run when more than MAX_FAILED requests failed ("-" only
# reports: a fault that takes the front door away, like stopping Caddy).
load_stop() {
    local name=$1 max=$2 figures n failed
    figures=$(ct "touch /root/load.stop
        while systemctl is-active -q e2e-load-$name; do sleep 0.1; done
        bash /root/load.sh --summary /root/load-$name.log" </dev/null)
    read -r n failed slowest <<<"$figures"
    SUMMARY+=("$(printf '%-28s %6s requests %4s failed  slowest %6ss' "$name" "$n" "$failed" "$slowest")")
    info "requests during '$name': $n sent, $failed failed, slowest ${slowest}s"
    if [ "$n" -lt 1 ]; then
        e2e_fail "requests during '$name'" "at least one request" "none"
    fi
    if [ "$max" != - ] && [ "$failed" -gt "$max" ]; then
        e2e_fail "requests during '$name'" "at most $max failed" "$failed failed of $n; the codes seen:
$(ct "cut -d' ' -f1 /root/load-$name.log | sort | uniq -c" </dev/null)"
    fi
}

step "host tools"
e2e_host_deps
step "image"
image=$(e2e_image)
step "booting the container"
E2E_UNITS=($E2E_PG_UNIT redis-server.service caddy.service)
e2e_boot "$image"

cp "$deb" "$E2E_STAGE/"
wheelhouse=$(bash tests/wheelhouse.sh)
cp -r "$wheelhouse" "$E2E_STAGE/wheels"
bash examples/make-repo.sh "$E2E_STAGE/acme-repo" >/dev/null
printf '%s' "$LOAD_SCRIPT" >"$E2E_STAGE/load.sh"
debname=$(basename "$deb")

step "a deployed site: acme v2 through systemd and Caddy"
E2E_UNITS=(sum-deploy@acme.service sum-gunicorn@acme.socket sum-gunicorn@acme.service caddy.service)
check "the package installs and acme deploys" "
    apt-get install -y -q -o Dpkg::Use-Pty=0 /root/in/$debname >/dev/null
    cp /root/in/load.sh /root/load.sh
"'
    # A writable copy: a fault below commits to it.
    cp -a /root/in/acme-repo /root/acme-repo
    # Its own database and Redis, as an operator gets them.
    sumctl new acme --domain acme.localhost --git /root/acme-repo >/dev/null
    printf "PIP_NO_INDEX=1\nPIP_FIND_LINKS=/srv/wheels\n" >>/srv/sum/acme/.env
    rm -rf /srv/wheels && cp -r /root/in/wheels /srv/wheels && chmod -R a+rX /srv/wheels
    sed -i "s|^# timeout = \"60s\"|timeout = \"20s\"|" /etc/sum/sites/acme.toml
    grep -q "^timeout = \"20s\"" /etc/sum/sites/acme.toml
    systemctl daemon-reload
    deploy_ok
    test -f /etc/sum/last-good/acme.toml || { echo "the deploy kept no last good copy"; exit 1; }
    cmp /etc/sum/sites/acme.toml /etc/sum/last-good/acme.toml'
check "a successful deploy logs nothing at priority err" '
    contains "the deploy" "deployed " "$(this_deploy)"
    expect "journalctl -p err of the deploy" "" "$(this_deploy -p err)"'

step "fault: a typo in the site file, reloaded, then fixed"
load_start typo
check "the typo reloaded keeps acme's units; check and status say why; fixed, the next deploy works" '
    cp /etc/sum/sites/acme.toml /root/acme.toml.good
    sed -i "s|^domain *= *\"acme.localhost\"|domain = acme.localhost|" /etc/sum/sites/acme.toml
    grep -q "^domain = acme.localhost$" /etc/sum/sites/acme.toml
    systemctl daemon-reload
    expect "LoadState of sum-gunicorn@acme.socket" loaded "$(systemctl show -P LoadState sum-gunicorn@acme.socket)"
    expect "sum-gunicorn@acme.socket" active "$(systemctl is-active sum-gunicorn@acme.socket)"
    # In a container the generator has no /dev/kmsg: run it by hand to read it.
    rm -rf /root/gen && mkdir /root/gen
    gen=$(/usr/lib/systemd/system-generators/sum-generator /root/gen 2>&1 || true)
    contains "the generator, run by hand" "site acme: its site file is rejected; KEEPING ITS LAST GOOD UNITS" "$gen"
    cmp /root/gen/sum-gunicorn@acme.socket /run/systemd/generator/sum-gunicorn@acme.socket
    set +e; out=$(sumctl check 2>&1); rc=$?; set -e
    expect "sumctl check exit status" 2 "$rc"
    contains "sumctl check" "site acme runs on its last good configuration" "$out"
    contains "sumctl status" "LAST GOOD COPY" "$(sumctl status acme)"
    serves v2
    systemctl reload caddy
    serves v2
    cp /root/acme.toml.good /etc/sum/sites/acme.toml
    systemctl daemon-reload
    sumctl check
    deploy_ok'
load_stop typo "$TOLERATED"

step "fault: the site file deleted, then restored"
load_start deleted
check "deleted: the units are no longer generated; restored: the next deploy repairs the socket and works" '
    mv /etc/sum/sites/acme.toml /root/acme.toml.moved
    systemctl daemon-reload
    expect "LoadState of sum-gunicorn@acme.socket" not-found "$(systemctl show -P LoadState sum-gunicorn@acme.socket)"
    mv /root/acme.toml.moved /etc/sum/sites/acme.toml
    systemctl daemon-reload
    expect "LoadState of sum-gunicorn@acme.socket" loaded "$(systemctl show -P LoadState sum-gunicorn@acme.socket)"
    deploy_ok
    contains "the deploy" "socket: sum-gunicorn@acme.socket is active but systemd holds no listening socket" "$(this_deploy)"
    contains "the deploy" "restarted it" "$(this_deploy)"'
load_stop deleted "$TOLERATED"

step "fault: two sites claim one host"
load_start clash
check "a second site file claiming acme.localhost takes nothing from acme" '
    cp /etc/sum/sites/acme.toml /etc/sum/sites/thief.toml
    systemctl daemon-reload
    set +e; out=$(sumctl check 2>&1); rc=$?; set -e
    expect "sumctl check exit status" 2 "$rc"
    contains "sumctl check" "host \`acme.localhost\` is also claimed" "$out"
    expect "LoadState of sum-gunicorn@thief.socket" not-found "$(systemctl show -P LoadState sum-gunicorn@thief.socket)"
    expect "sum-gunicorn@acme.socket" active "$(systemctl is-active sum-gunicorn@acme.socket)"
    systemctl reload caddy
    serves v2
    test ! -e /run/sum/caddy/thief.caddy || { echo "thief got a Caddy snippet"; exit 1; }
    rm /etc/sum/sites/thief.toml
    systemctl daemon-reload
    deploy_ok'
load_stop clash "$TOLERATED"

step "fault: systemctl daemon-reload in the middle of a deploy"
load_start reload-mid-deploy
check "a daemon-reload during the checks changes nothing: the deploy goes on and succeeds" '
    mark
    systemctl start --no-block sum-deploy@acme
    wait_for_step "==> check"
    systemctl daemon-reload
    wait_for_end
    expect "sum-deploy@acme Result" success "$(systemctl show -P Result sum-deploy@acme)"
    serves v2'
load_stop reload-mid-deploy "$TOLERATED"

step "fault: the deploy's own unit stopped during its slowest step"
load_start stop-deploy
check "systemctl stop sum-deploy@acme while pip builds a new venv: the site serves, the next deploy works" '
    # New requirements (a comment): a new venv, the slowest step of a deploy.
    cd /root/acme-repo
    git checkout -q -b newreqs main
    echo "# newreqs" >>requirements.txt
    git -c user.name=t -c user.email=t@example.com commit -qam newreqs
    git checkout -q main
    cd /
    sed -i "s|^ref = .*|ref = \"newreqs\"|" /etc/sum/sites/acme.toml
    live=$(readlink /srv/sum/acme/app)
    mark
    systemctl start --no-block sum-deploy@acme
    wait_for_step "==> venv"
    sleep 1.5
    running || { echo "the deploy ended before it was stopped"; this_deploy | tail -n 20; exit 1; }
    systemctl stop sum-deploy@acme
    lacks "the stopped deploy" "==> swap" "$(this_deploy)"
    expect "the live release" "$live" "$(readlink /srv/sum/acme/app)"
    serves v2
    deploy_ok
    contains "the next deploy" "built venvs/" "$(this_deploy)"
    sed -i "s|^ref = .*|ref = \"main\"|" /etc/sum/sites/acme.toml
    deploy_ok'
load_stop stop-deploy "$TOLERATED"

step "fault: the package upgraded (apt install again) in the middle of a deploy"
load_start upgrade-mid-deploy
check "apt-get install --reinstall during the deploy: it goes on and succeeds" "
    mark
    systemctl start --no-block sum-deploy@acme
    wait_for_step '==> check'
    apt-get install --reinstall -y -q -o Dpkg::Use-Pty=0 /root/in/$debname >/dev/null
    wait_for_end
    expect 'sum-deploy@acme Result' success \"\$(systemctl show -P Result sum-deploy@acme)\"
    serves v2
    deploy_ok"
load_stop upgrade-mid-deploy "$TOLERATED"
check "an upgrade gives a deployed site without a last good copy one (from a version that kept none)" "
    rm /etc/sum/last-good/acme.toml
    apt-get install --reinstall -y -q -o Dpkg::Use-Pty=0 /root/in/$debname >/dev/null
    cmp /etc/sum/sites/acme.toml /etc/sum/last-good/acme.toml"

step "fault: Caddy stopped, then started"
load_start caddy-stopped
check "Caddy stopped for 3 s and started: it serves acme again, the next deploy works" '
    systemctl stop caddy
    sleep 3
    systemctl start caddy
    poll 30 get https://acme.localhost/health/
    serves v2
    deploy_ok'
# While Caddy is stopped nothing answers at all: reported, not limited.
load_stop caddy-stopped -

step "fault: the socket unit restarted by hand"
load_start socket-restart
check "systemctl restart sum-gunicorn@acme.socket: acme serves, the next deploy works" '
    systemctl restart sum-gunicorn@acme.socket
    serves v2
    deploy_ok'
load_stop socket-restart "$TOLERATED"

step "fault: releases whose own answers are bad"
load_start bad-releases
check "v4 (health 503 unhealthy) rolls back; v2 serves" '
    rolls_back v4
    contains "the deploy" "/health/ answered 503: {\"status\": \"unhealthy\"" "$(this_deploy)"
    serves v2'
check "v6 (health 503 with 300 non-ASCII characters) rolls back, quoting it; v2 serves" '
    rolls_back v6
    contains "the deploy" "/health/ answered 503: xéééé" "$(this_deploy)"
    serves v2'
check "v7 (health 500 from the database state) rolls back naming Django's exception; it is at priority err" '
    rolls_back v7
    contains "the deploy" "Django raises, for the same request: notes.models.Note.DoesNotExist" "$(this_deploy)"
    errs=$(this_deploy -p err)
    contains "journalctl -p err of the failed deploy" "sum-deploy acme: smoke failed after the swap" "$errs"
    contains "journalctl -p err -u sum-*" "Note matching query does not exist" "$(journalctl -p err -u "sum-*" --no-pager -o cat)"
    serves v2
    sed -i "s|^ref = .*|ref = \"main\"|" /etc/sum/sites/acme.toml
    systemctl reset-failed sum-deploy@acme
    deploy_ok'
load_stop bad-releases "$TOLERATED"

step "fault: a reboot, with a typo in the site file"
check "the typo is in place before the reboot" '
    sed -i "s|^domain *= *\"acme.localhost\"|domain = acme.localhost|" /etc/sum/sites/acme.toml
    grep -q "^domain = acme.localhost$" /etc/sum/sites/acme.toml
    if sumctl check >/dev/null 2>&1; then echo "sumctl check accepts the typo"; exit 1; fi'
reboot_started=$(date +%s)
if ! e2e_reboot; then
    e2e_fail "the container reboots" "systemctl is-system-running: running or degraded" "see the console log above"
fi
reboot_took=$(( $(date +%s) - reboot_started ))
E2E_PASSED=$((E2E_PASSED + 1))
echo "  ok    the container reboots (${reboot_took}s)"
check "after the reboot: acme serves, its timer is listed, its Caddy snippet is back, untouched by hand" '
    poll 60 get https://acme.localhost/health/
    serves v2
    contains "systemctl list-timers" "sum-backup@acme.timer" "$(systemctl list-timers --no-pager)"
    test -f /run/sum/caddy/acme.caddy || { echo "no Caddy snippet for acme"; exit 1; }
    expect "the site own Redis after the reboot" active "$(systemctl is-active redis-server@sum-acme.service)"
    contains "sumctl status" "LAST GOOD COPY" "$(sumctl status acme)"'
load_start after-reboot
check "fixed after the reboot: the next deploy works" '
    sed -i "s|^domain = acme.localhost|domain = \"acme.localhost\"|" /etc/sum/sites/acme.toml
    sumctl check
    systemctl daemon-reload
    deploy_ok'
load_stop after-reboot "$TOLERATED"

step "the requests sent during each fault (GET https://acme.localhost/ through Caddy)"
printf '    %s\n' "${SUMMARY[@]}"
