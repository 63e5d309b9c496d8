#!/usr/bin/env bash
# Benchmark of sum-deploy in a throwaway systemd container (the e2e image):
# zero downtime under load, and deploy time against a seed-style script,
# measured side by side in one run.
#
#   sudo bash benches/deploy.sh              # builds the .deb
#   sudo bash benches/deploy.sh --deb PATH
#
# Setup: the package installed, the example app (examples/make-repo.sh) as
# site `acme`, served by Caddy at https://acme.localhost/. Beside it, the same
# app deployed the "seed" way: a git checkout in /srv/seed/app, its own venv,
# its own database, and a plain gunicorn service that binds its socket itself
# (`--bind unix:...`, no socket activation), served by Caddy at
# https://seed.localhost/ with the same reverse_proxy settings as acme.
#
# Deploy time (median of BENCH_RUNS, interleaved):
#   cold       acme's first deploy (venv built)  vs  the seed script on a fresh
#              checkout and venv (one run each)
#   redeploy   the same ref again                vs  the seed script, nothing new
#   code-only  a new commit changing a view      vs  the seed script pulling it
# The seed script is `git pull; pip install -r; migrate; collectstatic;
# systemctl restart`. Target: code-only <= 0.6x the script.
#
# Zero downtime (wrk, run from the host in the container's network namespace,
# BENCH_CONNS connections on https://<site>/):
#   steady     BENCH_STEADY seconds of load, nothing happening
#   deploy     load while `systemctl start sum-deploy@acme` deploys a new commit
#   restart    load while gunicorn restarts: acme (socket activation) and the
#              seed baseline (no socket activation), over the same window
# Target: 0 failed requests during the deploy, and its p99 within 3x the
# steady p99 plus the app's boot time (`systemctl start` of the stopped
# gunicorn service, to READY).
#
# A benchmark, not a test: it exits 0 whether targets are met or not, and
# non-zero only if something broke.
set -euo pipefail
cd "$(dirname "$0")/.."

deb=""
case "${1:-}" in
--deb) deb=$(realpath "$2") ;;
"") ;;
*) echo "usage: $0 [--deb PATH]" >&2; exit 2 ;;
esac
RUNS=${BENCH_RUNS:-5}
KEEP=${BENCH_KEEP:-0}     # 1: leave the container running afterwards
CONNS=${BENCH_CONNS:-4}
STEADY=${BENCH_STEADY:-15}

# shellcheck source=tests/e2e/lib.sh
. tests/e2e/lib.sh
[ "$(id -u)" -eq 0 ] || { echo "deploy.sh: run as root (systemd-nspawn needs it)" >&2; exit 2; }
E2E_KEEP=$KEEP
e2e_install_traps
die() { echo "deploy.sh: $*" >&2; exit 1; }

step "host tools"
e2e_host_deps
command -v wrk >/dev/null || {
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wrk >/dev/null
}
if [ -z "$deb" ]; then
    step "building the package"
    deb=$(realpath "$(bash packaging/build-deb | tail -n 1)")
fi
wheelhouse=$(bash tests/wheelhouse.sh)
step "image and container"
image=$(e2e_image)
e2e_boot "$image"
cp "$deb" "$E2E_STAGE/sum-golden-path.deb"
cp -r "$wheelhouse" "$E2E_STAGE/wheels"
bash examples/make-repo.sh "$E2E_STAGE/acme-repo" >/dev/null

# Run host's wrk inside the container's network, with acme.localhost and
# seed.localhost resolving to its loopback.
hosts=$E2E_DIR/hosts
printf '127.0.0.1 localhost acme.localhost seed.localhost\n' >"$hosts"
load() { # load URL SECONDS OUTFILE: wrk until SECONDS pass or SIGINT
    unshare --mount --propagation private bash -c '
        mount --bind "$1" /etc/hosts
        exec nsenter --target "$2" --net -- wrk -t1 -c"$3" -d"$4"s --timeout 30s --latency "$5"
    ' _ "$hosts" "$E2E_LEADER" "$CONNS" "$2" "$1" >"$3" 2>&1
}

