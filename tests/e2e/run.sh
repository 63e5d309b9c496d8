#!/usr/bin/env bash
# End-to-end: the real package in a real Debian 12 with systemd as PID 1.
#
#   sudo bash tests/e2e/run.sh [--deb PATH] [--keep]
#
# Builds (or takes) the .deb, boots a throwaway container from a cached
# mmdebstrap image, installs the package and checks what an operator would
# see. --keep leaves the container running and prints how to enter it.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tests/e2e/lib.sh
. tests/e2e/lib.sh

deb="" keep=0
while [ $# -gt 0 ]; do
    case "$1" in
    --deb) deb=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    *) echo "usage: $0 [--deb PATH] [--keep]" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "run as root (systemd-nspawn needs it)" >&2; exit 2; }

started=$(date +%s)
passed=0
failed=0

finish() {
    local rc=$?
    if [ "$keep" = 1 ] && [ -n "$E2E_DIR" ]; then
        echo "container kept: enter it with"
        echo "  nsenter --target $E2E_LEADER --mount --uts --ipc --net --pid --cgroup /bin/bash"
        echo "stop it with: kill $E2E_NSPAWN_PID; rm -rf $E2E_DIR"
    else
        e2e_cleanup
    fi
    echo "e2e: took $(( $(date +%s) - started ))s"
    echo "e2e: $passed passed, $failed failed"
    if [ "$failed" -gt 0 ] && [ "$rc" -eq 0 ]; then rc=1; fi
    exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM

diagnostics() {
    echo "---- diagnostics from the container ----"
    ct 'systemctl --failed --no-legend --no-pager; echo; journalctl -b --no-pager -n 60; echo;
        systemctl status --no-pager caddy sum-sites.target "sum-*" 2>&1 | head -80' || true
}

# check NAME SCRIPT: runs SCRIPT inside the container; it fails the run when
# SCRIPT exits non-zero, showing what it printed (expected and seen).
check() {
    local name=$1 out
    if out=$(ct "set -e; $2" 2>&1); then
        passed=$((passed + 1))
        printf 'ok   %s\n' "$name"
    else
        failed=$((failed + 1))
        printf 'FAIL %s\n%s\n' "$name" "$(printf '%s\n' "$out" | sed 's/^/     /')"
        diagnostics
        exit 1
    fi
}

# Shell functions available to every check inside the container.
prelude='
expect() { # expect WHAT EXPECTED SEEN
    [ "$2" = "$3" ] || { echo "$1: expected [$2], saw [$3]"; return 1; }
}
contains() { # contains WHAT NEEDLE TEXT
    case "$3" in *"$2"*) ;; *) echo "$1: expected to contain [$2], saw:"; echo "$3"; return 1 ;; esac
}
poll() { # poll SECONDS COMMAND...: retries until COMMAND succeeds
    t=$1; shift; i=0
    while ! "$@" >/dev/null 2>&1; do
        i=$((i + 1)); [ "$i" -ge $((t * 5)) ] && { echo "timed out after ${t}s: $*"; "$@"; return 1; }
        sleep 0.2
    done
}
CA=/var/lib/caddy/.local/share/caddy/pki/authorities/local/root.crt
get() { # get URL [curl args]: prints "STATUS" and keeps headers/body in /root/resp.*
    url=$1; shift
    curl -sS --max-time 10 --cacert "$CA" --resolve acme.localhost:443:127.0.0.1 \
        --resolve www.acme.localhost:443:127.0.0.1 -D /root/resp.h -o /root/resp.b \
        -w "%{http_code}" "$@" "$url"
}
'
c() { check "$1" "$prelude $2"; }

e2e_host_deps
if [ -z "$deb" ]; then
    say "building the package"
    deb=$(bash packaging/build-deb | tail -n 1)
fi
[ -f "$deb" ] || { echo "no package at $deb" >&2; exit 2; }

image=$(e2e_image)
e2e_boot "$image"
cp "$deb" "$E2E_DIR/in/sum-golden-path.deb"

