#!/usr/bin/env bash
# The package's own life on a host, in a real Debian with systemd as PID 1:
# `apt install sum-golden-path` from the signed repository, two deployed
# sites, then `apt upgrade` to a next version whose generator writes
# something new, under a request loop against both sites; an upgrade in the
# middle of a deploy and one while a backup runs; a downgrade; `apt remove`,
# `apt install` again and `apt purge`. docs/packaging.md ("Upgrades") says
# what each step is meant to do.
#
#   sudo bash tests/e2e/upgrade.sh --deb PATH [--next PATH] [--keep]
#
# --next is the next version's .deb; without it tests/e2e/next-version.sh
# builds one (this checkout with PrivateIPC=yes added to every app service).
# E2E_SUITE picks the release (tests/run.sh runs this on Debian 13).
set -euo pipefail

usage() { echo "usage: $0 --deb PATH [--next PATH] [--keep]" >&2; exit 2; }
deb="" next="" keep=0
while [ $# -gt 0 ]; do
    case "$1" in
    --deb) [ $# -ge 2 ] || usage; deb=$2; shift 2 ;;
    --next) [ $# -ge 2 ] || usage; next=$2; shift 2 ;;
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

if [ -z "$next" ]; then
    step "building the next version (tests/e2e/next-version.sh)"
    next=$(bash tests/e2e/next-version.sh | tail -n 1)
fi
next=$(realpath "$next")
old_version=$(dpkg-deb -f "$deb" Version)
new_version=$(dpkg-deb -f "$next" Version)
dpkg --compare-versions "$new_version" gt "$old_version" \
    || { echo "e2e: $next ($new_version) is not newer than $deb ($old_version)" >&2; exit 2; }
info "the installed version $old_version, the next one $new_version"

E2E_PRELUDE+=$E2E_DEPLOY_HELPERS
E2E_PRELUDE+='
OLD='"$old_version"' NEW='"$new_version"'
CA=/var/lib/caddy/.local/share/caddy/pki/authorities/local/root.crt
get() { # get URL: prints the HTTP status; the body in /root/resp.b
    curl -sS --max-time 20 --cacert "$CA" --resolve acme.localhost:443:127.0.0.1 \
        --resolve bakery.localhost:443:127.0.0.1 -o /root/resp.b -w "%{http_code}" "$@"
}
serves() { # serves HOST TEXT: https://HOST/ answers 200 with TEXT in its body
    expect "https://$1/" 200 "$(get "https://$1/")"
    contains "https://$1/" "$2" "$(cat /root/resp.b)"
}
both_serve() { # acme answers its health check from v2, bakery its page from $BAKERY (v1)
    expect "https://acme.localhost/health/" 200 "$(get https://acme.localhost/health/)"
    contains "acme health body" "\"release\": \"v2\"" "$(cat /root/resp.b)"
    serves bakery.localhost "${BAKERY:-v1}"
}
apt_q() { # apt_ours, its output shown only when it fails
    apt_ours "$@" >/root/apt.out 2>&1 || { cat /root/apt.out; return 1; }
}
backup_running() { unit_running sum-backup@acme.service; }
installed() { dpkg-query -W -f="\${Version}" sum-golden-path 2>/dev/null; }
main_pid() { systemctl show -P MainPID "$1"; }
caddy_loads() { # caddy_loads MESSAGE: how many times Caddy logged MESSAGE
    journalctl -q -u caddy.service -o cat | grep -c "\"msg\":\"$1\"" || true
}
site_sql() { # site_sql SITE SQL: psql as the site own role (its DATABASE_URL)
    psql -X -q -At -v ON_ERROR_STOP=1 "$(sed -n "s/^DATABASE_URL=//p" "/srv/sum/$1/.env")" -c "$2"
}
'

# Both sites must answer every request while the package changes under them.
ZERO=0

step "host tools"
e2e_host_deps
step "image"
image=$(e2e_image)
step "booting the container ($E2E_RELEASE)"
E2E_UNITS=($E2E_PG_UNIT redis-server.service caddy.service)
e2e_boot "$image"

step "the repository with $old_version only, the sites' repositories and wheels"
e2e_build_repo "$deb"
wheelhouse=$(bash tests/wheelhouse.sh)
cp -r "$wheelhouse" "$E2E_STAGE/wheels"
bash examples/make-repo.sh "$E2E_STAGE/acme-repo" >/dev/null
bash examples/make-bakery-repo.sh "$E2E_STAGE/bakery-repo" >/dev/null
cp examples/bakery.toml "$E2E_STAGE/bakery.toml"

step "apt install sum-golden-path ($old_version), two sites deployed"
E2E_UNITS=(sum-deploy@acme.service sum-deploy@bakery.service sum-gunicorn@acme.service
           sum-gunicorn@bakery.service caddy.service)
check "apt install sum-golden-path from the signed repository installs $old_version" '
    add_repo
    apt_q update
    apt_q install sum-golden-path
    expect "the installed version" "$OLD" "$(installed)"'
check "acme (v2) and bakery (v1) deploy and serve through Caddy" '
    rm -rf /srv/wheels && cp -r /root/in/wheels /srv/wheels && chmod -R a+rX /srv/wheels
    sumctl new acme --domain acme.localhost --git /root/in/acme-repo >/dev/null
    printf "PIP_NO_INDEX=1\nPIP_FIND_LINKS=/srv/wheels\n" >>/srv/sum/acme/.env
    # A writable copy: the upgrade in the middle of a deploy commits to it.
    cp -a /root/in/bakery-repo /root/bakery-repo
    sumctl new bakery --domain bakery.localhost --git /root/bakery-repo >/dev/null
    sed -e "s|^domain = .*|domain = \"bakery.localhost\"|" \
        -e "s|^url = .*|url = \"/root/bakery-repo\"|" -e "s|^ref = .*|ref = \"v1\"|" \
        -e "/^\[health\]/,/^\[/ s|^timeout = .*|timeout = \"20s\"|" /root/in/bakery.toml >/etc/sum/sites/bakery.toml
    sed -n "s/^SECRET_KEY=/DJANGO_SECRET_KEY=/p" /srv/sum/bakery/.env >>/srv/sum/bakery/.env
    printf "DJANGO_ALLOWED_HOSTS=bakery.localhost\nPIP_NO_INDEX=1\nPIP_FIND_LINKS=/srv/wheels\n" >>/srv/sum/bakery/.env
    sumctl check
    systemctl daemon-reload
    systemctl start sum-deploy@acme sum-deploy@bakery
    both_serve
    # Both gunicorns run (socket activation starts them on a request).
    for s in acme bakery; do
        expect "sum-gunicorn@$s" active "$(systemctl is-active sum-gunicorn@$s.service)"
    done
    lacks "sumctl status" "OLDER" "$(sumctl status)"'

step "the repository gets $new_version; apt upgrade under load"
e2e_build_repo "$deb" "$next"
e2e_load_start upgrade-acme acme.localhost
e2e_load_start upgrade-bakery bakery.localhost
check "apt update offers $new_version; apt upgrade installs it; both sites keep serving" '
    for s in acme bakery; do main_pid sum-gunicorn@$s.service >/root/pid-$s; done
    lacks "the unit before" "PrivateIPC=yes" "$(systemctl cat sum-gunicorn@acme.service)"
    reloads=$(caddy_loads "stopped previous server") unchanged=$(caddy_loads "config is unchanged")
    # At least the install, which replaced the default configuration.
    [ "$reloads" -ge 1 ] || { echo "Caddy logged no replaced configuration since its start"; exit 1; }
    apt_q update
    contains "apt-cache policy" "Candidate: $NEW" "$(apt-cache policy sum-golden-path)"
    apt_q upgrade
    expect "the installed version" "$NEW" "$(installed)"
    # The same snippets: Caddy compares and does not reload (a reload can
    # reset a connection opened in the same instant).
    expect "Caddy configurations replaced during the upgrade" "$reloads" "$(caddy_loads "stopped previous server")"
    expect "Caddy reloads skipped as unchanged during the upgrade" "$((unchanged + 1))" "$(caddy_loads "config is unchanged")"
    lacks "the postinst flag after the upgrade" "reload-if-changed" "$(ls /run/sum/caddy)"
    both_serve'
e2e_load_stop upgrade-acme "$ZERO"
e2e_load_stop upgrade-bakery "$ZERO"
check "after the upgrade: the new generator output is loaded, timers are listed, the gunicorns were not restarted" '
    for s in acme bakery; do
        contains "systemctl cat sum-gunicorn@$s.service" "PrivateIPC=yes" "$(systemctl cat sum-gunicorn@$s.service)"
        expect "systemctl show -P PrivateIPC sum-gunicorn@$s" yes "$(systemctl show -P PrivateIPC sum-gunicorn@$s.service)"
        expect "the MainPID of sum-gunicorn@$s (the same process)" "$(cat /root/pid-$s)" "$(main_pid sum-gunicorn@$s.service)"
        contains "systemctl list-timers" "sum-backup@$s.timer" "$(systemctl list-timers --no-pager)"
        expect "sum-gunicorn@$s.socket" active "$(systemctl is-active sum-gunicorn@$s.socket)"
    done'
check "sumctl status names the gunicorns still on their older unit and what picks up the new one" '
    for s in acme bakery; do
        out=$(sumctl status $s)
        printf "%s\n" "$out" | grep -Eq "^  sum-gunicorn@$s\.service +active \(runs on its OLDER unit\)$" \
            || { echo "sumctl status $s does not say that gunicorn runs on its older unit:"; echo "$out"; exit 1; }
        contains "sumctl status $s" "the next deploy or rollback restarts it on the new one (\`systemctl start sum-deploy@$s\`)" "$out"
    done
    contains "sumctl status --json" "\"units_on_older_definition\": [" "$(sumctl status acme --json)"
    contains "sumctl status --json" "\"sum-gunicorn@acme.service\"" "$(sumctl status acme --json)"'
e2e_load_start redeploy acme.localhost
check "the next deploy of acme puts its gunicorn on the new unit (its own IPC namespace); bakery stays on the old one until its own" '
    systemctl start sum-deploy@acme
    both_serve
    pid=$(main_pid sum-gunicorn@acme.service)
    [ "$pid" != "$(cat /root/pid-acme)" ] || { echo "the deploy did not restart gunicorn@acme"; exit 1; }
    [ "$(readlink /proc/$pid/ns/ipc)" != "$(readlink /proc/1/ns/ipc)" ] \
        || { echo "gunicorn@acme shares the IPC namespace of PID 1: PrivateIPC is not applied"; exit 1; }
    lacks "sumctl status acme" "OLDER" "$(sumctl status acme)"
    contains "sumctl status bakery" "OLDER" "$(sumctl status bakery)"'
e2e_load_stop redeploy "$ZERO"

step "a downgrade: apt install sum-golden-path=$old_version"
e2e_load_start downgrade-acme acme.localhost
e2e_load_start downgrade-bakery bakery.localhost
check "apt-get refuses a silent downgrade and says how; --allow-downgrades installs $old_version and the sites keep serving" '
    rc=0; apt_ours install "sum-golden-path=$OLD" >/root/apt.out 2>&1 || rc=$?
    [ "$rc" != 0 ] || { echo "apt-get -y downgraded without --allow-downgrades"; exit 1; }
    contains "apt-get without --allow-downgrades" "allow-downgrades" "$(cat /root/apt.out)"
    expect "still installed" "$NEW" "$(installed)"
    apt_q install --allow-downgrades "sum-golden-path=$OLD"
    expect "the installed version" "$OLD" "$(installed)"
    lacks "systemctl cat sum-gunicorn@acme.service" "PrivateIPC=yes" "$(systemctl cat sum-gunicorn@acme.service)"
    both_serve
    contains "sumctl status acme (started on the newer unit)" "OLDER" "$(sumctl status acme)"
    contains "systemctl list-timers" "sum-backup@bakery.timer" "$(systemctl list-timers --no-pager)"'
e2e_load_stop downgrade-acme "$ZERO"
e2e_load_stop downgrade-bakery "$ZERO"

step "an upgrade in the middle of a deploy"
e2e_load_start mid-deploy acme.localhost
check "apt upgrade while sum-deploy@bakery builds a new venv for v2: the deploy goes on and succeeds, on the new unit" '
    SITE=bakery
    # v2 with new requirements (a comment): a new venv, the slowest step of a deploy.
    cd /root/bakery-repo
    git checkout -q -b v2-newreqs v2
    echo "# newreqs" >>requirements.txt
    git -c user.name=t -c user.email=t@example.com commit -qam newreqs
    cd /
    sed -i "s|^ref = .*|ref = \"v2-newreqs\"|" /etc/sum/sites/bakery.toml
    mark
    systemctl start --no-block sum-deploy@bakery
    wait_for_step "==> venv"
    apt_q upgrade
    expect "the installed version" "$NEW" "$(installed)"
    running || { echo "the deploy ended before the upgrade did: not a test of an upgrade mid-deploy"; this_deploy | tail -n 5; exit 1; }
    wait_for_end
    expect "sum-deploy@bakery Result" success "$(systemctl show -P Result sum-deploy@bakery)"
    BAKERY=v2 both_serve
    contains "systemctl cat sum-gunicorn@bakery.service" "PrivateIPC=yes" "$(systemctl cat sum-gunicorn@bakery.service)"
    lacks "sumctl status bakery" "OLDER" "$(sumctl status bakery)"'
e2e_load_stop mid-deploy "$ZERO"

step "an upgrade while a backup runs"
check "apt upgrade while sum-backup@acme dumps: the backup completes, verified, and is listed" '
    apt_q install --allow-downgrades "sum-golden-path=$OLD"
    # Enough rows that the dump takes seconds, in a table of the site own role.
    site_sql acme "CREATE TABLE IF NOT EXISTS bulk AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 4000000) g"
    before=$(ls -t /srv/sum/acme/backups/*.sql.gz 2>/dev/null | head -n 1)
    systemctl start --no-block sum-backup@acme.service
    for _ in $(seq 300); do pgrep -x pg_dump >/dev/null && break; sleep 0.05; done
    pgrep -x pg_dump >/dev/null || { echo "pg_dump of sum-backup@acme never ran"; journalctl -u sum-backup@acme -o cat | tail; exit 1; }
    apt_q upgrade
    expect "the installed version" "$NEW" "$(installed)"
    overlapped=no; pgrep -x pg_dump >/dev/null && overlapped=yes
    backup_running && overlapped=yes
    expect "the backup still ran when the upgrade ended" yes "$overlapped"
    for _ in $(seq 1200); do backup_running || break; sleep 0.1; done
    ! backup_running || { echo "sum-backup@acme still runs after 120 s"; exit 1; }
    expect "sum-backup@acme Result" success "$(systemctl show -P Result sum-backup@acme.service)"
    new=$(ls -t /srv/sum/acme/backups/*.sql.gz | head -n 1)
    [ "$new" != "$before" ] || { echo "no new backup file: the newest is still $before"; exit 1; }
    line=$(sumctl backups acme | grep -F "$(basename "$new")") \
        || { echo "sumctl backups acme does not list $new"; sumctl backups acme; exit 1; }
    contains "sumctl backups acme, the new backup" "verified" "$line"
    site_sql acme "DROP TABLE bulk"'

step "apt remove, apt install again, apt purge"
check "apt remove: the sites are no longer served; site files, data and backups stay" '
    apt_q remove sum-golden-path
    expect "dpkg status" "deinstall ok config-files" "$(dpkg-query -W -f="\${Status}" sum-golden-path)"
    for s in acme bakery; do
        expect "sum-gunicorn@$s.service" inactive "$(systemctl is-active sum-gunicorn@$s.service || true)"
        expect "sum-gunicorn@$s.socket" inactive "$(systemctl is-active sum-gunicorn@$s.socket || true)"
        lacks "systemctl list-timers" "sum-backup@$s.timer" "$(systemctl list-timers --all --no-pager)"
        rc=0; get "https://$s.localhost/" >/dev/null 2>&1 || rc=$?
        [ "$rc" != 0 ] || [ "$(get "https://$s.localhost/")" != 200 ] || { echo "$s.localhost still answers 200"; exit 1; }
        test -f /etc/sum/sites/$s.toml && test -f /srv/sum/$s/.env && test -L /srv/sum/$s/app
    done
    ls /srv/sum/acme/backups/*.sql.gz >/dev/null
    for s in acme bakery; do
        pgrep -u sum-$s >/dev/null && { echo "processes of sum-$s still run"; ps -fu sum-$s; exit 1; }
    done
    expect "caddy after remove" active "$(systemctl is-active caddy)"'
check "apt install again: both sites are served as before, their timers are back" '
    apt_q install sum-golden-path
    expect "the installed version" "$NEW" "$(installed)"
    for s in acme bakery; do
        expect "sum-gunicorn@$s.socket" active "$(systemctl is-active sum-gunicorn@$s.socket)"
        contains "systemctl list-timers" "sum-backup@$s.timer" "$(systemctl list-timers --no-pager)"
    done
    poll 30 get https://acme.localhost/
    BAKERY=v2 both_serve'
check "apt purge: the package state goes (last good copies, the target state); /srv/sum and the site files stay" '
    apt_q purge sum-golden-path
    expect "dpkg status" "" "$(dpkg-query -W -f="\${Status}" sum-golden-path 2>/dev/null || true)"
    test ! -e /etc/sum/last-good || { echo "/etc/sum/last-good is left"; exit 1; }
    test ! -e /run/sum/caddy || { echo "/run/sum/caddy is left"; exit 1; }
    ls /var/lib/systemd/deb-systemd-helper-enabled/ | grep -q sum-sites && { echo "sum-sites.target state is left"; exit 1; }
    ls /var/lib/systemd/deb-systemd-helper-masked/ 2>/dev/null | grep -q sum-sites && { echo "sum-sites.target is left masked"; exit 1; }
    for s in acme bakery; do
        test -f /etc/sum/sites/$s.toml && test -f /srv/sum/$s/.env && test -L /srv/sum/$s/app
    done
    ls /srv/sum/acme/backups/*.sql.gz >/dev/null
    expect "the acme database survives" 1 "$(runuser -u postgres -- psql -XAtc "SELECT count(*) FROM pg_database WHERE datname = '\''acme'\''")"'

step "the requests sent during each step (GET https://<site>/ through Caddy)"
printf '    %s\n' "${E2E_LOAD_SUMMARY[@]}"
