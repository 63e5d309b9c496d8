#!/usr/bin/env bash
# Monitoring, end to end, in a real Debian with systemd as PID 1 and
# Debian's prometheus-node-exporter: the sum_ series node_exporter serves
# after a backup and a deploy (each file checked by promtool), the alerts a
# local HTTP receiver gets (a backup failed with PostgreSQL stopped, a
# deploy rolled back, a gunicorn crash loop, the health probe, and their
# recovery messages), `sumctl status --check`'s exit codes, and a removed
# site's series gone.
#
#   sudo bash tests/e2e/monitor.sh --deb PATH [--keep]
#
# It shares tests/e2e/lib.sh with the other e2e scripts. promtool comes
# from tests/promtool.sh (unpacked from Debian's prometheus package).
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
# prometheus-node-exporter, in the image the drill and the runbook share.
E2E_EXTRA_PACKAGES=("${E2E_FULL_PACKAGES[@]}")
e2e_install_traps
check() { e2e_check "$@"; }

# The webhook's URL carries a token, as Slack's and Discord's do: it must
# never reach the journal.
TOKEN=T0KEN-e2e-s3cr3t
E2E_PRELUDE+=$E2E_DEPLOY_HELPERS
E2E_PRELUDE+='
TOKEN='"$TOKEN"'
CA=/var/lib/caddy/.local/share/caddy/pki/authorities/local/root.crt
TEXTFILES=/var/lib/prometheus/node-exporter
get() { # get URL [curl args]: prints the HTTP status; body in /root/resp.b
    curl -sS --max-time 20 --cacert "$CA" --resolve acme.localhost:443:127.0.0.1 \
        -o /root/resp.b -w "%{http_code}" "$@"
}
serves() { # serves RELEASE: the health check through Caddy answers 200 from RELEASE
    expect "https://acme.localhost/health/" 200 "$(get https://acme.localhost/health/)"
    contains "health body" "\"release\": \"$1\"" "$(cat /root/resp.b)"
}
scrape() { # scrape: the sum_ lines node_exporter serves
    curl -sS --max-time 10 http://127.0.0.1:9100/metrics | grep "^sum_" || true
}
alerts() { # alerts: how many alerts the receiver got
    if [ -f /root/alerts.jsonl ]; then wc -l </root/alerts.jsonl; else echo 0; fi
}
got() { # got N: the receiver has N alerts (poll got N waits for them)
    test "$(alerts)" = "$1"
}
alert() { # alert N FIELD: a field of the Nth alert received
    sed -n "${1}p" /root/alerts.jsonl | python3 -c "import json,sys; print(json.load(sys.stdin)[\"$2\"])"
}
settled() { # settled UNIT: the alert handler of UNIT is not running any more
    ! unit_running "sum-alert@$1.service"
}
promtool_ok() { # promtool_ok: every file of ours passes promtool check metrics
    for f in "$TEXTFILES"/sum-*.prom; do
        said=$(/root/in/promtool check metrics <"$f" 2>&1) || { echo "promtool: $f: $said"; return 1; }
        expect "promtool check metrics $f" "" "$said"
    done
}
'

step "host tools"
e2e_host_deps
promtool=$(bash tests/promtool.sh --install | tail -n 1)
step "image"
image=$(e2e_image)
step "booting the container"
E2E_UNITS=($E2E_PG_UNIT redis-server.service caddy.service prometheus-node-exporter.service)
e2e_boot "$image"

cp "$deb" "$E2E_STAGE/"
cp "$promtool" "$E2E_STAGE/promtool"
wheelhouse=$(bash tests/wheelhouse.sh)
cp -r "$wheelhouse" "$E2E_STAGE/wheels"
bash examples/make-repo.sh "$E2E_STAGE/acme-repo" >/dev/null
debname=$(basename "$deb")
# The receiver: every POST's body, one line each, in /root/alerts.jsonl.
cp tests/e2e/receiver.py "$E2E_STAGE/receiver.py"