say "installing the package"
c "apt-get install of the .deb works" '
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q /root/in/sum-golden-path.deb'
c "the package put the generator, sumctl, the units and the caddy drop-in in place" '
    test -x /usr/lib/systemd/system-generators/sum-generator
    test -x /usr/bin/sumctl
    test -f /usr/lib/systemd/system/caddy.service.d/sum-golden-path.conf
    test -f /usr/lib/systemd/system/sum-sites.target
    test -f /usr/lib/systemd/system/sum-backup@.service
    test -d /etc/sum/sites
    man -w sum-site.toml >/dev/null 2>&1 || test -f /usr/share/man/man5/sum-site.toml.5.gz'
c "caddy runs our root file after install; sum-sites.target is active" '
    expect caddy active "$(systemctl is-active caddy)"
    expect sum-sites.target active "$(systemctl is-active sum-sites.target)"
    contains "systemctl cat caddy" "sumctl caddy-render" "$(systemctl cat caddy)"
    # The install reloaded caddy through our drop-in: the render step ran.
    test -d /run/sum/caddy
    contains "caddy journal" "caddy snippets: 0 rendered" "$(journalctl -u caddy --no-pager -o cat)"'

say "a site: sumctl new, then daemon-reload"
c "sumctl new writes the site file and a private .env" '
    sumctl new acme --domain acme.localhost --alias www.acme.localhost --git https://git.example.com/acme.git
    expect ".env owner and mode" "root:sum-acme 640" "$(stat -c "%U:%G %a" /srv/sum/acme/.env)"
    expect "site file mode" "root:root 644" "$(stat -c "%U:%G %a" /etc/sum/sites/acme.toml)"
    grep -q "^SECRET_KEY=.\{50\}$" /srv/sum/acme/.env
    # Turn the celery worker on by editing the commented default.
    sed -i "s/^# worker = false/worker = true/" /etc/sum/sites/acme.toml
    sumctl check'
c "daemon-reload generates loaded units" '
    systemctl daemon-reload
    for u in sum-gunicorn@acme.socket sum-gunicorn@acme.service sum-celery@acme.service sum-backup@acme.timer; do
        expect "$u LoadState" loaded "$(systemctl show -P LoadState "$u")"
    done
    expect "celerybeat (beat is off)" not-found "$(systemctl show -P LoadState sum-celerybeat@acme.service)"'
c "systemctl cat shows the generated origin and SourcePath" '
    contains "systemctl cat" "# Automatically generated by sum-generator from /etc/sum/sites/acme.toml" \
        "$(systemctl cat sum-gunicorn@acme.service)"
    expect SourcePath /etc/sum/sites/acme.toml "$(systemctl show -P SourcePath sum-gunicorn@acme.service)"
    expect FragmentPath /run/systemd/generator/sum-gunicorn@acme.service "$(systemctl show -P FragmentPath sum-gunicorn@acme.service)"'
c "the socket listens right after daemon-reload" '
    poll 10 sh -c "systemctl is-active -q sum-gunicorn@acme.socket"
    test -S /run/sum/acme/gunicorn.sock
    contains "ss -xl" /run/sum/acme/gunicorn.sock "$(ss -xlH)"
    expect "socket owner" "root:caddy 660" "$(stat -c "%U:%G %a" /run/sum/acme/gunicorn.sock)"'
c "the backup timer is scheduled" '
    poll 10 sh -c "systemctl is-active -q sum-backup@acme.timer"
    contains "list-timers" "sum-backup@acme.timer" "$(systemctl list-timers --no-pager)"
    contains "timer schedule" "*-*-* 02:00:00 UTC" "$(systemctl show -P TimersCalendar sum-backup@acme.timer)"'
c "a socket stopped by hand is brought back (sum-sites.target upholds it)" '
    systemctl stop sum-gunicorn@acme.socket
    poll 10 sh -c "systemctl is-active -q sum-gunicorn@acme.socket"'

