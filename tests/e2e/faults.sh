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

E2E_PRELUDE+=$E2E_DEPLOY_HELPERS
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
deploy_ok() { # deploy_ok: systemctl start sum-deploy@acme succeeds and v2 serves
    mark
    systemctl start sum-deploy@acme
    expect "sum-deploy@acme Result" success "$(systemctl show -P Result sum-deploy@acme)"
    serves v2
}
rolls_back() { # rolls_back REF: a deploy of REF fails after the swap and rolls back (exit 4)
    sed -i "s|^ref = .*|ref = \"$1\"|" /etc/sum/sites/acme.toml
    mark
    if systemctl start sum-deploy@acme; then echo "the deploy of $1 succeeded"; return 1; fi
    expect "exit status of the deploy of $1" 4 "$(systemctl show -P ExecMainStatus sum-deploy@acme)"
}
'

# Failed requests a fault may have and still pass. Not 0: the typo and the
# clash faults run `systemctl reload caddy` as an operator would, and that
# reload is forced (as in Debian's unit), so Caddy replaces its servers even
# when nothing changed; a connection accepted in that instant can be reset
# (docs/caddy.md, "Reloads": 2 in 200 forced reloads). Once in about 10,000
# requests over six runs one request failed during the typo fault (curl: 000
# in 0.04 s), most likely this way; curl's message was not logged then. Every
# failure is now counted and printed per fault with curl's message; a site
# that goes down fails many more.
TOLERATED=1

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
debname=$(basename "$deb")

step "a deployed site: acme v2 through systemd and Caddy"
E2E_UNITS=(sum-deploy@acme.service sum-gunicorn@acme.socket sum-gunicorn@acme.service caddy.service)
check "the package installs and acme deploys" "
    apt-get install -y -q -o Dpkg::Use-Pty=0 /root/in/$debname >/dev/null
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
e2e_load_start typo
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
e2e_load_stop typo "$TOLERATED"

step "fault: the site file deleted, then restored"
e2e_load_start deleted
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
e2e_load_stop deleted "$TOLERATED"

step "fault: two sites claim one host"
e2e_load_start clash
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
e2e_load_stop clash "$TOLERATED"

step "fault: systemctl daemon-reload in the middle of a deploy"
e2e_load_start reload-mid-deploy
check "a daemon-reload during the checks changes nothing: the deploy goes on and succeeds" '
    mark
    systemctl start --no-block sum-deploy@acme
    wait_for_step "==> check"
    systemctl daemon-reload
    wait_for_end
    expect "sum-deploy@acme Result" success "$(systemctl show -P Result sum-deploy@acme)"
    serves v2'
e2e_load_stop reload-mid-deploy "$TOLERATED"

step "fault: the deploy's own unit stopped during its slowest step"
e2e_load_start stop-deploy
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
e2e_load_stop stop-deploy "$TOLERATED"

step "fault: the package upgraded (apt install again) in the middle of a deploy"
e2e_load_start upgrade-mid-deploy
check "apt-get install --reinstall during the deploy: it goes on and succeeds" "
    mark
    systemctl start --no-block sum-deploy@acme
    wait_for_step '==> check'
    apt-get install --reinstall -y -q -o Dpkg::Use-Pty=0 /root/in/$debname >/dev/null
    wait_for_end
    expect 'sum-deploy@acme Result' success \"\$(systemctl show -P Result sum-deploy@acme)\"
    serves v2
    deploy_ok"
e2e_load_stop upgrade-mid-deploy "$TOLERATED"
check "an upgrade gives a deployed site without a last good copy one (from a version that kept none)" "
    rm /etc/sum/last-good/acme.toml
    apt-get install --reinstall -y -q -o Dpkg::Use-Pty=0 /root/in/$debname >/dev/null
    cmp /etc/sum/sites/acme.toml /etc/sum/last-good/acme.toml"

step "fault: Caddy stopped, then started"
e2e_load_start caddy-stopped
check "Caddy stopped for 3 s and started: it serves acme again, the next deploy works" '
    systemctl stop caddy
    sleep 3
    systemctl start caddy
    poll 30 get https://acme.localhost/health/
    serves v2
    deploy_ok'
# While Caddy is stopped nothing answers at all: reported, not limited.
e2e_load_stop caddy-stopped -

step "fault: the socket unit restarted by hand"
e2e_load_start socket-restart
check "systemctl restart sum-gunicorn@acme.socket: acme serves, the next deploy works" '
    systemctl restart sum-gunicorn@acme.socket
    serves v2
    deploy_ok'
e2e_load_stop socket-restart "$TOLERATED"

step "fault: releases whose own answers are bad"
e2e_load_start bad-releases
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
e2e_load_stop bad-releases "$TOLERATED"

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
e2e_load_start after-reboot
check "fixed after the reboot: the next deploy works" '
    sed -i "s|^domain = acme.localhost|domain = \"acme.localhost\"|" /etc/sum/sites/acme.toml
    sumctl check
    systemctl daemon-reload
    deploy_ok'
e2e_load_stop after-reboot "$TOLERATED"

step "the requests sent during each fault (GET https://acme.localhost/ through Caddy)"
printf '    %s\n' "${E2E_LOAD_SUMMARY[@]}"