step "acme deployed, node_exporter and a webhook receiver running"
E2E_UNITS+=(sum-deploy@acme.service sum-gunicorn@acme.socket sum-gunicorn@acme.service)
check "the package installs, acme deploys, alerts go to the receiver" "
    apt-get install -y -q -o Dpkg::Use-Pty=0 /root/in/$debname >/dev/null
"'
    sumctl new acme --domain acme.localhost --git /root/in/acme-repo >/dev/null
    printf "PIP_NO_INDEX=1\nPIP_FIND_LINKS=/srv/wheels\n" >>/srv/sum/acme/.env
    rm -rf /srv/wheels && cp -r /root/in/wheels /srv/wheels && chmod -R a+rX /srv/wheels
    sed -i "s|^# timeout = \"60s\"|timeout = \"20s\"|" /etc/sum/sites/acme.toml
    sed -i "s|^# probe_alert_after = 3 .*|probe_alert_after = 2|" /etc/sum/sites/acme.toml
    grep -q "^probe_alert_after = 2$" /etc/sum/sites/acme.toml
    sumctl check
    systemctl daemon-reload
    expect "prometheus-node-exporter" active "$(systemctl is-active prometheus-node-exporter)"
    systemd-run --quiet --unit=receiver python3 /root/in/receiver.py
    poll 10 curl -s -o /dev/null http://127.0.0.1:8099/
    install -m 0600 /dev/null /etc/sum/alerts.env
    printf "SUM_ALERT_WEBHOOK=http://127.0.0.1:8099/hooks/%s\nSUM_ALERT_LIMIT=2\n" "$TOKEN" >/etc/sum/alerts.env
    sumctl alert --test acme
    expect "alerts received" 1 "$(alerts)"
    expect "the test alert" test "$(alert 1 event)"
    rm /root/alerts.jsonl
    mark
    systemctl start sum-deploy@acme
    serves v2
    expect "sum-probe@acme.timer" active "$(systemctl is-active sum-probe@acme.timer)"'

check "after a backup and a deploy, node_exporter serves the sum_ series, and promtool accepts every file" '
    systemctl start sum-backup@acme
    s=$(scrape)
    printf "%s\n" "$s" | sed "s/^/    scrape: /"
    contains "scrape" "sum_backup_last_success{site=\"acme\"} 1" "$s"
    contains "scrape" "sum_backup_newest_verified_timestamp_seconds{site=\"acme\"}" "$s"
    contains "scrape" "sum_backup_newest_verified_size_bytes{site=\"acme\"}" "$s"
    contains "scrape" "sum_deploys_total{action=\"deploy\",outcome=\"ok\",site=\"acme\"} 1" "$s"
    contains "scrape" "sum_deploy_last_success{site=\"acme\"} 1" "$s"
    contains "scrape" "sum_release_info{release=" "$s"
    promtool_ok
    expect "alerts after a good backup and deploy" 0 "$(alerts)"'

check "the health probe: up through the socket and Caddy, the certificate reported, silent in the journal" '
    since=$(date +%s.%6N)
    for _ in 1 2 3; do systemctl start sum-probe@acme.service; done
    s=$(scrape)
    contains "scrape" "sum_probe_up{site=\"acme\",via=\"socket\"} 1" "$s"
    contains "scrape" "sum_probe_up{site=\"acme\",via=\"caddy\"} 1" "$s"
    contains "scrape" "sum_probe_http_status{site=\"acme\",via=\"caddy\"} 200" "$s"
    contains "scrape" "sum_certificate_expiry_timestamp_seconds{domain=\"acme.localhost\",issuer=\"local\",site=\"acme\"}" "$s"
    promtool_ok
    expect "journal lines of three good probes" 0 "$(journalctl -u sum-probe@acme.service --since "@$since" --no-pager -o cat | wc -l)"
    contains "sumctl status" "certificate:   acme.localhost until" "$(sumctl status acme)"'