say "caddy"
c "caddy reload renders the snippet" '
    systemctl reload caddy
    test -f /run/sum/caddy/acme.caddy
    contains snippet "acme.localhost {" "$(cat /run/sum/caddy/acme.caddy)"'
c "https://acme.localhost/ answers 503 over valid TLS before the first deploy" '
    poll 30 get https://acme.localhost/
    expect status 503 "$(get https://acme.localhost/)"
    contains body "has not been deployed yet" "$(cat /root/resp.b)"
    contains headers "retry-after: 60" "$(tr A-Z a-z </root/resp.h)"
    contains headers "strict-transport-security: max-age=31536000" "$(tr A-Z a-z </root/resp.h)"'
c "an alias redirects permanently to the domain" '
    expect status 301 "$(get https://www.acme.localhost/some/page?x=1)"
    contains location "location: https://acme.localhost/some/page?x=1" "$(tr A-Z a-z </root/resp.h)"'
c "the maintenance flag switches without a reload" '
    touch /srv/sum/acme/maintenance
    expect status 503 "$(get https://acme.localhost/)"
    contains body maintenance "$(cat /root/resp.b)"
    contains headers "retry-after: 120" "$(tr A-Z a-z </root/resp.h)"
    rm /srv/sum/acme/maintenance
    contains body "not been deployed" "$(get https://acme.localhost/ >/dev/null; cat /root/resp.b)"'
c "the admin's own Caddyfile still serves :80" '
    expect status 200 "$(curl -s -o /dev/null -w "%{http_code}" http://127.0.0.1/)"'

say "a broken second site"
c "a broken site file does not stop acme" '
    printf "domain = \"broken.localhost\"\n[git]\nurl = \"https://x.example/b.git\"\n[gunicorn]\nworkers = 0\n" >/etc/sum/sites/broken.toml
    systemctl daemon-reload
    expect "acme still loaded" loaded "$(systemctl show -P LoadState sum-gunicorn@acme.service)"
    expect "acme socket still active" active "$(systemctl is-active sum-gunicorn@acme.socket)"
    expect "broken not generated" not-found "$(systemctl show -P LoadState sum-gunicorn@broken.service)"'
c "the journal shows that the generator failed" '
    contains journal "sum-generator failed with exit status 1" "$(journalctl -b --no-pager -o cat)"'
c "sumctl check names file, line and column" '
    set +e; out=$(sumctl check 2>&1); rc=$?; set -e
    expect "exit status" 2 "$rc"
    contains "sumctl check" "/etc/sum/sites/broken.toml:5:11: gunicorn.workers" "$out"
    sumctl check /etc/sum/sites/acme.toml'
c "caddy keeps serving acme while broken.toml is invalid" '
    systemctl reload caddy
    expect status 503 "$(get https://acme.localhost/)"
    test ! -e /run/sum/caddy/broken.caddy'

say "removing the site"
c "removing the site file plus daemon-reload removes its units" '
    systemctl stop sum-sites.target
    rm /etc/sum/sites/acme.toml /etc/sum/sites/broken.toml
    systemctl daemon-reload
    systemctl start sum-sites.target
    for u in sum-gunicorn@acme.socket sum-gunicorn@acme.service sum-celery@acme.service sum-backup@acme.timer; do
        expect "$u LoadState" not-found "$(systemctl show -P LoadState "$u")"
    done
    test ! -e /run/systemd/generator/sum-gunicorn@acme.service
    systemctl reload caddy
    test ! -e /run/sum/caddy/acme.caddy'

say "removing the package"
c "dpkg -r leaves caddy serving the admin's Caddyfile; purge keeps /srv/sum" '
    dpkg -r sum-golden-path
    test ! -e /usr/lib/systemd/system-generators/sum-generator
    expect caddy active "$(systemctl is-active caddy)"
    expect "admin site" 200 "$(curl -s -o /dev/null -w "%{http_code}" http://127.0.0.1/)"
    dpkg --purge sum-golden-path
    test -d /srv/sum/acme
    test -f /srv/sum/acme/.env'
