#!/usr/bin/env bash
# End-to-end: the real package in a real Debian 13 or 12 with systemd as PID 1
# (E2E_SUITE=trixie, the default, or bookworm).
#
#   sudo bash tests/e2e/run.sh [--deb PATH] [--keep]
#
# Builds the .deb (bash packaging/build-deb) unless --deb is given, boots a
# throwaway systemd-nspawn container from a cached mmdebstrap image, installs
# the package and checks what an operator would see: generated units, the
# gunicorn socket, the backup timer, Caddy with TLS, a broken site file,
# removal of a site and of the package. --keep leaves the container running
# and prints how to enter it. See tests/e2e/README.md.
set -euo pipefail

usage() { echo "usage: $0 [--deb PATH] [--keep] [--boot-only]" >&2; exit 2; }
deb="" keep=0 boot_only=0
while [ $# -gt 0 ]; do
    case "$1" in
    --deb) [ $# -ge 2 ] || usage; deb=$2; shift 2 ;;
    --deb=*) deb=${1#--deb=}; shift ;;
    --keep) keep=1; shift ;;
    # Only the image, the boot and the base services (no package needed).
    --boot-only) boot_only=1; shift ;;
    *) usage ;;
    esac
done
if [ -n "$deb" ]; then
    [ -f "$deb" ] || { echo "e2e: no package at '$deb'" >&2; exit 2; }
    deb=$(realpath "$deb")
fi

cd "$(dirname "$0")/../.."
# shellcheck source=tests/e2e/lib.sh
. tests/e2e/lib.sh
# shellcheck source=tests/e2e/envfile.sh
. tests/e2e/envfile.sh
E2E_KEEP=$keep
[ "$(id -u)" -eq 0 ] || { echo "e2e: run as root (systemd-nspawn needs it)" >&2; exit 2; }

e2e_install_traps

check() { e2e_check "$@"; }