step "setting up acme (sum-golden-path) and seed (the seed-style baseline)"
ct 'set -e
apt-get install -y -q -o Dpkg::Use-Pty=0 /root/in/sum-golden-path.deb >/dev/null
cp -r /root/in/wheels /srv/wheels && chmod -R a+rX /srv/wheels
git clone -q --bare /root/in/acme-repo /srv/repo.git && chmod -R a+rX /srv/repo.git
git clone -q /srv/repo.git /root/work
git -C /root/work config user.email bench@localhost && git -C /root/work config user.name bench
runuser -u postgres -- psql -q -c "CREATE ROLE acme LOGIN PASSWORD '\''pw'\''"
runuser -u postgres -- createdb -O acme acme
runuser -u postgres -- createdb -O acme seed
sumctl new acme --domain acme.localhost --git /srv/repo.git >/dev/null
sed -i "s|^DATABASE_URL=.*|DATABASE_URL=postgres://acme:pw@127.0.0.1:5432/acme|; s|^REDIS_URL=.*|REDIS_URL=redis://127.0.0.1:6379/1|" /srv/sum/acme/.env
printf "PIP_NO_INDEX=1\nPIP_FIND_LINKS=/srv/wheels\n" >>/srv/sum/acme/.env
systemctl daemon-reload
systemctl reload caddy'