check "an idle site is not woken: gunicorn stopped, the socket listening, the probe leaves it stopped" '
    systemctl stop sum-gunicorn@acme.service
    systemctl start sum-probe@acme.service
    expect "sum-gunicorn@acme.service after the probe" inactive "$(systemctl is-active sum-gunicorn@acme.service)"
    contains "scrape" "sum_probe_idle{site=\"acme\"} 1" "$(scrape)"
    serves v2'

check "probes by hand from here on: probe_every = \"off\" removes the timer" '
    sed -i "s|^probe_alert_after = 2|probe_alert_after = 2\nprobe_every = \"off\"|" /etc/sum/sites/acme.toml
    sumctl check
    systemctl daemon-reload
    expect "LoadState of sum-probe@acme.timer" not-found "$(systemctl show -P LoadState sum-probe@acme.timer)"
    # systemd leaves a removed, active timer failed ("Unit to trigger
    # vanished"); the documented reset-failed clears it.
    systemctl reset-failed sum-probe@acme.timer
    lacks "systemctl --failed" "sum-" "$(systemctl --failed --no-pager --plain)"'

check "sumctl status --check: 0 when all is well, 2 with a stale backup" '
    set +e; out=$(sumctl status --check); rc=$?; set -e
    expect "sumctl status --check exit status ($out)" 0 "$rc"
    # The newest backup made two days old: its files renamed, its manifest with them.
    cd /srv/sum/acme/backups
    f=$(ls -1 acme-*.sql.gz | sort | tail -n 1)
    old="acme-$(date -u -d "2 days ago" +%Y%m%dT%H%M%SZ).sql.gz"
    mkdir /root/moved && cp -a . /root/moved/
    for x in acme-*; do case "$x" in "$f"|"$f".json) ;; *) rm -f "$x" ;; esac; done
    mv "$f" "$old" && sed "s/$f/$old/g" "$f.json" >"$old.json" && rm "$f.json"
    set +e; out=$(sumctl status --check); rc=$?; set -e
    expect "sumctl status --check exit status ($out)" 2 "$rc"
    contains "sumctl status --check" "CRITICAL acme: the newest verified backup is 2d old" "$out"
    contains "sumctl status --check --json" "\"check\": \"backup-stale\"" "$(sumctl status --check --json || true)"
    rm -f acme-* && cp -a /root/moved/. . && rm -rf /root/moved
    sumctl status --check'

check "a backup with PostgreSQL stopped: exactly one alert, the token nowhere in the journal; then one recovery" '
    systemctl stop '"$E2E_PG_UNIT"'
    since=$(date +%s.%6N)
    if systemctl start sum-backup@acme; then echo "the backup succeeded without PostgreSQL"; exit 1; fi
    poll 30 settled sum-backup@acme.service
    poll 10 got 1
    sleep 2
    expect "alerts for one failed backup" 1 "$(alerts)"
    expect "alert unit" sum-backup@acme.service "$(alert 1 unit)"
    expect "alert site" acme "$(alert 1 site)"
    expect "alert result" exit-code "$(alert 1 result)"
    expect "alert event" failure "$(alert 1 event)"
    expect "alert host" sum-e2e "$(alert 1 host)"
    contains "the alert journal lines" "sum-backup" "$(alert 1 journal)"
    sed -n 1p /root/alerts.jsonl | sed "s/^/    received: /"
    contains "scrape" "sum_backup_last_success{site=\"acme\"} 0" "$(scrape)"
    lacks "the journal" "$TOKEN" "$(journalctl --since "@$since" --no-pager -o cat)"
    systemctl start '"$E2E_PG_UNIT"'
    systemctl start sum-backup@acme
    poll 30 got 2
    expect "second alert" recovery "$(alert 2 event)"
    expect "second alert unit" sum-backup@acme.service "$(alert 2 unit)"
    sed -n 2p /root/alerts.jsonl | sed "s/^/    received: /"
    # Another good backup says nothing more.
    systemctl start sum-backup@acme
    poll 30 settled sum-backup@acme.service
    expect "alerts after another good backup" 2 "$(alerts)"'