# Helpers for the Caddy checks, inside the container.
E2E_PRELUDE+='
CA=/var/lib/caddy/.local/share/caddy/pki/authorities/local/root.crt
get() { # get URL [curl args]: prints the HTTP status; headers in /root/resp.h, body in /root/resp.b
    curl -sS --max-time 10 --cacert "$CA" \
        --resolve acme.localhost:443:127.0.0.1 --resolve www.acme.localhost:443:127.0.0.1 \
        --resolve bakery.localhost:443:127.0.0.1 \
        -D /root/resp.h -o /root/resp.b -w "%{http_code}" "$@"
}
header() { # header NAME: the value of a response header of the last get, lower-cased name
    tr -d "\r" </root/resp.h | awk -v n="$(echo "$1" | tr A-Z a-z)" \
        "BEGIN { FS = \": \" } tolower(\$1) == n { sub(/^[^:]*: /, \"\"); print; exit }"
}
env_of() { # env_of SITE KEY: a value from the site .env that sumctl new wrote
    sed -n "s/^$2=//p" "/srv/sum/$1/.env"
}
site_sql() { # site_sql SITE SQL [DB]: psql as the site own role (its DATABASE_URL), or into DB
    u=$(env_of "$1" DATABASE_URL)
    [ -z "${3:-}" ] || u=${u%/*}/$3
    psql -X -q -At -v ON_ERROR_STOP=1 "$u" -c "$2"
}
'

step "host tools"
e2e_host_deps

if [ "$boot_only" = 0 ]; then
    step "the package"
    if [ -z "$deb" ]; then
        info "building it: bash packaging/build-deb"
        deb=$(bash packaging/build-deb | tail -n 1)
        [ -f "$deb" ] || { echo "e2e: packaging/build-deb printed no package path: '$deb'" >&2; exit 1; }
        deb=$(realpath "$deb")
    fi
    info "$deb"
fi

step "image"
image=$(e2e_image)

step "booting the container"
boot_started=$(date +%s)
E2E_UNITS=($E2E_PG_UNIT redis-server.service caddy.service)
if ! e2e_boot "$image" 2>&1; then
    e2e_fail "the container boots" "systemctl is-system-running: running or degraded" \
        "see the console log above"
fi
E2E_PASSED=$((E2E_PASSED + 1)); echo "  ok    the container boots ($(( $(date +%s) - boot_started ))s)"

check "postgresql, redis-server and caddy run under systemd" '
    for u in '"$E2E_PG_UNIT"' redis-server.service caddy.service; do
        expect "systemctl is-active $u" active "$(systemctl is-active "$u")"
    done
    expect "psql as postgres" 1 "$(runuser -u postgres -- psql -XAtc "select 1")"
    expect "redis-cli ping" PONG "$(redis-cli ping)"'
# The .env syntax: our parser against systemd's EnvironmentFile= itself.
e2e_envfile_checks
[ "$boot_only" = 1 ] && exit 0

# The stage is bound read-only at /root/in; the package keeps its file name.
cp "$deb" "$E2E_STAGE/"
# The package also as a signed apt repository, the way users install it.
e2e_build_repo "$deb"
# gunicorn for a running app: the container has no network, so its wheels
# come from a wheelhouse downloaded here (its Python 3.11 or 3.13: tests/wheelhouse.sh has both).
# The example app's wheels (gunicorn, Django, psycopg, redis), and its git
# repository with eight versions (examples/make-repo.sh).
wheelhouse=$(bash tests/wheelhouse.sh)
cp -r "$wheelhouse" "$E2E_STAGE/wheels"
rm -rf "$E2E_STAGE/acme-repo" "$E2E_STAGE/bakery-repo"
bash examples/make-repo.sh "$E2E_STAGE/acme-repo" >/dev/null
# The Wagtail-shaped example (hard-coded STATIC_ROOT/MEDIA_ROOT), v1 and v2.
bash examples/make-bakery-repo.sh "$E2E_STAGE/bakery-repo" >/dev/null
cp examples/bakery.toml "$E2E_STAGE/bakery.toml"
debname=$(basename "$deb")

step "installing the package"
E2E_UNITS=(caddy.service sum-sites.target)
check "apt install sum-golden-path from the signed repository (its key in /etc/apt/keyrings, a deb822 source with Signed-By)" "
    add_repo
    # The container has no network: Debian's own sources stay out (apt_ours).
    apt_ours update
    apt_ours install sum-golden-path
    expect 'the installed version' '$(dpkg-deb -f "$deb" Version)' \"\$(dpkg-query -W -f='\${Version}' sum-golden-path)\"
    contains 'apt-cache policy' 'file:/root/in/repo stable/main' \"\$(apt-cache policy sum-golden-path)\""
check "the package put the generator, sumctl and the caddy drop-in in place" '
    for f in /usr/lib/systemd/system-generators/sum-generator /usr/bin/sumctl /usr/bin/sum-deploy \
             /usr/bin/sum-backup /usr/bin/sum-restore; do
        test -x "$f" || { echo "not an executable: $f"; exit 1; }
    done
    for f in /usr/lib/systemd/system/caddy.service.d/sum-golden-path.conf \
             /usr/lib/systemd/system/sum-sites.target \
             /usr/lib/systemd/system/sum-backup@.service \
             /usr/lib/systemd/system/sum-deploy@.service; do
        test -f "$f" || { echo "missing: $f"; exit 1; }
    done
    test -d /etc/sum/sites || { echo "missing: /etc/sum/sites"; exit 1; }
    man -w sum-site.toml >/dev/null || { echo "man -w sum-site.toml finds no page"; exit 1; }'
check "every document the README and the man pages name is installed" '
    d=/usr/share/doc/sum-golden-path
    show() { if [ -f "$1.gz" ]; then zcat "$1.gz"; else cat "$1"; fi; }
    n=0
    for doc in $(show "$d/README.md" | grep -o "docs/[a-z_-]*\.md" | sort -u); do
        n=$((n + 1))
        test -f "$d/$doc" || test -f "$d/$doc.gz" || { echo "README names $doc; not installed"; exit 1; }
    done
    for page in /usr/share/man/man5/sum-site.toml.5.gz /usr/share/man/man8/sum*.8.gz; do
        for p in $(zcat "$page" | sed "s/\\\\-/-/g" | grep -o "/usr/share/doc/[A-Za-z0-9/_.-]*" | sort -u); do
            n=$((n + 1))
            test -e "$p" || test -e "$p.gz" || { echo "$page names $p; not installed"; exit 1; }
        done
    done
    [ "$n" -ge 8 ] || { echo "only $n document paths read"; exit 1; }'
check "caddy.service is active after install and runs through the drop-in" '
    expect "systemctl is-active caddy" active "$(systemctl is-active caddy)"
    contains "systemctl cat caddy" "sumctl caddy-render" "$(systemctl cat caddy)"
    contains "caddy ExecStart" "/usr/share/sum-golden-path/caddy/Caddyfile" \
        "$(systemctl show -p ExecStart caddy)"'

step "a site: /etc/sum/sites/acme.toml, then daemon-reload"
E2E_UNITS=(sum-sites.target sum-gunicorn@acme.socket sum-gunicorn@acme.service
           sum-celery@acme.service sum-backup@acme.timer)
check "the site file is valid and daemon-reload loads its units" '
    mkdir -p /etc/sum/sites
    cat >/etc/sum/sites/acme.toml <<"EOF"
domain = "acme.localhost"
aliases = ["www.acme.localhost"]
[git]
url = "https://git.example.com/acme.git"
[celery]
worker = true
EOF
    sumctl check /etc/sum/sites/acme.toml
    systemctl daemon-reload
    for u in sum-gunicorn@acme.socket sum-gunicorn@acme.service sum-celery@acme.service sum-backup@acme.timer; do
        expect "LoadState of $u" loaded "$(systemctl show -P LoadState "$u")"
    done'
check "no celerybeat unit while beat is off" '
    expect "LoadState of sum-celerybeat@acme.service" not-found \
        "$(systemctl show -P LoadState sum-celerybeat@acme.service)"'
check "systemctl cat shows the generator header; SourcePath is the site file" '
    cat=$(systemctl cat sum-gunicorn@acme.service)
    echo "$cat" | grep -q "^# Automatically generated by sum-generator" \
        || contains "systemctl cat sum-gunicorn@acme.service" "# Automatically generated by sum-generator" "$cat"
    expect "SourcePath" /etc/sum/sites/acme.toml "$(systemctl show -P SourcePath sum-gunicorn@acme.service)"'
check "the gunicorn socket is active and listening" '
    poll 10 systemctl is-active -q sum-gunicorn@acme.socket \
        || expect "systemctl is-active sum-gunicorn@acme.socket" active "$(systemctl is-active sum-gunicorn@acme.socket)"
    test -S /run/sum/acme/gunicorn.sock || { echo "not a socket: /run/sum/acme/gunicorn.sock"; ls -la /run/sum/acme; exit 1; }
    contains "ss -xlH" " /run/sum/acme/gunicorn.sock " "$(ss -xlH)"
    expect "socket owner, group and mode" "root:caddy 660" "$(stat -c "%U:%G %a" /run/sum/acme/gunicorn.sock)"'
check "list-timers shows the backup timer" '
    contains "systemctl list-timers --all" "sum-backup@acme.timer" "$(systemctl list-timers --all --no-pager)"'
check "a socket stopped by hand comes back (sum-sites.target upholds it)" '
    systemctl stop sum-gunicorn@acme.socket
    poll 10 systemctl is-active -q sum-gunicorn@acme.socket \
        || expect "systemctl is-active sum-gunicorn@acme.socket" active "$(systemctl is-active sum-gunicorn@acme.socket)"'

step "caddy"
E2E_UNITS=(caddy.service)
check "systemctl reload caddy renders the site snippet" '
    systemctl reload caddy
    test -f /run/sum/caddy/acme.caddy || { echo "missing: /run/sum/caddy/acme.caddy"; ls -la /run/sum/caddy; exit 1; }
    expect "systemctl is-active caddy" active "$(systemctl is-active caddy)"'
check "https://acme.localhost/ completes TLS with a certificate for acme.localhost" '
    # Caddy issues the certificate from its local CA after the reload.
    poll 30 get https://acme.localhost/ || true
    status=$(get https://acme.localhost/ -w "%{http_code} %{ssl_verify_result}") || {
        echo "curl failed (TLS or connection error), see above"; exit 1; }
    expect "HTTP status and certificate verification result" "503 0" "$status"'
check "before the first deploy it answers 503 with Retry-After" '
    expect "HTTP status" 503 "$(get https://acme.localhost/)"
    retry=$(header retry-after)
    [ -n "$retry" ] || { echo "no Retry-After header; headers:"; cat /root/resp.h; exit 1; }'
check "an alias redirects permanently to the domain" '
    status=$(get https://www.acme.localhost/)
    case "$status" in 301|308) ;; *) expect "HTTP status" "301 or 308" "$status" ;; esac
    expect "Location" "https://acme.localhost/" "$(header location)"
    get https://www.acme.localhost/some/page?x=1 >/dev/null
    expect "Location (path and query kept)" "https://acme.localhost/some/page?x=1" "$(header location)"'
check "the maintenance flag switches to 503 maintenance without a reload" '
    mkdir -p /srv/sum/acme
    touch /srv/sum/acme/maintenance
    expect "HTTP status" 503 "$(get https://acme.localhost/)"
    contains "body" maintenance "$(cat /root/resp.b)"
    rm /srv/sum/acme/maintenance
    expect "HTTP status without the flag" 503 "$(get https://acme.localhost/)"
    lacks "body without the flag" maintenance "$(cat /root/resp.b)"'
check "the admin Caddyfile still serves :80" '
    expect "http://127.0.0.1/" 200 "$(curl -sS --max-time 10 -o /dev/null -w "%{http_code}" http://127.0.0.1/)"'

step "a broken second site"
E2E_UNITS=(sum-gunicorn@acme.socket caddy.service)
check "a broken site file leaves acme's units alone" '
    printf "domain = \"broken.localhost\"\n[git]\nurl = \"https://x.example/b.git\"\n[gunicorn]\nworkers = 0\n" \
        >/etc/sum/sites/broken.toml
    systemctl daemon-reload
    expect "LoadState of sum-gunicorn@acme.service" loaded "$(systemctl show -P LoadState sum-gunicorn@acme.service)"
    expect "systemctl is-active sum-gunicorn@acme.socket" active "$(systemctl is-active sum-gunicorn@acme.socket)"
    expect "LoadState of sum-gunicorn@broken.service" not-found "$(systemctl show -P LoadState sum-gunicorn@broken.service)"'
check "the journal says the generator failed" '
    journal=$(journalctl -b --no-pager -o cat)
    echo "$journal" | grep "sum-generator" | grep -q "failed" \
        || contains "journalctl -b (a line with sum-generator and failed)" "sum-generator ... failed" \
            "$(echo "$journal" | grep -i "generator" | tail -n 20)"'
check "sumctl check exits 2 and names the file, the line and the key" '
    set +e; out=$(sumctl check 2>&1); rc=$?; set -e
    expect "exit status of sumctl check" 2 "$rc"
    contains "output of sumctl check" "/etc/sum/sites/broken.toml:5:" "$out"
    contains "output of sumctl check" "gunicorn.workers" "$out"'
check "sumctl check of the good site alone exits 0" '
    sumctl check /etc/sum/sites/acme.toml'
check "caddy reloads and keeps serving acme while broken.toml is invalid" '
    systemctl reload caddy
    expect "HTTP status" 503 "$(get https://acme.localhost/)"
    test ! -e /run/sum/caddy/broken.caddy || { echo "unexpected: /run/sum/caddy/broken.caddy"; exit 1; }'

step "removing the sites"
E2E_UNITS=(sum-sites.target sum-gunicorn@acme.socket)
check "site file removed + daemon-reload: its units are gone" '
    # The documented order: once the file is gone and systemd reloaded, the
    # units are no longer upheld, so stopping them sticks.
    rm /etc/sum/sites/acme.toml /etc/sum/sites/broken.toml
    systemctl daemon-reload
    systemctl stop "sum-*@acme.*"
    systemctl reset-failed "sum-*@acme.*"
    expect "failed units" "" "$(systemctl --failed --no-legend --plain)"
    for u in sum-gunicorn@acme.socket sum-gunicorn@acme.service sum-celery@acme.service sum-backup@acme.timer; do
        expect "LoadState of $u" not-found "$(systemctl show -P LoadState "$u")"
    done
    test ! -e /run/systemd/generator/sum-gunicorn@acme.service \
        || { echo "still there: /run/systemd/generator/sum-gunicorn@acme.service"; exit 1; }
    systemctl reload caddy
    test ! -e /run/sum/caddy/acme.caddy || { echo "still there: /run/sum/caddy/acme.caddy"; exit 1; }'

step "sumctl new"
E2E_UNITS=(sum-gunicorn@beta.socket)
check "sumctl new writes the site file, a private .env, and the site own database and Redis" '
    out=$(sumctl new beta --domain beta.localhost --alias www.beta.localhost --git https://git.example.com/beta.git)
    contains "sumctl new" "created PostgreSQL role" "$out"
    contains "sumctl new" "created Redis redis-server@sum-beta.service on 127.0.0.1:" "$out"
    contains "sumctl new, next steps" "systemctl start sum-deploy@beta" "$out"
    expect "the role logs in with the .env, into its own database" "beta beta" \
        "$(site_sql beta "SELECT current_user || chr(32) || current_database()")"
    expect "redis-server@sum-beta" active "$(systemctl is-active redis-server@sum-beta.service)"
    expect "redis-server@sum-beta is enabled" enabled "$(systemctl is-enabled redis-server@sum-beta.service)"
    port=$(env_of beta REDIS_URL | sed "s/.*://")
    pw=$(env_of beta REDIS_URL | sed "s|^redis://:||; s|@.*||")
    expect "its Redis with the .env password" PONG "$(redis-cli --no-auth-warning -p "$port" -a "$pw" ping)"
    contains "its Redis without the password" NOAUTH "$(redis-cli -p "$port" ping 2>&1)"
    expect "the Redis configuration" "root:redis 640" "$(stat -c "%U:%G %a" /etc/redis/redis-sum-beta.conf)"
    env_before=$(md5sum /srv/sum/beta/.env)
    contains "sumctl new again" "nothing to do" "$(sumctl new beta)"
    expect "the .env after sumctl new again" "$env_before" "$(md5sum /srv/sum/beta/.env)"
    expect ".env owner, group and mode" "root:sum-beta 640" "$(stat -c "%U:%G %a" /srv/sum/beta/.env)"
    expect "the home, closed from the start" "root:root 750" "$(stat -c "%U:%G %a" /srv/sum/beta)"
    contains "its ACL" "user:sum-beta:r-x" "$(getfacl -cp /srv/sum/beta)"
    expect "site file owner, group and mode" "root:root 644" "$(stat -c "%U:%G %a" /etc/sum/sites/beta.toml)"
    grep -q "^SECRET_KEY=.\{50\}" /srv/sum/beta/.env || { echo "no SECRET_KEY in /srv/sum/beta/.env"; exit 1; }
    sumctl check
    systemctl daemon-reload
    poll 10 systemctl is-active -q sum-gunicorn@beta.socket \
        || expect "systemctl is-active sum-gunicorn@beta.socket" active "$(systemctl is-active sum-gunicorn@beta.socket)"'

step "a running app under the generated units"
E2E_UNITS=(sum-gunicorn@beta.socket sum-gunicorn@beta.service caddy.service)
check "a release and a venv with real gunicorn (from the wheelhouse)" '
    # What the first deploy bootstraps: directories the app user writes.
    install -d -o sum-beta -g sum-beta -m 0755 /srv/sum/beta/venvs /srv/sum/beta/media /srv/sum/beta/static
    install -d -m 0755 /srv/sum/beta/releases
    runuser -u sum-beta -- python3 -m venv /srv/sum/beta/venvs/demo
    cp -r /root/in/wheels /var/tmp/wheels && chmod -R a+rX /var/tmp/wheels
    runuser -u sum-beta -- env PIP_NO_CACHE_DIR=1 /srv/sum/beta/venvs/demo/bin/pip install --quiet \
        --no-index --find-links /var/tmp/wheels gunicorn
    mkdir -p /srv/sum/beta/releases/r1/beta
    touch /srv/sum/beta/releases/r1/beta/__init__.py
    cat >/srv/sum/beta/releases/r1/beta/wsgi.py <<PY
import json, os
def application(environ, start_response):
    ok = environ["PATH_INFO"] == "/health/"
    body = json.dumps({"status": "ok", "pid": os.getpid(), "host": environ.get("HTTP_HOST"),
                       "proto": environ.get("HTTP_X_FORWARDED_PROTO")}).encode()
    start_response("200 OK" if ok else "404 Not Found", [("Content-Type", "application/json")])
    return [body]
PY
    ln -sfn releases/r1 /srv/sum/beta/app
    ln -sfn venvs/demo /srv/sum/beta/venv'
check "socket activation starts gunicorn (Type=notify, sandboxed) on the first request" '
    out=$(curl -sS --max-time 30 --unix-socket /run/sum/beta/gunicorn.sock -H "Host: beta.localhost" http://beta.localhost/health/)
    contains "health over the socket" "\"status\": \"ok\"" "$out"
    expect "sum-gunicorn@beta.service" active "$(systemctl is-active sum-gunicorn@beta.service)"
    expect "runs as" sum-beta "$(ps -o user= -p "$(systemctl show -P MainPID sum-gunicorn@beta.service)")"'
check "Caddy proxies https://beta.localhost/ to it once deployed" '
    systemctl reload caddy
    contains snippet "reverse_proxy unix//run/sum/beta/gunicorn.sock" "$(cat /run/sum/caddy/beta.caddy)"
    expect status 200 "$(curl -sS --max-time 10 --cacert "$CA" --resolve beta.localhost:443:127.0.0.1 -o /root/resp.b -w "%{http_code}" https://beta.localhost/health/)"
    contains "forwarded proto" "\"proto\": \"https\"" "$(cat /root/resp.b)"'

step "backups and restores"
E2E_UNITS=(sum-backup@beta.service sum-gunicorn@beta.socket $E2E_PG_UNIT)
check "a table for beta with a row to lose" '
    site_sql beta "CREATE TABLE notes (id serial PRIMARY KEY, title text); INSERT INTO notes (title) VALUES ('\''keep me'\''), ('\''other'\'')"'
check "the backup timer of beta is scheduled" '
    poll 10 systemctl is-active -q sum-backup@beta.timer
    contains "systemctl list-timers" "sum-backup@beta.timer" "$(systemctl list-timers --no-pager)"'
check "systemctl start sum-backup@beta produces a verified backup" '
    systemctl start sum-backup@beta
    out=$(sum-backup beta --list)
    contains "sum-backup --list" "verified" "$out"
    ls /srv/sum/beta/backups/beta-*.sql.gz >/dev/null
    expect "backup mode" 600 "$(stat -c %a /srv/sum/beta/backups/beta-*.sql.gz)"
    contains "journal of the unit" "verified backup" "$(journalctl -u sum-backup@beta --no-pager -o cat)"
    contains "journalctl SUM_SITE=beta" "verified backup" "$(journalctl SUM_SITE=beta --no-pager -o cat)"'
check "sumctl status and sumctl backups show the verified backup and the timer" '
    out=$(sumctl status beta)
    contains "sumctl status" "last backup:   beta-" "$out"
    contains "sumctl status" "sum-backup@beta.timer" "$out"
    contains "sumctl status" "next backup:" "$out"
    contains "sumctl backups" "verified" "$(sumctl backups beta)"'
check "the rehearsal of docs/backups.md restores into a scratch database" '
    out=$(sum-restore beta latest --into rehearsal)
    contains "sum-restore --into" "created database rehearsal owned by beta" "$out"
    expect "rows in the rehearsal" 2 "$(site_sql beta "SELECT count(*) FROM notes" rehearsal)"
    expect "rehearsal closed to other roles" f \
        "$(site_sql beta "SELECT has_database_privilege('\''public'\'', current_database(), '\''CONNECT'\'')" rehearsal)"'
check "sum-restore brings back a row deleted after the backup, and smoke-checks the site" '
    site_sql beta "DELETE FROM notes WHERE title = '\''keep me'\''; CREATE TABLE newer (x int)"
    out=$(sum-restore beta latest --i-know-this-will-overwrite)
    contains "sum-restore" "stopped the site'\''s app units" "$out"
    contains "sum-restore" "smoke check passed: GET /health/ over /run/sum/beta/gunicorn.sock answered 200" "$out"
    expect "the deleted row" 1 "$(site_sql beta "SELECT count(*) FROM notes WHERE title = '\''keep me'\''")"
    expect "the newer table" 0 "$(site_sql beta "SELECT count(*) FROM pg_tables WHERE tablename = '\''newer'\''")"
    test ! -e /srv/sum/beta/maintenance || { echo "the maintenance flag was left behind"; exit 1; }'
check "after the restore the site answers again" '
    expect "systemctl is-active sum-gunicorn@beta.socket" active "$(systemctl is-active sum-gunicorn@beta.socket)"
    expect "sum-gunicorn@beta.service (running before, started again)" active "$(systemctl is-active sum-gunicorn@beta.service)"
    expect "https://beta.localhost/health/" 200 "$(curl -sS --max-time 10 --cacert "$CA" --resolve beta.localhost:443:127.0.0.1 -o /dev/null -w "%{http_code}" https://beta.localhost/health/)"'

step "deploys: sum-deploy@acme with the example app"
E2E_UNITS=(sum-deploy@acme.service sum-gunicorn@acme.service caddy.service)
check "systemctl start sum-deploy@acme deploys the example site" '
    sumctl new acme --domain acme.localhost --alias www.acme.localhost --git /root/in/acme-repo
    # Not under /tmp or /var/tmp: sum-deploy@.service has PrivateTmp=yes.
    printf "PIP_NO_INDEX=1\nPIP_FIND_LINKS=/srv/wheels\n" >>/srv/sum/acme/.env
    rm -rf /srv/wheels && cp -r /root/in/wheels /srv/wheels && chmod -R a+rX /srv/wheels
    # A short health timeout keeps the failing deploy below quick.
    sed -i "s|^# timeout = \"60s\"|timeout = \"20s\"|" /etc/sum/sites/acme.toml
    grep -q "^timeout = \"20s\"" /etc/sum/sites/acme.toml
    sumctl check /etc/sum/sites/acme.toml
    systemctl daemon-reload
    systemctl start sum-deploy@acme
    expect "sum-deploy@acme Result" success "$(systemctl show -P Result sum-deploy@acme)"
    expect "sum-gunicorn@acme.service" active "$(systemctl is-active sum-gunicorn@acme.service)"'
check "https://acme.localhost/health/ through Caddy answers 200 ok from v2" '
    expect "HTTP status" 200 "$(get https://acme.localhost/health/)"
    contains "health body" "\"status\": \"ok\"" "$(cat /root/resp.b)"
    contains "health body" "\"release\": \"v2\"" "$(cat /root/resp.b)"'
check "gunicorn@acme sees only its own site under /srv/sum, read-only but for media" '
    pid=$(systemctl show -P MainPID sum-gunicorn@acme.service)
    [ "$pid" -gt 0 ] || { echo "sum-gunicorn@acme has no main pid"; exit 1; }
    test -d /srv/sum/beta || { echo "no second site to hide"; exit 1; }
    r=/proc/$pid/root/srv/sum
    expect "/srv/sum as gunicorn@acme sees it" acme "$(ls "$r" | tr "\n" " " | sed "s/ *$//")"
    test -f "$r/acme/app/manage.py" || { echo "its own release is not visible"; exit 1; }
    if touch "$r/acme/state/sandbox-probe" 2>/dev/null; then echo "state/ is writable in the sandbox"; exit 1; fi
    touch "$r/acme/media/sandbox-probe"
    test -f /srv/sum/acme/media/sandbox-probe
    rm /srv/sum/acme/media/sandbox-probe'
check "sumctl run and manage run as gunicorn runs: user, .env, release, venv, sandbox, exit status" '
    expect "user" sum-acme "$(sumctl run acme -- id -un)"
    expect "working directory" "$(readlink -f /srv/sum/acme/app)" "$(sumctl run acme -- pwd -P)"
    expect "python" /srv/sum/acme/venv/bin/python "$(sumctl run acme -- sh -c "command -v python")"
    expect "the .env" yes "$(sumctl run acme -- sh -c "test -n \"\$DATABASE_URL\" && echo yes")"
    expect "/srv/sum as the run sees it" acme "$(sumctl run acme -- ls /srv/sum)"
    expect "a pipe" piped "$(echo piped | sumctl run acme -- cat)"
    contains "a terminal" /dev/pts/ "$(script -qec "sumctl run acme -- tty" /dev/null)"
    rc=0; sumctl run acme -- sh -c "exit 7" || rc=$?
    expect "exit status passed back" 7 "$rc"
    contains "sumctl manage acme check" "System check identified no issues" "$(sumctl manage acme check 2>&1)"
    rc=0; sumctl run acme true python 2>/root/err || rc=$?
    expect "without --" 2 "$rc"
    sumctl run acme -- sh -c "echo hello > /srv/sum/acme/media/from-run.txt"
    expect "a file the run put in media/, through Caddy" 200 "$(get https://acme.localhost/media/from-run.txt)"
    rm /srv/sum/acme/media/from-run.txt
    contains "journalctl SUM_SITE=acme" "sumctl run acme by" "$(journalctl SUM_SITE=acme -t sumctl --no-pager -o cat)"'
check "/static/ is served by Caddy from the site'\''s static directory" '
    expect "HTTP status" 200 "$(get https://acme.localhost/static/notes/site.css)"
    cmp /root/resp.b /srv/sum/acme/static/notes/site.css
    expect "sitemap" 200 "$(get https://acme.localhost/sitemap.xml)"'
check "Caddy sends Cache-Control: a year for hashed static names, a minute for others, an hour for media, none on a 404" '
    s=/srv/sum/acme/static/notes
    # A name as ManifestStaticFilesStorage writes it, over the 512-byte minimum of encode.
    for i in $(seq 8); do cat $s/site.css; done >$s/site.3f2a9c1b7d4e.css
    expect "hashed: HTTP status" 200 "$(get https://acme.localhost/static/notes/site.3f2a9c1b7d4e.css -H "Accept-Encoding: gzip")"
    expect "hashed: Cache-Control" "public, max-age=31536000, immutable" "$(header cache-control)"
    expect "hashed: Content-Encoding" gzip "$(header content-encoding)"
    expect "plain: HTTP status" 200 "$(get https://acme.localhost/static/notes/site.css)"
    expect "plain: Cache-Control" "public, max-age=60, must-revalidate" "$(header cache-control)"
    etag=$(header etag)
    expect "plain, with its ETag: HTTP status" 304 "$(get https://acme.localhost/static/notes/site.css -H "If-None-Match: $etag")"
    expect "plain, with its ETag: Cache-Control" "public, max-age=60, must-revalidate" "$(header cache-control)"
    expect "missing hashed name: HTTP status" 404 "$(get https://acme.localhost/static/notes/none.3f2a9c1b7d4e.css)"
    expect "missing hashed name: Cache-Control" "" "$(header cache-control)"
    echo hello >/srv/sum/acme/media/cache-probe.txt
    expect "media: HTTP status" 200 "$(get https://acme.localhost/media/cache-probe.txt)"
    expect "media: Cache-Control" "public, max-age=3600" "$(header cache-control)"
    rm $s/site.3f2a9c1b7d4e.css /srv/sum/acme/media/cache-probe.txt'
check "app code ran as sum-acme; code and history are root'\''s" '
    expect "owner of the venv" sum-acme "$(stat -c %U /srv/sum/acme/venv/bin/python)"
    expect "owner of the release" root "$(stat -c %U /srv/sum/acme/app/manage.py)"
    expect "owner of the collected static" sum-acme "$(stat -c %U /srv/sum/acme/static/notes/site.css)"
    expect "gunicorn runs as" sum-acme "$(ps -o user= -p "$(systemctl show -P MainPID sum-gunicorn@acme.service)")"
    contains "gunicorn'\''s command line" "--config /usr/share/sum-golden-path/gunicorn.conf.py" \
        "$(ps -o args= -p "$(systemctl show -P MainPID sum-gunicorn@acme.service)")"'
check "sumctl maintenance acme on|off switches a serving site through Caddy without a reload" '
    caddy_pid=$(systemctl show -P MainPID caddy.service)
    sumctl maintenance acme on | grep -q "maintenance is on for acme"
    expect "HTTP status while on" 503 "$(get https://acme.localhost/health/)"
    expect "Retry-After while on" 120 "$(header retry-after)"
    contains "body while on" "down for maintenance" "$(cat /root/resp.b)"
    contains "status" "maintenance is on for acme: on since " "$(sumctl maintenance acme status)"
    expect "owner and mode of the flag" "root 644" "$(stat -c "%U %a" /srv/sum/acme/maintenance)"
    sumctl maintenance acme off | grep -q "maintenance is off for acme"
    expect "HTTP status when off" 200 "$(get https://acme.localhost/health/)"
    expect "status when off" "maintenance is off for acme" "$(sumctl maintenance acme status)"
    expect "Caddy main pid (no restart)" "$caddy_pid" "$(systemctl show -P MainPID caddy.service)"'
check "the installed bash completion completes site names" '
    test -f /usr/share/zsh/vendor-completions/_sumctl
    test -f /usr/share/fish/vendor_completions.d/sumctl.fish
    got=$(bash -c ". /usr/share/bash-completion/completions/sumctl
        COMP_WORDS=(sumctl maintenance ac); COMP_CWORD=2; COMP_TYPE=9
        _clap_complete_sumctl sumctl ac maintenance; printf \"%s\\n\" \"\${COMPREPLY[@]}\"")
    expect "completions of sumctl maintenance ac" acme "$(echo "$got" | tr -d " ")"'
check "journalctl -u sum-deploy@acme shows the steps, the public check and the summary" '
    j=$(journalctl -u sum-deploy@acme --no-pager -o cat)
    for s in "==> preflight" "==> venv" "==> check" "==> import" "==> collectstatic" "==> backup" "==> migrate" "==> swap" "==> restart" "==> smoke"; do
        contains "journal" "$s" "$j"
    done
    contains "journal" "https://acme.localhost/health/ answered 200" "$j"
    contains "journal" "deployed " "$j"
    contains "journalctl SUM_SITE=acme" "==> migrate" "$(journalctl SUM_SITE=acme --no-pager -o cat)"'
check "a bad deploy through the unit (v4: health 503) rolls back and v2 keeps serving" '
    live=$(readlink /srv/sum/acme/app)
    sed -i "s|^ref = .*|ref = \"unhealthy\"|" /etc/sum/sites/acme.toml
    grep -q "^ref = \"unhealthy\"" /etc/sum/sites/acme.toml
    if systemctl start sum-deploy@acme; then echo "the deploy of v4 succeeded"; exit 1; fi
    expect "sum-deploy@acme exit status" 4 "$(systemctl show -P ExecMainStatus sum-deploy@acme)"
    expect "the live release" "$live" "$(readlink /srv/sum/acme/app)"
    expect "HTTP status" 200 "$(get https://acme.localhost/health/)"
    contains "health body" "\"release\": \"v2\"" "$(cat /root/resp.b)"
    j=$(journalctl -u sum-deploy@acme --no-pager -o cat -n 80)
    contains "journal" "==> rollback" "$j"
    contains "journal" "rolled back to ${live#releases/}" "$j"
    # The bridge: v2 also served the socket (passed by Sockets=) while the
    # unit restarted to v4, and was stopped before the smoke check. Its
    # own gunicorn log is in this run of the unit too.
    j=$(journalctl _SYSTEMD_INVOCATION_ID="$(systemctl show -P InvocationID sum-deploy@acme)" --no-pager -o cat)
    contains "journal" "bridge: a gunicorn of $live (pid" "$j"
    contains "journal" "stopped (exit status: 0) in " "$j"
    contains "journal" "[INFO] Shutting down: Master" "$j"
    contains "journal" "last lines of sum-gunicorn@acme.service" "$j"
    # gunicorn'\''s own access log, not only systemd'\''s lines, is in that tail.
    contains "journal" "\"GET /health/ HTTP/1.1\" 503" "$j"
    sed -i "s|^ref = .*|ref = \"main\"|" /etc/sum/sites/acme.toml
    systemctl reset-failed sum-deploy@acme'
check "sumctl releases and history show the live, the failed release and the rollback" '
    live=$(readlink /srv/sum/acme/app)
    out=$(sumctl releases acme)
    contains "sumctl releases" "* ${live#releases/}" "$out"
    contains "sumctl releases" "failed" "$out"
    out=$(sumctl history acme)
    contains "sumctl history" "rolled-back" "$out"
    contains "sumctl history" " ok " "$out"'
check "sum-deploy@ of a site without a file or units fails with exit 2 (Sockets= names a missing socket)" '
    if systemctl start sum-deploy@ghost; then echo "the deploy of a missing site succeeded"; exit 1; fi
    expect "sum-deploy@ghost exit status" 2 "$(systemctl show -P ExecMainStatus sum-deploy@ghost)"
    contains "journal" "ghost" "$(journalctl -u sum-deploy@ghost --no-pager -o cat -n 20)"
    systemctl reset-failed sum-deploy@ghost'
check "sumctl rollback: back to v2, then --to v1 with the migration warning" '
    v2=$(readlink /srv/sum/acme/app)
    sum-deploy acme --ref v1 >/dev/null
    v1=$(readlink /srv/sum/acme/app)
    expect "HTTP status" 200 "$(get https://acme.localhost/health/)"
    contains "health body" "\"release\": \"v1\"" "$(cat /root/resp.b)"
    # Without --to: the newest good release older than the live one.
    sumctl rollback acme >/dev/null
    expect "the live release after rollback" "$v2" "$(readlink /srv/sum/acme/app)"
    expect "HTTP status" 200 "$(get https://acme.localhost/health/)"
    contains "health body" "\"release\": \"v2\"" "$(cat /root/resp.b)"
    out=$(sumctl rollback acme --to "${v1#releases/}" 2>&1)
    contains "sumctl rollback --to" "predates migrations applied since: notes.0002_note_pinned" "$out"
    expect "the live release after rollback --to" "$v1" "$(readlink /srv/sum/acme/app)"
    expect "HTTP status" 200 "$(get https://acme.localhost/health/)"
    contains "health body" "\"release\": \"v1\"" "$(cat /root/resp.b)"
    contains "sumctl history" "rollback" "$(sumctl history acme)"'

check "an admin user from sumctl manage logs in through Caddy (acme v8, with Django admin)" '
    # Two health paths; the second answers a redirect to the login page, which passes.
    sed -i "/^\[health\]/a paths = [\"/health/\", \"/admin/\"]" /etc/sum/sites/acme.toml
    sumctl check /etc/sum/sites/acme.toml
    sum-deploy acme --ref v8 >/root/deploy-v8.log 2>&1 || { cat /root/deploy-v8.log; exit 1; }
    contains "the smoke step" "/admin/ answered 302 (a redirect to /admin/login/?next=/admin/)" "$(cat /root/deploy-v8.log)"
    sed -i "/^paths = /d" /etc/sum/sites/acme.toml
    expect "HTTP status" 200 "$(get https://acme.localhost/health/)"
    contains "health body" "\"release\": \"v8\"" "$(cat /root/resp.b)"
    DJANGO_SUPERUSER_PASSWORD=$(head -c 24 /dev/urandom | base64 | tr -d "/+=")
    export DJANGO_SUPERUSER_PASSWORD
    out=$(sumctl manage --env DJANGO_SUPERUSER_PASSWORD acme createsuperuser --noinput \
        --username admin --email admin@acme.localhost 2>&1)
    contains "sumctl manage createsuperuser" "Superuser created successfully." "$out"
    j=$(journalctl SUM_SITE=acme -t sumctl --no-pager -o cat)
    contains "journal of the run" "createsuperuser --noinput --username admin --email admin@acme.localhost (with DJANGO_SUPERUSER_PASSWORD)" "$j"
    case "$j" in *"$DJANGO_SUPERUSER_PASSWORD"*) echo "the password is in the journal"; exit 1;; esac
    rm -f /root/jar
    expect "GET /admin/login/" 200 "$(get https://acme.localhost/admin/login/ -c /root/jar -b /root/jar)"
    token=$(sed -n "s/.*name=\"csrfmiddlewaretoken\" value=\"\([^\"]*\)\".*/\1/p" /root/resp.b)
    [ -n "$token" ] || { echo "no csrfmiddlewaretoken in the login form"; exit 1; }
    login() { # login PASSWORD: the status of the login POST
        get "https://acme.localhost/admin/login/?next=/admin/" -c /root/jar -b /root/jar \
            -H "Origin: https://acme.localhost" -H "Referer: https://acme.localhost/admin/login/" \
            --data-urlencode "csrfmiddlewaretoken=$token" --data-urlencode username=admin \
            --data-urlencode "password=$1" --data-urlencode next=/admin/
    }
    expect "the login POST with a wrong password (the form again)" 200 "$(login wrong-password)"
    expect "the login POST" 302 "$(login "$DJANGO_SUPERUSER_PASSWORD")"
    expect "redirected to" /admin/ "$(header location)"
    expect "GET /admin/ with the session" 200 "$(get https://acme.localhost/admin/ -b /root/jar)"
    contains "the admin index" "<strong>admin</strong>" "$(cat /root/resp.b)"
    expect "the admin CSS, collected and served by Caddy" 200 "$(get https://acme.localhost/static/admin/css/base.css)"'

check "release commands and a process (acme): in the deploy log, on the live release after a deploy, a rollback and a restore" '
    sed -i "/^\[deploy\]/a release = [\"python manage.py check --tag models\"]" /etc/sum/sites/acme.toml
    sed -i "/^\[processes\]/a ticker = \"while true; do grep -h ^RELEASE notes/views.py > /srv/sum/acme/media/ticker.txt; sleep 1; done\"" /etc/sum/sites/acme.toml
    sumctl check /etc/sum/sites/acme.toml
    systemctl daemon-reload
    ticker() { # ticker VERSION: the process writes the RELEASE of the code it runs
        for _ in $(seq 1 30); do
            grep -q "\"$1\"" /srv/sum/acme/media/ticker.txt 2>/dev/null && return 0
            sleep 1
        done
        echo "the process did not run $1: $(cat /srv/sum/acme/media/ticker.txt 2>&1)"; return 1
    }
    sum-deploy acme --ref main >/root/deploy-release.log 2>&1 || { cat /root/deploy-release.log; exit 1; }
    contains "the deploy log" "==> release: python manage.py check --tag models" "$(cat /root/deploy-release.log)"
    expect "sum-app-ticker@acme" active "$(systemctl is-active sum-app-ticker@acme.service)"
    expect "its user" sum-acme "$(ps -o user= -p "$(systemctl show -P MainPID sum-app-ticker@acme.service)")"
    ticker v2
    contains "sumctl status" "sum-app-ticker@acme.service" "$(sumctl status acme)"
    sumctl rollback acme >/dev/null
    ticker v8
    systemctl start sum-backup@acme
    sum-restore acme latest --i-know-this-will-overwrite >/dev/null
    expect "sum-app-ticker@acme after the restore" active "$(systemctl is-active sum-app-ticker@acme.service)"
    rm -f /srv/sum/acme/media/ticker.txt
    ticker v8
    expect "HTTP status" 200 "$(get https://acme.localhost/health/)"'

step "a Wagtail-shaped app: hard-coded STATIC_ROOT and MEDIA_ROOT (examples/bakery)"
E2E_UNITS=(sum-deploy@bakery.service sum-gunicorn@bakery.service caddy.service)
check "sum-deploy@bakery deploys v1: static collected inside the release, media linked to media/" '
    sumctl new bakery --domain bakery.localhost --git /root/in/bakery-repo >/dev/null
    # The example'\''s own site file, pointed at the test repository and v1.
    sed -e "s|^domain = .*|domain = \"bakery.localhost\"|" \
        -e "s|^url = .*|url = \"/root/in/bakery-repo\"|" -e "s|^ref = .*|ref = \"v1\"|" \
        -e "/^\[health\]/,/^\[/ s|^timeout = .*|timeout = \"20s\"|" /root/in/bakery.toml >/etc/sum/sites/bakery.toml
    grep -q "^timeout = \"20s\"" /etc/sum/sites/bakery.toml
    # The app reads DJANGO_-prefixed names for these two (docs/deploy.md).
    sed -n "s/^SECRET_KEY=/DJANGO_SECRET_KEY=/p" /srv/sum/bakery/.env >>/srv/sum/bakery/.env
    printf "DJANGO_ALLOWED_HOSTS=bakery.localhost\nPIP_NO_INDEX=1\nPIP_FIND_LINKS=/srv/wheels\n" >>/srv/sum/bakery/.env
    sumctl check /etc/sum/sites/bakery.toml
    systemctl daemon-reload
    systemctl start sum-deploy@bakery
    expect "sum-deploy@bakery Result" success "$(systemctl show -P Result sum-deploy@bakery)"
    live=$(readlink -f /srv/sum/bakery/app)
    j=$(journalctl -u sum-deploy@bakery --no-pager -o cat)
    contains "journal" "does not name gunicorn: adding it" "$j"
    contains "journal" "STATIC_ROOT collect_static lies inside the release" "$j"
    contains "journal" "MEDIA_ROOT media lies inside the release: linked to /srv/sum/bakery/media" "$j"
    contains "journal" "media/ was empty: seeded" "$j"
    rec=/srv/sum/bakery/state/releases/$(basename "$live").json
    contains "the release record" "\"static_root\": \"$live/collect_static\"" "$(cat "$rec")"
    contains "the release record" "\"media_root\": \"/srv/sum/bakery/media\"" "$(cat "$rec")"
    expect "the release'\''s media" /srv/sum/bakery/media "$(readlink "$live/media")"
    expect "owner of the collected static" sum-bakery "$(stat -c %U "$live/collect_static/css/site.css")"
    expect "media/ (the caddy group, set-group-ID)" "sum-bakery:caddy 2750" "$(stat -c "%U:%G %a" /srv/sum/bakery/media)"'
# The effective paths the deploy found and recorded, for the log.
ct "grep -hE '\"(static|media)_root\"' /srv/sum/bakery/state/releases/\$(basename \$(readlink /srv/sum/bakery/app)).json" \
    | sed 's/^ */    recorded: /' || true
check "bakery v1 through Caddy: the page, static from the release, the seeded media" '
    expect "https://bakery.localhost/" 200 "$(get https://bakery.localhost/)"
    contains "home page" "v1" "$(cat /root/resp.b)"
    expect "site.css" 200 "$(get https://bakery.localhost/static/css/site.css)"
    contains "site.css" "/* bakery v1 */" "$(head -n 1 /root/resp.b)"
    cmp /root/resp.b /srv/sum/bakery/app/collect_static/css/site.css
    expect "welcome.txt" 200 "$(get https://bakery.localhost/media/original_images/welcome.txt)"
    expect "welcome.txt" "welcome to the bakery" "$(cat /root/resp.b)"'
check "two sites from sumctl new: each app reaches its own database, Redis and files, never the other" '
    mkdir -p /usr/local/share/sum-e2e
    cat >/usr/local/share/sum-e2e/probe.py <<PY
"""Run as a site app (sumctl run): reach a database or a Redis, print what answered."""
import os, sys
from urllib.parse import urlparse
what, target = sys.argv[1], sys.argv[2]
if what == "db":  # connect as the site own role to database TARGET
    import psycopg
    u = urlparse(os.environ["DATABASE_URL"])
    with psycopg.connect(host=u.hostname, port=u.port, user=u.username, password=u.password,
                         dbname=target, connect_timeout=5) as c:
        print("connected to", c.execute("SELECT current_database()").fetchone()[0])
elif what == "redis":  # TARGET: a port; with the site own password, or none
    import redis
    own = urlparse(os.environ["REDIS_URL"])
    pw = own.password if sys.argv[3:] == ["own-password"] else None
    print(redis.Redis(host="127.0.0.1", port=int(target), password=pw, socket_timeout=3).ping())
PY
    chmod 0644 /usr/local/share/sum-e2e/probe.py
    probe=/usr/local/share/sum-e2e/probe.py
    for pair in acme:bakery bakery:acme; do
        me=${pair%:*} other=${pair#*:}
        my_port=$(env_of "$me" REDIS_URL | sed "s/.*://")
        other_port=$(env_of "$other" REDIS_URL | sed "s/.*://")
        [ "$my_port" != "$other_port" ] || { echo "$me and $other share Redis port $my_port"; exit 1; }
        # Its own database and Redis work.
        contains "$me: its database" "connected to $me" "$(sumctl run "$me" -- python "$probe" db "$me" 2>&1)"
        expect "$me: its Redis" True "$(sumctl run "$me" -- python "$probe" redis "$my_port" own-password 2>&1)"
        # The other site database: refused to this role.
        rc=0; out=$(sumctl run "$me" -- python "$probe" db "$other" 2>&1) || rc=$?
        [ "$rc" != 0 ] || { echo "$me connected to the database of $other: $out"; exit 1; }
        contains "$me into the database of $other" "permission denied for database" "$out"
        # The other site Redis: without a password, and with this site password.
        for how in none own-password; do
            rc=0; out=$(sumctl run "$me" -- python "$probe" redis "$other_port" "$how" 2>&1) || rc=$?
            [ "$rc" != 0 ] || { echo "$me reached the Redis of $other ($how): $out"; exit 1; }
            contains "$me into the Redis of $other ($how)" "Error" "$out"
        done
        # The other site files: code, shared files, state and history, .env.
        for path in app/manage.py shared state releases .env; do
            rc=0; out=$(sumctl run "$me" -- ls "/srv/sum/$other/$path" 2>&1) || rc=$?
            [ "$rc" != 0 ] || { echo "$me sees /srv/sum/$other/$path: $out"; exit 1; }
            contains "$me on /srv/sum/$other/$path" "No such file or directory" "$out"
        done
        expect "$me: its own code" /srv/sum/$me/app/manage.py "$(sumctl run "$me" -- ls /srv/sum/"$me"/app/manage.py)"
        # Outside any sandbox too (deploy steps run as the site user): the
        # other home is closed, its own is open to it.
        rc=0; out=$(runuser -u "sum-$me" -- cat "/srv/sum/$other/app/manage.py" 2>&1) || rc=$?
        [ "$rc" != 0 ] || { echo "sum-$me reads the code of $other outside the sandbox"; exit 1; }
        contains "sum-$me on the home of $other" "Permission denied" "$out"
        runuser -u "sum-$me" -- test -r "/srv/sum/$me/app/manage.py" \
            || { echo "sum-$me cannot read its own code"; exit 1; }
        expect "the home of $me" "root:root 750" "$(stat -c "%U:%G %a" "/srv/sum/$me")"
    done'
check "an upload through Caddy and gunicorn lands in media/ and Caddy serves it" '
    head -c 3000 /dev/urandom | base64 >/root/cake.txt
    expect "POST /upload/" 201 "$(get https://bakery.localhost/upload/ -F file=@/root/cake.txt -F title=cake)"
    url=$(python3 -c "import json; print(json.load(open(\"/root/resp.b\"))[\"url\"])")
    echo "$url" >/root/upload-url
    contains "upload url" "/media/original_images/cake" "$url"
    cmp /root/cake.txt "/srv/sum/bakery/media/${url#/media/}"
    expect "owner of the upload" "sum-bakery:caddy" "$(stat -c %U:%G "/srv/sum/bakery/media/${url#/media/}")"
    expect "GET $url" 200 "$(get "https://bakery.localhost$url")"
    cmp /root/resp.b /root/cake.txt'
check "redeployed to v2: new static, the upload still served" '
    v1=$(readlink /srv/sum/bakery/app)
    sed -i "s|^ref = .*|ref = \"main\"|" /etc/sum/sites/bakery.toml
    systemctl start sum-deploy@bakery
    v2=$(readlink /srv/sum/bakery/app)
    [ "$v1" != "$v2" ] || { echo "no new release: $v2"; exit 1; }
    contains "journal" "is not copied: media/ already has files" "$(journalctl -u sum-deploy@bakery --no-pager -o cat -n 60)"
    expect "https://bakery.localhost/" 200 "$(get https://bakery.localhost/)"
    contains "home page" "v2" "$(cat /root/resp.b)"
    expect "site.css" 200 "$(get https://bakery.localhost/static/css/site.css)"
    contains "site.css" "/* bakery v2 */" "$(head -n 1 /root/resp.b)"
    url=$(cat /root/upload-url)
    expect "GET $url" 200 "$(get "https://bakery.localhost$url")"
    cmp /root/resp.b /root/cake.txt'
check "rolled back to v1: v1's static again, the upload still served" '
    sumctl rollback bakery >/dev/null
    expect "https://bakery.localhost/" 200 "$(get https://bakery.localhost/)"
    contains "home page" "v1" "$(cat /root/resp.b)"
    expect "site.css" 200 "$(get https://bakery.localhost/static/css/site.css)"
    contains "site.css" "/* bakery v1 */" "$(head -n 1 /root/resp.b)"
    cmp /root/resp.b /srv/sum/bakery/app/collect_static/css/site.css
    url=$(cat /root/upload-url)
    expect "GET $url" 200 "$(get "https://bakery.localhost$url")"
    cmp /root/resp.b /root/cake.txt'
check "sum-backup@bakery archives the persistent media directory with the upload" '
    systemctl start sum-backup@bakery
    expect "sum-backup@bakery Result" success "$(systemctl show -P Result sum-backup@bakery)"
    archive=$(ls -t /srv/sum/bakery/backups/*.media.tar.gz | head -n 1)
    url=$(cat /root/upload-url)
    contains "the media archive" "${url#/media/}" "$(tar -tzf "$archive")"
    contains "the media archive" "original_images/welcome.txt" "$(tar -tzf "$archive")"'

check "bakery v3: compress as a release command, the heartbeat process on the live release through deploys, a rollback and a restore" '
    sed -i "s|^ref = .*|ref = \"v3\"|" /etc/sum/sites/bakery.toml
    probe="! touch /srv/sum/bakery/app/collect_static/sandbox-probe 2>/dev/null && ls /srv/sum"
    printf "release = [\"python manage.py compress\", \"%s\"]\n\n[processes]\nheartbeat = \"python manage.py heartbeat\"\n" "$probe" >>/etc/sum/sites/bakery.toml
    sumctl check /etc/sum/sites/bakery.toml
    systemctl daemon-reload
    live_cwd() { readlink "/proc/$(systemctl show -P MainPID sum-app-heartbeat@bakery.service)/cwd"; }
    beats() { site_sql bakery "SELECT count(*) FROM gallery_heartbeat"; }
    for n in 1 2; do
        systemctl start sum-deploy@bakery
        expect "sum-deploy@bakery Result ($n)" success "$(systemctl show -P Result sum-deploy@bakery)"
        expect "the heartbeat runs in the live release ($n)" "$(readlink -f /srv/sum/bakery/app)" "$(live_cwd)"
    done
    j=$(journalctl -u sum-deploy@bakery --no-pager -o cat -n 200)
    contains "the deploy log" "==> release: python manage.py compress" "$j"
    contains "the deploy log" "Compressed 1 block(s)" "$j"
    contains "the deploy log (a release command sees only its own site)" "ls /srv/sum: bakery (" "$j"
    test ! -e /srv/sum/bakery/app/collect_static/sandbox-probe || { echo "a release command wrote into the live release"; exit 1; }
    expect "https://bakery.localhost/ (offline-compressed)" 200 "$(get https://bakery.localhost/)"
    css=$(grep -o "/static/CACHE/css/output\.[0-9a-f]*\.css" /root/resp.b)
    [ -n "$css" ] || { echo "no compressed stylesheet in the page"; exit 1; }
    expect "$css" 200 "$(get "https://bakery.localhost$css")"
    expect "$css: Cache-Control" "public, max-age=31536000, immutable" "$(header cache-control)"
    for _ in $(seq 1 20); do
        [ "$(site_sql bakery "SELECT release FROM gallery_heartbeat ORDER BY id DESC LIMIT 1")" = v3 ] && break
        sleep 0.5
    done
    expect "the newest heartbeat row" v3 "$(site_sql bakery "SELECT release FROM gallery_heartbeat ORDER BY id DESC LIMIT 1")"
    second=$(readlink -f /srv/sum/bakery/app)
    sumctl rollback bakery >/dev/null
    [ "$(readlink -f /srv/sum/bakery/app)" != "$second" ] || { echo "the rollback left $second live"; exit 1; }
    expect "the heartbeat after the rollback" "$(readlink -f /srv/sum/bakery/app)" "$(live_cwd)"
    systemctl start sum-backup@bakery
    sum-restore bakery latest --i-know-this-will-overwrite >/dev/null
    expect "sum-app-heartbeat@bakery after the restore" active "$(systemctl is-active sum-app-heartbeat@bakery.service)"
    before=$(beats); sleep 3
    [ "$(beats)" -gt "$before" ] || { echo "no heartbeat rows after the restore ($before)"; exit 1; }
    contains "sumctl status" "sum-app-heartbeat@bakery.service" "$(sumctl status bakery)"'
echo "    the last deploy of bakery v3, as its journal has it:"
ct "journalctl -u sum-deploy@bakery --no-pager -o cat -n 150 | tac | sed /^==..preflight/q | tac" | sed "s/^/      | /" || true
check "bakery v4: the database in DB_* settings and no DATABASE_URL; the deploy, sum-backup and sum-restore ask Django" '
    url=$(env_of bakery DATABASE_URL)
    pw=${url#postgres://bakery:}; pw=${pw%%@*}
    [ -n "$pw" ] && [ "$pw" != "$url" ] || { echo "no password in $url"; exit 1; }
    sed -i "/^DATABASE_URL=/d" /srv/sum/bakery/.env
    printf "DB_NAME=bakery\nDB_USER=bakery\nDB_PASSWORD=%s\nDB_HOST=127.0.0.1\nDB_PORT=5432\n" "$pw" >>/srv/sum/bakery/.env
    if grep -q "^DATABASE_URL=" /srv/sum/bakery/.env; then echo "DATABASE_URL is still in the .env"; exit 1; fi
    sed -i "s|^ref = .*|ref = \"v4\"|" /etc/sum/sites/bakery.toml
    systemctl start sum-deploy@bakery
    expect "sum-deploy@bakery Result (v4)" success "$(systemctl show -P Result sum-deploy@bakery)"
    j=$(journalctl -u sum-deploy@bakery --no-pager -o cat -n 80)
    contains "the deploy log" "(no DATABASE_URL: PostgreSQL checked once Django names it)" "$j"
    contains "the deploy log" "s database \`bakery\` on 127.0.0.1:5432 as \`bakery\`" "$j"
    expect "https://bakery.localhost/ (v4)" 200 "$(get https://bakery.localhost/)"
    contains "the page" "v4" "$(cat /root/resp.b)"
    live=$(basename "$(readlink /srv/sum/bakery/app)")
    contains "the release record" "\"name\": \"bakery\"" "$(cat "/srv/sum/bakery/state/releases/$live.json")"
    systemctl start sum-backup@bakery
    expect "sum-backup@bakery Result (v4)" success "$(systemctl show -P Result sum-backup@bakery)"
    contains "sum-backup@bakery" "the sites database: Django" "$(journalctl -u sum-backup@bakery --no-pager -o cat -n 20 | tr -d "\047")"
    contains "sum-backup@bakery" "settings of release $live: database \`bakery\`" "$(journalctl -u sum-backup@bakery --no-pager -o cat -n 20)"
    psql -X -q -At -v ON_ERROR_STOP=1 "$url" -c "INSERT INTO gallery_image (title, file, created) VALUES (\$\$after-backup\$\$, \$\$x.txt\$\$, now())"
    out=$(sum-restore bakery latest --into bakery_rehearsal)
    contains "sum-restore --into" "restored into bakery_rehearsal" "$out"
    expect "rows named after-backup in the rehearsal" 0 "$(psql -X -At "${url%/*}/bakery_rehearsal" -c "SELECT count(*) FROM gallery_image WHERE title = \$\$after-backup\$\$")"
    out=$(sum-restore bakery latest --i-know-this-will-overwrite)
    contains "sum-restore" "Django" "$out"
    expect "rows named after-backup after the restore" 0 "$(psql -X -At "$url" -c "SELECT count(*) FROM gallery_image WHERE title = \$\$after-backup\$\$")"
    expect "https://bakery.localhost/ after the restore" 200 "$(get https://bakery.localhost/)"
    expect "sum-app-heartbeat@bakery after the restore (v4)" active "$(systemctl is-active sum-app-heartbeat@bakery.service)"
    leaks=$( { grep -rlF -- "$pw" /srv/sum/bakery/state /srv/sum/bakery/backups || true; journalctl --no-pager -o cat | grep -cF -- "$pw" || true; } | tr "\n" " ")
    expect "files and journal lines holding the password" "0 " "$leaks"'

check "sum-restore bakery latest --media brings back a deleted upload, owned as media are" '
    f=/srv/sum/bakery/media/original_images/e2e-restore.txt
    # Written as root: after the restore it must be sum-bakery'\''s all the same.
    printf "restore me\n" >"$f"
    systemctl start sum-backup@bakery
    expect "sum-backup@bakery Result" success "$(systemctl show -P Result sum-backup@bakery)"
    contains "journal of the backup" "verified media archive /srv/sum/bakery/backups/bakery-" \
        "$(journalctl -u sum-backup@bakery --no-pager -o cat -n 30)"
    contains "sumctl backups" "MEDIA, ENTRIES:" "$(sumctl backups bakery)"
    rm "$f"
    out=$(sum-restore bakery latest --i-know-this-will-overwrite --media)
    contains "sum-restore" "restored the media archive /srv/sum/bakery/backups/bakery-" "$out"
    contains "sum-restore" "smoke check passed" "$out"
    expect "the restored file" "restore me" "$(cat "$f")"
    expect "owner of the restored file" "sum-bakery:caddy" "$(stat -c %U:%G "$f")"
    expect "media/ after the restore" "sum-bakery:caddy 2750" "$(stat -c "%U:%G %a" /srv/sum/bakery/media)"
    expect "its directories" "sum-bakery:caddy 2750" "$(stat -c "%U:%G %a" /srv/sum/bakery/media/original_images)"
    test ! -e /srv/sum/bakery/maintenance || { echo "the maintenance flag was left behind"; exit 1; }
    test -z "$(ls -d /srv/sum/bakery/media.restoring-* 2>/dev/null)" || { echo "an unpacked directory was left behind"; exit 1; }
    aside=$(ls -d /srv/sum/bakery/media.before-restore-* | tail -n 1)
    test ! -e "$aside/original_images/e2e-restore.txt" || { echo "the old media hold the file"; exit 1; }
    expect "GET through Caddy" 200 "$(get https://bakery.localhost/media/original_images/e2e-restore.txt)"
    rm -rf "$aside"'
step "sumctl remove"
E2E_UNITS=(sum-gunicorn@bakery.service redis-server@sum-beta.service caddy.service)
check "sumctl remove keeps the data; --purge deletes what sumctl new made" '
    out=$(sumctl remove bakery)
    contains "sumctl remove" "Kept (nothing of the data was deleted)" "$out"
    expect "bakery gunicorn socket" not-found "$(systemctl show -P LoadState sum-gunicorn@bakery.socket)"
    expect "bakery gunicorn" inactive "$(systemctl is-active sum-gunicorn@bakery.service)"
    # Nothing of it left in systemd: no socket still listening, no failed timer.
    expect "units of bakery still listed" "" "$(systemctl list-units --all --no-legend --plain "sum-*@bakery.*")"
    test ! -e /run/sum/caddy/bakery.caddy || { echo "bakery still has a Caddy snippet"; exit 1; }
    test -f /srv/sum/bakery/.env || { echo "the .env of bakery is gone"; exit 1; }
    expect "the role and database of bakery" 1 "$(runuser -u postgres -- psql -XAtc "SELECT count(*) FROM pg_database WHERE datname = '\''bakery'\''")"
    expect "redis-server@sum-bakery" active "$(systemctl is-active redis-server@sum-bakery.service)"
    rc=0; sumctl remove beta --purge 2>/root/err || rc=$?
    expect "--purge without its confirmation" 2 "$rc"
    test -d /srv/sum/beta || { echo "--purge without confirmation deleted beta"; exit 1; }
    out=$(sumctl remove beta --purge --i-know-this-deletes-data)
    contains "sumctl remove --purge" "deleted the PostgreSQL role" "$out"
    expect "roles and databases of beta" 0 "$(runuser -u postgres -- psql -XAtc "SELECT (SELECT count(*) FROM pg_roles WHERE rolname = '\''beta'\'') + (SELECT count(*) FROM pg_database WHERE datname IN ('\''beta'\'', '\''rehearsal'\''))")"
    expect "redis-server@sum-beta" inactive "$(systemctl is-active redis-server@sum-beta.service)"
    test ! -e /etc/redis/redis-sum-beta.conf || { echo "the Redis configuration of beta is left"; exit 1; }
    test ! -e /srv/sum/beta || { echo "/srv/sum/beta is left"; exit 1; }
    if id sum-beta 2>/dev/null; then echo "the account sum-beta is left"; exit 1; fi
    expect "sum-gunicorn@beta.socket" not-found "$(systemctl show -P LoadState sum-gunicorn@beta.socket)"
    expect "acme still serves" 200 "$(get https://acme.localhost/health/)"'

step "removing the package"
E2E_UNITS=(caddy.service)
check "dpkg -r: caddy stays active on the admin Caddyfile, the generator is gone" '
    dpkg -r sum-golden-path
    test ! -e /usr/lib/systemd/system-generators/sum-generator \
        || { echo "still there: /usr/lib/systemd/system-generators/sum-generator"; exit 1; }
    expect "systemctl is-active caddy" active "$(systemctl is-active caddy)"
    expect "http://127.0.0.1/" 200 "$(curl -sS --max-time 10 -o /dev/null -w "%{http_code}" http://127.0.0.1/)"
    expect "LoadState of sum-gunicorn@beta.socket" not-found "$(systemctl show -P LoadState sum-gunicorn@beta.socket)"'
check "dpkg --purge works and keeps the site data in /srv/sum" '
    dpkg --purge sum-golden-path
    expect "dpkg status" "not-installed" "$(dpkg-query -W -f="\${db:Status-Status}" sum-golden-path 2>/dev/null || echo not-installed)"
    test -f /srv/sum/bakery/.env || { echo "purge removed /srv/sum/bakery/.env"; exit 1; }
    expect "systemctl is-active caddy" active "$(systemctl is-active caddy)"'