# The seed side: same user, same .env but its own database, paths and
# REDIS db; a gunicorn service with the same options as the generated one
# but binding the socket itself, in a RuntimeDirectory as such setups do.
ct 'set -e
install -d -o sum-acme -g sum-acme /srv/seed /srv/seed/static /srv/seed/media
sed "s|/acme$|/seed|; s|^REDIS_URL=.*|REDIS_URL=redis://127.0.0.1:6379/2|; s|^ALLOWED_HOSTS=.*|ALLOWED_HOSTS=seed.localhost|" /srv/sum/acme/.env >/srv/seed/.env
grep -q "^ALLOWED_HOSTS=seed.localhost" /srv/seed/.env
printf "STATIC_ROOT=/srv/seed/static\nMEDIA_ROOT=/srv/seed/media\nDJANGO_SETTINGS_MODULE=acme.settings.production\n" >>/srv/seed/.env
chown root:sum-acme /srv/seed/.env && chmod 0640 /srv/seed/.env
opts=$(systemctl show -P ExecStart sum-gunicorn@acme.service | sed -n "s/.*argv\[\]=\([^;]*\) ;.*/\1/p")
opts=${opts#* }
# Without the gunicorn settings the package ships (the hook that lets idle
# workers wake on SIGTERM): a seed setup runs plain gunicorn.
opts=$(echo "$opts" | sed "s| --config [^ ]*||")
cat >/etc/systemd/system/seed-gunicorn.service <<EOF
[Service]
Type=notify
User=sum-acme
Group=sum-acme
EnvironmentFile=/srv/seed/.env
WorkingDirectory=/srv/seed/app
RuntimeDirectory=seed
ExecStart=/srv/seed/venv/bin/gunicorn --bind unix:/run/seed/gunicorn.sock --umask 0 $opts
KillMode=mixed
TimeoutStopSec=45
EOF
systemctl daemon-reload
cat >/usr/local/bin/seed-deploy <<"EOF"
#!/bin/bash
# A seed-style deploy: pull, install, migrate, collect, restart.
set -euo pipefail
set -a; . /srv/seed/.env; set +a
export HOME=/srv/seed
as() { runuser -u sum-acme -- env HOME=/srv/seed "$@"; }
if [ ! -d /srv/seed/app ]; then
    # The repository is root'"'"'s; the checkout is the app user'"'"'s.
    as git config --global safe.directory /srv/repo.git
    as git clone -q /srv/repo.git /srv/seed/app
    as python3 -m venv /srv/seed/venv
fi
cd /srv/seed/app
as git pull -q
as /srv/seed/venv/bin/pip install -q -r requirements.txt
as /srv/seed/venv/bin/python manage.py migrate --noinput >/dev/null
as /srv/seed/venv/bin/python manage.py collectstatic --noinput >/dev/null
systemctl restart seed-gunicorn
EOF
chmod +x /usr/local/bin/seed-deploy'

now() { date +%s.%N; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f\n", a - b }'; }
timed() { # timed 'COMMANDS': seconds the commands took in the container
    local s e
    s=$(now)
    ct "$1" >"$E2E_DIR/timed.log" 2>&1 || { cat "$E2E_DIR/timed.log" >&2; die "failed: $1"; }
    e=$(now)
    sub "$e" "$s"
}
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
commit() { # a code-only change on main, pushed to the repository both sides pull from
    ct 'set -e; cd /root/work; n=$(date +%s%N)
        sed -i "s|^RELEASE = .*|RELEASE = \"bench-$n\"|" notes/views.py
        grep -q "bench-$n" notes/views.py
        git commit -qam "bench $n"; git push -q origin HEAD:main'
}

step "deploy time: cold"
cold_ours=$(timed 'systemctl start sum-deploy@acme')
# Caddy serves seed with acme's snippet (rendered now that acme is deployed),
# pointed at seed's socket and directories.
ct 'set -e
sed "s|acme\.localhost|seed.localhost|g; s|/run/sum/acme/gunicorn.sock|/run/seed/gunicorn.sock|; s|/srv/sum/acme/|/srv/seed/|g" \
    /run/sum/caddy/acme.caddy >/etc/caddy/seed.caddy
grep -q "reverse_proxy unix//run/seed/gunicorn.sock" /etc/caddy/seed.caddy
echo "import /etc/caddy/seed.caddy" >>/etc/caddy/Caddyfile'
cold_seed=$(timed 'seed-deploy')
ct 'systemctl reload caddy'
for u in acme seed; do
    ct "curl -sS --fail --max-time 10 --cacert /var/lib/caddy/.local/share/caddy/pki/authorities/local/root.crt --resolve $u.localhost:443:127.0.0.1 https://$u.localhost/health/ | grep -q '\"ok\"'" \
        || die "$u does not answer ok after its cold deploy"
done
info "cold: sum-deploy ${cold_ours}s, seed script ${cold_seed}s"

step "deploy time: $RUNS redeploys and $RUNS code-only deploys per side, interleaved"
re_ours=() re_seed=() co_ours=() co_seed=()
for ((i = 0; i < RUNS; i++)); do
    re_ours+=("$(timed 'systemctl start sum-deploy@acme')")
    re_seed+=("$(timed 'seed-deploy')")
    commit
    co_ours+=("$(timed 'systemctl start sum-deploy@acme')")
    co_seed+=("$(timed 'seed-deploy')")
    info "run $((i + 1)): redeploy ${re_ours[-1]}s vs ${re_seed[-1]}s, code-only ${co_ours[-1]}s vs ${co_seed[-1]}s"
done
ct 'journalctl -u sum-deploy@acme -o cat --no-pager | grep -q "venv: reused"' || die "the venv was not reused"
# Where the time of the last code-only deploy went, step by step.
breakdown=$(ct "sumctl history acme --json -n 1 | python3 -c 'import json, sys
print(\" \".join(\"%s %.2f\" % (s[\"step\"], s[\"seconds\"]) for s in json.load(sys.stdin)[0][\"steps\"]))'")
seed_breakdown=$(ct 'set -a; . /srv/seed/.env; set +a; cd /srv/seed/app
    t() { local name=$1 s e d; shift; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N)
          d=$(( (e - s) / 10000000 )); printf "%s %d.%02d " "$name" $((d / 100)) $((d % 100)); }
    as() { runuser -u sum-acme -- env HOME=/srv/seed "$@"; }
    t pull as git pull -q
    t pip as /srv/seed/venv/bin/pip install -q -r requirements.txt
    t migrate as /srv/seed/venv/bin/python manage.py migrate --noinput
    t collectstatic as /srv/seed/venv/bin/python manage.py collectstatic --noinput
    t restart systemctl restart seed-gunicorn')

step "boot time of the app (systemctl start of the stopped service, to READY)"
boots=()
for ((i = 0; i < 3; i++)); do
    ct 'systemctl stop sum-gunicorn@acme.service'
    boots+=("$(timed 'systemctl start sum-gunicorn@acme.service')")
done
boot=$(printf '%s\n' "${boots[@]}" | median)
info "boot: ${boot}s (median of ${boots[*]})"

# wrk's figures: requests, failures (socket errors + non-2xx/3xx), p50, p99 in ms.
parse() {
    awk '
        function ms(v) {
            if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0
            if (v ~ /m$/) return v * 60000; if (v ~ /s$/) return v * 1000; return v
        }
        / requests in / { req = $1 }
        /Socket errors:/ { gsub(",", ""); err += $4 + $6 + $8 + $10 }
        /Non-2xx or 3xx responses:/ { err += $5 }
        $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) }
        END { printf "%d %d %.2f %.2f\n", req, err, p50, p99 }' "$1"
}
under_load() { # under_load SITE SECONDS-BEFORE 'COMMAND' OUT: load, run command, stop 1 s after
    local url=https://$1.localhost/ wpid
    load "$url" 600 "$4" &
    wpid=$!
    sleep "$2"
    local s e
    s=$(now)
    ct "$3" >/dev/null 2>&1 || warn "'$3' failed under load"
    e=$(now)
    sleep 1
    pkill -INT -P "$wpid" -x wrk 2>/dev/null || true
    wait "$wpid" || true
    sub "$e" "$s"
}

step "zero downtime: steady load (${STEADY}s per site)"
load https://acme.localhost/ "$STEADY" "$E2E_DIR/steady-acme.txt"
load https://seed.localhost/ "$STEADY" "$E2E_DIR/steady-seed.txt"
read -r st_req st_err st_p50 st_p99 < <(parse "$E2E_DIR/steady-acme.txt")
read -r sb_req sb_err sb_p50 sb_p99 < <(parse "$E2E_DIR/steady-seed.txt")
[ "$st_req" -gt 0 ] || { cat "$E2E_DIR/steady-acme.txt"; die "no requests in the steady run"; }

step "zero downtime: a code-only deploy under load"
commit
dep_window=$(under_load acme 2 'systemctl start sum-deploy@acme' "$E2E_DIR/deploy.txt")
read -r dp_req dp_err dp_p50 dp_p99 < <(parse "$E2E_DIR/deploy.txt")
ct 'journalctl -u sum-deploy@acme -o cat --no-pager -n 40 | grep -q "^deployed "' || die "the deploy under load failed"

step "zero downtime: gunicorn restarts under load, socket activation vs none"
window=${dep_window%.*}
rs_a=$(under_load acme 2 "systemctl restart sum-gunicorn@acme.service; sleep $((window > 3 ? window - 3 : 0))" "$E2E_DIR/restart-acme.txt")
rs_s=$(under_load seed 2 "systemctl restart seed-gunicorn.service; sleep $((window > 3 ? window - 3 : 0))" "$E2E_DIR/restart-seed.txt")
read -r ra_req ra_err ra_p50 ra_p99 < <(parse "$E2E_DIR/restart-acme.txt")
read -r rb_req rb_err rb_p50 rb_p99 < <(parse "$E2E_DIR/restart-seed.txt")

# ---------------------------------------------------------------- report
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
verdict() { awk -v a="$1" -v b="$2" 'BEGIN { print (a <= b) ? "PASS" : "MISS" }'; }
m_re_o=$(printf '%s\n' "${re_ours[@]}" | median) m_re_s=$(printf '%s\n' "${re_seed[@]}" | median)
m_co_o=$(printf '%s\n' "${co_ours[@]}" | median) m_co_s=$(printf '%s\n' "${co_seed[@]}" | median)
limit=$(awk -v p="$st_p99" -v b="$boot" 'BEGIN { printf "%.2f", 3 * p + b * 1000 }')
cpus=$(nproc)
cat <<EOF

== sum-deploy benchmark ($(date -u +%Y-%m-%d), $cpus CPUs, wrk -c$CONNS, $RUNS runs) ==

Deploy time (seconds; median of $RUNS interleaved runs; cold: one run)
  measure      sum-deploy   seed script   ratio   target
  cold         $(printf '%10.2f   %11.2f   %5s' "$cold_ours" "$cold_seed" "$(ratio "$cold_ours" "$cold_seed")")
  redeploy     $(printf '%10.2f   %11.2f   %5s' "$m_re_o" "$m_re_s" "$(ratio "$m_re_o" "$m_re_s")")
  code-only    $(printf '%10.2f   %11.2f   %5s' "$m_co_o" "$m_co_s" "$(ratio "$m_co_o" "$m_co_s")")   <= 0.6  $(verdict "$(ratio "$m_co_o" "$m_co_s")" 0.6)
  the last code-only sum-deploy, step by step (s): $breakdown
  the seed script, step by step (s; "as" runs as the app user): $seed_breakdown

Zero downtime (https://<site>/ through Caddy; latency in ms)
  phase                              window   requests  failed      p50      p99
  steady, acme                       $(printf '%5ss  %9d  %6d  %7.2f  %7.2f' "$STEADY" "$st_req" "$st_err" "$st_p50" "$st_p99")
  steady, seed                       $(printf '%5ss  %9d  %6d  %7.2f  %7.2f' "$STEADY" "$sb_req" "$sb_err" "$sb_p50" "$sb_p99")
  deploy (sum-deploy@acme)           $(printf '%5.1fs  %9d  %6d  %7.2f  %7.2f' "$dep_window" "$dp_req" "$dp_err" "$dp_p50" "$dp_p99")
  restart, socket activation (acme)  $(printf '%5.1fs  %9d  %6d  %7.2f  %7.2f' "$rs_a" "$ra_req" "$ra_err" "$ra_p50" "$ra_p99")
  restart, no socket activation      $(printf '%5.1fs  %9d  %6d  %7.2f  %7.2f' "$rs_s" "$rb_req" "$rb_err" "$rb_p50" "$rb_p99")
  app boot time (to READY): ${boot}s
  failed requests during the deploy: $dp_err (target 0): $( [ "$dp_err" = 0 ] && echo PASS || echo MISS)
  p99 during the deploy: $dp_p99 ms, limit 3 x $st_p99 + boot = $(printf '%.0f' "$limit") ms ($(ratio "$dp_p99" "$limit")x): $(verdict "$dp_p99" "$limit")
  windows include 2 s of load before and 1 s after the operation
EOF