check "a deploy that rolls back: exactly one alert; the next good deploy, one recovery" '
    rm /root/alerts.jsonl
    sed -i "s|^ref = .*|ref = \"unhealthy\"|" /etc/sum/sites/acme.toml
    mark
    if systemctl start sum-deploy@acme; then echo "the deploy of unhealthy succeeded"; exit 1; fi
    expect "deploy exit status" 4 "$(systemctl show -P ExecMainStatus sum-deploy@acme)"
    poll 30 settled sum-deploy@acme.service
    poll 10 got 1
    sleep 2
    expect "alerts for one rolled-back deploy" 1 "$(alerts)"
    expect "alert unit" sum-deploy@acme.service "$(alert 1 unit)"
    expect "alert event" failure "$(alert 1 event)"
    contains "scrape" "sum_deploy_last_success{site=\"acme\"} 0" "$(scrape)"
    contains "scrape" "sum_deploys_total{action=\"deploy\",outcome=\"rolled-back\",site=\"acme\"} 1" "$(scrape)"
    set +e; out=$(sumctl status --check); rc=$?; set -e
    expect "sumctl status --check after a rollback ($out)" 1 "$rc"
    sed -i "s|^ref = .*|ref = \"main\"|" /etc/sum/sites/acme.toml
    systemctl start sum-deploy@acme
    serves v2
    poll 30 got 2
    expect "second alert" recovery "$(alert 2 event)"'

check "a gunicorn crash loop: four crashes, at most two alerts (SUM_ALERT_LIMIT=2), the rest held back" '
    rm /root/alerts.jsonl
    for n in 1 2 3 4; do
        get https://acme.localhost/health/ >/dev/null || true
        poll 30 test "$(systemctl is-active sum-gunicorn@acme.service)" = active
        systemctl kill -s KILL sum-gunicorn@acme.service
        sleep 3
    done
    poll 60 settled sum-gunicorn@acme.service
    sleep 3
    expect "alerts for four crashes" 2 "$(alerts)"
    expect "alert unit" sum-gunicorn@acme.service "$(alert 1 unit)"
    expect "alert result" signal "$(alert 1 result)"
    contains "sum-alert journal" "alert held back" "$(journalctl -u "sum-alert@sum-gunicorn@acme.service.service" --no-pager -o cat)"
    poll 60 get https://acme.localhost/health/
    serves v2'

check "the health probe: the site in maintenance fails twice, one alert, then one recovery" '
    rm /root/alerts.jsonl
    sumctl maintenance acme on
    systemctl start sum-probe@acme.service
    expect "alerts after one failed probe" 0 "$(alerts)"
    systemctl start sum-probe@acme.service
    poll 10 got 1
    expect "alert unit" sum-probe@acme.service "$(alert 1 unit)"
    contains "alert journal" "via caddy" "$(alert 1 journal)"
    contains "scrape" "sum_probe_up{site=\"acme\",via=\"caddy\"} 0" "$(scrape)"
    contains "the probe in the journal, at warning" "health probe failed" "$(journalctl -u sum-probe@acme.service -p warning --no-pager -o cat)"
    systemctl start sum-probe@acme.service
    expect "alerts after a third failed probe" 1 "$(alerts)"
    sumctl maintenance acme off
    systemctl start sum-probe@acme.service
    poll 10 got 2
    expect "second alert" recovery "$(alert 2 event)"'

step "what node_exporter serves of ours, and every alert the receiver got"
ct 'curl -sS --max-time 10 http://127.0.0.1:9100/metrics | grep "^sum_"; cat /root/all-alerts.jsonl' | sed 's/^/    /'

check "sumctl remove: the site's series are gone from the next scrape" '
    contains "scrape before" "site=\"acme\"" "$(scrape)"
    sumctl remove acme >/dev/null
    lacks "scrape after sumctl remove" "site=\"acme\"" "$(scrape)"'

